"""A controllable OpenAI-compatible upstream for router tests (a real aiohttp server on loopback).

Set `mode` to make it misbehave: "ok", "status" (answer `fail_status`), "hang" (never answer,
not even a health check; "hold" and `delay` keep health checks answered: a busy backend),
"hold" (answer once `release` is set),
"die_mid_stream" (send `die_after` chunks, then drop the connection), "garbage" (non-JSON 200),
"malformed_sse"; `pause_after` holds a stream mid-way until `resume` is set. Every request body it received is kept in `requests` for assertions.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from tests.helpers import serve_app


class FakeUpstream:
    def __init__(self, model: str = "fake-model", max_model_len: int | None = 32768,
                 chunks: int = 5, gaming_mode: bool | None = None) -> None:
        self.model = model
        self.max_model_len = max_model_len
        self.chunks = chunks
        self.mode = "ok"
        self.fail_status = 500
        self.fail_code: str | None = None
        self.die_after = 2
        self.delay = 0.0  # seconds before answering (a slow, whole generation)
        self.chunk_delay = 0.001  # seconds between streamed events
        self.pause_after: int | None = None  # stream this many chunks, then wait for `resume`
        self.resume = asyncio.Event()
        self.healthy = True
        self.gaming_mode = gaming_mode
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.cancelled = asyncio.Event()
        self.received = asyncio.Event()
        self.release = asyncio.Event()
        self.gaming_posts: list[bool] = []
        self._served: AsyncExitStack | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> FakeUpstream:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/status", self._status)
        app.router.add_post("/gaming-mode", self._gaming)
        self._served = AsyncExitStack()
        url = await self._served.enter_async_context(serve_app(app, port=port,
                                                               shutdown_timeout=0.1))
        self.port = int(url.rpartition(":")[2])
        return self

    async def stop(self) -> None:
        """Stop serving (`start(port)` may serve again, on the same port)."""
        if self._served is not None:
            await self._served.aclose()
            self._served = None

    async def _health(self, _r: web.Request) -> web.Response:
        return web.Response(status=200 if self.healthy else 503)

    async def _models(self, _r: web.Request) -> web.Response:
        if self.mode == "hang":  # hung: accepts connections, answers nothing, health included
            await asyncio.sleep(3600)
        if not self.healthy:
            return web.json_response({"error": "down"}, status=503)
        entry: dict[str, Any] = {"id": self.model, "object": "model", "created": 0, "owned_by": "vllm"}
        if self.max_model_len:
            entry["max_model_len"] = self.max_model_len
        return web.json_response({"object": "list", "data": [entry]})

    async def _status(self, _r: web.Request) -> web.Response:
        return web.json_response({"gaming_mode": bool(self.gaming_mode), "models": [], "gpu": None})

    async def _gaming(self, request: web.Request) -> web.Response:
        enabled = (await request.json())["enabled"]
        self.gaming_posts.append(enabled)
        self.gaming_mode = enabled
        return web.json_response({"gaming_mode": enabled, "models": [], "gpu": None})

    async def _take(self, request: web.Request) -> dict[str, Any] | web.Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.received.set()
        if self.mode == "status":
            return web.json_response({"error": {"message": f"fake failure {self.fail_status}",
                                                "type": "server_error", "code": self.fail_code,
                                                "param": None}},
                                     status=self.fail_status, headers={"Retry-After": "7"})
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "hold":
            await self.release.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "garbage":
            return web.Response(text="<html>this is not json</html>", content_type="text/html")
        return body  # type: ignore[no-any-return]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._take(request)
        if isinstance(body, web.Response):
            return body
        words = [f"tok{i} " for i in range(self.chunks)]
        created = int(time.time())
        usage = {"prompt_tokens": 11, "completion_tokens": len(words), "total_tokens": 11 + len(words)}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": "".join(words)}
            if body.get("tools"):
                message["tool_calls"] = [{"id": "call_1", "type": "function", "function": {
                    "name": body["tools"][0]["function"]["name"], "arguments": "{\"city\": \"Oslo\"}"}}]
            return web.json_response({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": created,
                "model": body["model"],
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "tool_calls" if body.get("tools") else "stop"}],
                "usage": usage})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        try:
            for index, word in enumerate(words):
                if index == self.pause_after:
                    await self.resume.wait()
                if self.mode == "die_mid_stream" and index == self.die_after:
                    assert request.transport is not None
                    request.transport.close()
                    return response
                if self.mode == "malformed_sse" and index == 1:
                    await response.write(b"data: {not json at all\n\n")
                chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                         "model": body["model"],
                         "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
                await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                await asyncio.sleep(self.chunk_delay)
            finish = "stop"
            if body.get("tools"):  # like vLLM: the call's arguments arrive in pieces
                finish = "tool_calls"
                name = body["tools"][0]["function"]["name"]
                pieces = [{"index": 0, "id": "call_1", "type": "function",
                           "function": {"name": name, "arguments": ""}},
                          {"index": 0, "function": {"arguments": "{\"city\": "}},
                          {"index": 0, "function": {"arguments": "\"Oslo\"}"}}]
                for piece in pieces:
                    chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                             "created": created, "model": body["model"],
                             "choices": [{"index": 0, "delta": {"tool_calls": [piece]},
                                          "finish_reason": None}]}
                    await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            final = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                     "model": body["model"], "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
            await response.write(b"data: " + json.dumps(final).encode() + b"\n\n")
            if include_usage:
                tail = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                        "model": body["model"], "choices": [], "usage": usage}
                await response.write(b"data: " + json.dumps(tail).encode() + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.cancelled.set()
            raise
        return response

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._take(request)
        if isinstance(body, web.Response):
            return body
        usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        answer = {"id": "cmpl-fake", "object": "text_completion", "created": 0,
                  "model": body["model"],
                  "choices": [{"index": 0, "text": " done", "finish_reason": "stop"}]}
        if not body.get("stream"):
            return web.json_response({**answer, "usage": usage})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: " + json.dumps(answer).encode() + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            tail = {**answer, "choices": [], "usage": usage}
            await response.write(b"data: " + json.dumps(tail).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await self._take(request)
        if isinstance(body, web.Response):
            return body
        return web.json_response({"object": "list", "model": body["model"],
                                  "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                                  "usage": {"prompt_tokens": 2, "total_tokens": 2}})
