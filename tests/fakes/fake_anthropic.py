"""A fake Anthropic Messages API for tests (a real aiohttp server on loopback).

It checks `x-api-key` and `anthropic-version`, answers `POST /v1/messages` whole or streamed
(Anthropic's event sequence), and calls the first offered tool (`tool_use`) unless the last user
turn already carries a `tool_result`. `GET /v1/models` lists `models`. Set `fail_status` to 401,
429, 529 ... to make it refuse; every request body is kept in `requests`.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 429: "rate_limit_error", 529: "overloaded_error"}


class FakeAnthropic:
    def __init__(self, api_key: str = "sk-ant-test", models: tuple[str, ...] = ("claude-sonnet-4-5",),
                 text: str = "Hello from fake Claude.") -> None:
        self.api_key = api_key
        self.models = models
        self.text = text
        self.fail_status: int | None = None
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeAnthropic:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _refusal(self, request: web.Request) -> web.Response | None:
        status = self.fail_status
        if request.headers.get("x-api-key") != self.api_key:
            status = 401
        elif not request.headers.get("anthropic-version"):
            status = 400
        if status is None:
            return None
        message = {401: "invalid x-api-key", 529: "Overloaded"}.get(status, f"fake failure {status}")
        return web.json_response({"type": "error", "error": {
            "type": ERROR_TYPES.get(status, "api_error"), "message": message}}, status=status)

    async def _models(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        return web.json_response({"data": [{"type": "model", "id": m, "display_name": m,
                                            "created_at": "2025-09-29T00:00:00Z"}
                                           for m in self.models],
                                  "has_more": False, "first_id": self.models[0],
                                  "last_id": self.models[-1]})

    def _answer(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        last = body["messages"][-1]
        answered = isinstance(last.get("content"), list) and any(
            b.get("type") == "tool_result" for b in last["content"])
        tools = body.get("tools") or []
        if tools and not answered and (body.get("tool_choice") or {}).get("type") != "none":
            return ([{"type": "text", "text": "Let me check."},
                     {"type": "tool_use", "id": "toolu_fake1", "name": tools[0]["name"],
                      "input": {"city": "Oslo"}}], "tool_use")
        return [{"type": "text", "text": self.text}], "end_turn"

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        refused = self._refusal(request)
        if refused is not None:
            return refused
        content, stop = self._answer(body)
        usage = {"input_tokens": 21, "output_tokens": 9}
        if not body.get("stream"):
            return web.json_response({"id": "msg_fake1", "type": "message", "role": "assistant",
                                      "model": body["model"], "content": content,
                                      "stop_reason": stop, "stop_sequence": None, "usage": usage})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(name: str, data: dict[str, Any]) -> None:
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

        await send("message_start", {"type": "message_start", "message": {
            "id": "msg_fake1", "type": "message", "role": "assistant", "model": body["model"],
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 21, "output_tokens": 1}}})
        for index, block in enumerate(content):
            start = dict(block, text="") if block["type"] == "text" else dict(block, input={})
            await send("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": start})
            if index == 0:
                await send("ping", {"type": "ping"})
            if block["type"] == "text":
                for piece in (block["text"][:5], block["text"][5:]):
                    await send("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": {"type": "text_delta", "text": piece}})
            else:
                raw = json.dumps(block["input"])
                for piece in (raw[:4], raw[4:]):
                    await send("content_block_delta", {
                        "type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece}})
            await send("content_block_stop", {"type": "content_block_stop", "index": index})
        await send("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": 9}})
        await send("message_stop", {"type": "message_stop"})
        return response
