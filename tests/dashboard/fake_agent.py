"""A FakeUpstream that also speaks the inference agent's control API, for the dashboard.

`GET /status` answers like `local-ai-inference` (models with states, a GPU) and counts calls;
`POST /models/{id}/load` marks the model ready; `POST /stop-all` stops every model.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.upstream import FakeUpstream


class FakeAgent(FakeUpstream):
    def __init__(self, model: str, max_model_len: int | None = 32768, *,
                 gaming_mode: bool | None = None, extra_models: tuple[str, ...] = (),
                 gpu: dict[str, Any] | None = None) -> None:
        super().__init__(model, max_model_len, gaming_mode=gaming_mode)
        self.model_states: dict[str, str] = {model: "ready", **{m: "stopped" for m in extra_models}}
        self.gpu = gpu
        self.status_calls = 0
        self.loads: list[str] = []
        self.stops = 0
        self._agent_runner: web.AppRunner | None = None  # own start/stop: not the base's internals

    async def start(self, port: int = 0) -> FakeAgent:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/status", self._status)
        app.router.add_post("/gaming-mode", self._gaming)
        app.router.add_post("/models/{id}/load", self._load)
        app.router.add_post("/stop-all", self._stop_all)
        self._agent_runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._agent_runner.setup()
        site = web.TCPSite(self._agent_runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._agent_runner is not None:
            await self._agent_runner.cleanup()
            self._agent_runner = None

    def _agent_status(self) -> dict[str, Any]:
        return {"gaming_mode": bool(self.gaming_mode), "safe_to_game": None,
                "models": [{"id": m, "state": s} for m, s in self.model_states.items()],
                "gpu": self.gpu, "active_requests": 0, "warnings": []}

    async def _status(self, _r: web.Request) -> web.Response:
        self.status_calls += 1
        return web.json_response(self._agent_status())

    async def _load(self, request: web.Request) -> web.Response:
        model = request.match_info["id"]
        if model not in self.model_states:
            return web.json_response({"error": {"message": f"Unknown model '{model}'."}}, status=404)
        self.loads.append(model)
        self.model_states[model] = "ready"
        return web.json_response(self._agent_status())

    async def _stop_all(self, _r: web.Request) -> web.Response:
        self.stops += 1
        self.model_states = {m: "stopped" for m in self.model_states}
        return web.json_response(self._agent_status())
