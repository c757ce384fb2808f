"""A scripted Chat Completions model that uses tools (a real aiohttp server on loopback).

When tools are offered and the last message is not a tool result, it calls the first tool
(`calls` times, in parallel, with arguments `{"city": "Oslo"}` streamed in pieces); otherwise it
answers `text`. Whole or streamed (with `stream_options.include_usage`). `break_after` > 0 drops
the connection after that many stream events. Every request body is kept in `requests`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web


class ToolChat:
    def __init__(self, model: str = "tool-model", text: str = "The weather in Oslo is mild.",
                 calls: int = 1, max_model_len: int = 32768) -> None:
        self.model = model
        self.text = text
        self.calls = calls
        self.max_model_len = max_model_len
        self.break_after = 0
        self.finish_stop_string: str | None = None  # vLLM's `stop_reason` for a matched stop
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> ToolChat:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_post("/v1/chat/completions", self._chat)
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

    async def _health(self, _r: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _models(self, _r: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "fake",
             "max_model_len": self.max_model_len}]})

    def _script(self, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str]:
        tools = body.get("tools") or []
        last = body["messages"][-1]
        if tools and last.get("role") != "tool" and body.get("tool_choice") != "none":
            name = tools[0]["function"]["name"]
            calls = [{"id": f"call_{n}", "type": "function",
                      "function": {"name": name, "arguments": json.dumps({"city": "Oslo", "n": n})}}
                     for n in range(self.calls)]
            return "", calls, "tool_calls"
        return self.text, [], "stop"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        text, calls, finish = self._script(body)
        usage = {"prompt_tokens": 17, "completion_tokens": 6, "total_tokens": 23}
        created = int(time.time())
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = calls
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
            if self.finish_stop_string:
                choice["stop_reason"] = self.finish_stop_string
            return web.json_response({"id": "chatcmpl-tool", "object": "chat.completion",
                                      "created": created, "model": body["model"],
                                      "choices": [choice], "usage": usage})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        sent = 0

        async def send(delta: dict[str, Any], finish_reason: str | None = None,
                       extra: dict[str, Any] | None = None) -> None:
            nonlocal sent
            if self.break_after and sent == self.break_after:
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError
            sent += 1
            chunk: dict[str, Any] = {"id": "chatcmpl-tool", "object": "chat.completion.chunk",
                                     "created": created, "model": body["model"],
                                     "choices": [{"index": 0, "delta": delta,
                                                  "finish_reason": finish_reason, **(extra or {})}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        try:
            await send({"role": "assistant", "content": ""})
            for piece in (text[:6], text[6:]) if text else ():
                await send({"content": piece})
            for n, call in enumerate(calls):
                await send({"tool_calls": [{"index": n, "id": call["id"], "type": "function",
                                            "function": {"name": call["function"]["name"],
                                                         "arguments": ""}}]})
                arguments = call["function"]["arguments"]
                for piece in (arguments[:5], arguments[5:]):
                    await send({"tool_calls": [{"index": n, "function": {"arguments": piece}}]})
            extra = {"stop_reason": self.finish_stop_string} if self.finish_stop_string else None
            await send({}, finish, extra)
            if (body.get("stream_options") or {}).get("include_usage"):
                await response.write(b"data: " + json.dumps({
                    "id": "chatcmpl-tool", "object": "chat.completion.chunk", "created": created,
                    "model": body["model"], "choices": [], "usage": usage}).encode() + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
        except ConnectionResetError:
            return response
        return response
