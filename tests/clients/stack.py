"""The servers the client tier runs on one background event loop: fake model(s), router, egress sentinel.

The tests themselves are synchronous (each runs a real agent as a subprocess and waits for it), so
the servers live on their own loop in a daemon thread and outlive every test of a module.

- ``Loop``: an event loop in a thread; ``call(coro)`` runs a coroutine there and returns its
  result (blocking, with a timeout).
- ``EgressSentinel``: an HTTP proxy on loopback that refuses everything and records what was
  asked for. Clients get it as HTTP(S)_PROXY / ALL_PROXY with NO_PROXY=127.0.0.1,localhost, so
  any attempt to reach the internet (telemetry, update checks, price lists) is seen and fails
  fast instead of hanging; the tests assert it saw nothing.
- ``start_router(env, root)``: the router's aiohttp app (tests/conftest.py's make_router, but
  on the background loop and for a whole module), on a free loopback port.
- ``Stack``: all of it for one module, with the checks the tests share (`tool_round_trip`,
  `assert_routed`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from router.core.service import RouterService
from router.http.api import SERVICE
from router.http.app import create_app
from router.settings import Settings
from tests.conftest import decision_rows, free_port
from tests.fakes.scripted_model import Reply, ScriptedModel

T = TypeVar("T")


class Loop:
    """An asyncio loop on a daemon thread. `call` is thread-safe; `close` stops the loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="clients-tier-loop")
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class EgressSentinel:
    """A proxy that answers 403 to every request and keeps each request line it was sent."""

    attempts: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Proxy variables (both spellings) that send every non-loopback request here."""
        out: dict[str, str] = {}
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            out[name] = out[name.lower()] = self.url
        out["NO_PROXY"] = out["no_proxy"] = "127.0.0.1,localhost,::1"
        return out

    async def start(self) -> EgressSentinel:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            if line:
                self.attempts.append(line.decode("latin-1").strip())
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            await writer.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()


@dataclass
class RunningRouter:
    url: str
    app: web.Application
    runner: web.AppRunner

    @property
    def service(self) -> RouterService:
        return self.app[SERVICE]


async def start_router(env: dict[str, str], root: Path) -> RunningRouter:
    """A router from `env` (over a private SQLite database in `root`), health-checked once."""
    port = free_port()
    base = {"DATABASE_URL": f"sqlite:///{root}/router.db", "LOCAL_3070_URL": "",
            "HEALTH_CHECK_INTERVAL": "3600", "ROUTER_PORT": str(port)}
    app = create_app(Settings.from_env({**base, **env}))
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    router = RunningRouter(f"http://127.0.0.1:{port}", app, runner)
    await router.service.registry.check_all()
    return router


@dataclass
class Stack:
    """One module's servers: the scripted model (Chat or Messages), the router, the sentinel."""

    loop: Loop
    model: ScriptedModel
    router: RunningRouter
    sentinel: EgressSentinel

    @classmethod
    def start(cls, model: ScriptedModel, env: Callable[[ScriptedModel], dict[str, str]],
              root: Path) -> Stack:
        """Start `model`, the sentinel and a router configured by `env(model)` (model started)."""
        loop = Loop()
        started = loop.call(model.start())
        sentinel = loop.call(EgressSentinel().start())
        router = loop.call(start_router(env(started), root))
        return cls(loop, started, router, sentinel)

    def stop(self) -> None:
        self.loop.call(self.router.runner.cleanup())
        self.loop.call(self.model.stop())
        self.loop.call(self.sentinel.stop())
        self.loop.close()

    def exchanges(self, marker: str) -> list[tuple[dict[str, Any], Reply]]:
        """(request, reply) pairs the scripted model handled whose request mentions `marker`."""
        async def snapshot() -> list[tuple[dict[str, Any], Reply]]:
            return list(zip(self.model.requests, self.model.replies))
        return [(req, rep) for req, rep in self.loop.call(snapshot())
                if marker in json.dumps(req["messages"])]

    def rows(self) -> list[Any]:
        return self.loop.call(decision_rows(self.router))  # type: ignore[arg-type]

    def tool_round_trip(self, marker: str) -> tuple[Reply, dict[str, Any]]:
        """The one scripted tool call for the task with `marker`, and the tool result the model
        got back for it (asserting both exist and that a final answer followed)."""
        exchanges = self.exchanges(marker)
        calls = [rep for _req, rep in exchanges if rep.kind == "tool_call"]
        assert len(calls) == 1, f"expected one scripted tool call, got {[r.kind for _q, r in exchanges]}"
        call = calls[0]
        results = [m for req, _rep in exchanges for m in req["messages"]
                   if m.get("role") == "tool" and m.get("tool_call_id") == call.call_id]
        assert results, f"the model never saw the result of {call.tool_name} ({call.call_id})"
        assert any(rep.kind == "final" for _req, rep in exchanges), "no final answer was scripted"
        return call, results[-1]

    def assert_routed(self, endpoint: str, model: str, backend: str,
                      client: str | None = None) -> None:
        """Every decision row for `endpoint` and requested `model` went to `backend` with a 200
        (and names the API key `client`, when given)."""
        rows = [r for r in self.rows() if r.endpoint == endpoint and r.requested_model == model]
        assert rows, f"no decision row for {endpoint} with model {model}"
        assert all(r.backend == backend and r.status_code == 200 for r in rows), \
            [(r.backend, r.status_code, r.error) for r in rows]
        if client is not None:
            assert {r.client for r in rows} == {client}
