"""A fake LLM provider that OpenCode can be pointed at: OpenAI chat completions and Anthropic messages.

A real aiohttp server on loopback. It answers `POST /v1/chat/completions` (the shape
`@ai-sdk/openai-compatible` speaks, streaming or not) and `POST /v1/messages` (the Anthropic
Messages API that `@ai-sdk/anthropic` speaks with a custom `baseURL`). The answer text is
deterministic: ``"echo: <last user text>"`` split into a few chunks, so tests can check what the
model received. Every request body is kept in `requests`.

Set `mode` to make it misbehave: "ok"; "status" (answer `fail_status` with a provider-style error
body); "slow" (wait `delay` seconds before every chunk). A request whose model id starts with
``fail-`` always answers `fail_status`; ``unknown-`` answers 404 model-not-found like a real API.
`title_requests` counts requests that look like OpenCode's session-title generation.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from tests.helpers import serve_app

PROMPT_TOKENS = 11
COMPLETION_TOKENS = 7


class FakeLLMProvider:
    def __init__(self) -> None:
        self.mode = "ok"
        self.fail_status = 500
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.received = asyncio.Event()
        self._served = AsyncExitStack()
        self.url = ""

    async def start(self) -> FakeLLMProvider:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)
        self.url = await self._served.enter_async_context(serve_app(app, shutdown_timeout=0.1))
        return self

    async def stop(self) -> None:
        await self._served.aclose()

    # -- helpers ---------------------------------------------------------------------------

    def reset(self) -> None:
        self.mode = "ok"
        self.fail_status = 500
        self.delay = 0.0
        self.requests.clear()
        self.paths.clear()
        self.max_in_flight = 0

    def chat_requests(self) -> list[dict[str, Any]]:
        """Requests that were real answers (not OpenCode's title generation)."""
        return [r for r in self.requests if not _is_title_request(r)]

    @property
    def title_requests(self) -> int:
        return sum(1 for r in self.requests if _is_title_request(r))

    @staticmethod
    def answer_for(body: dict[str, Any]) -> str:
        return "echo: " + _last_user_text(body.get("messages") or [])

    def _error(self, status: int, model: str) -> web.Response:
        messages = {
            401: "Invalid API key provided. Your subscription login has expired.",
            404: f"The model `{model}` does not exist or you do not have access to it.",
            429: "Rate limit reached for requests.",
            500: "The server had an error while processing your request.",
            503: "The engine is currently overloaded, please try again later.",
        }
        payload = {"error": {"message": messages.get(status, f"fake provider error {status}"),
                             "type": "invalid_request_error" if status < 500 else "server_error",
                             "code": None, "param": None}}
        return web.json_response(payload, status=status)

    def _failure(self, model: str) -> web.Response | None:
        if model.startswith("unknown-"):
            return self._error(404, model)
        if model.startswith("fail-") or self.mode == "status":
            return self._error(self.fail_status, model)
        return None

    async def _pause(self) -> None:
        if self.mode == "slow" and self.delay:
            await asyncio.sleep(self.delay)

    def _enter(self, body: dict[str, Any], path: str) -> None:
        self.requests.append(body)
        self.paths.append(path)
        self.received.set()
        if not _is_title_request(body):
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self, body: dict[str, Any]) -> None:
        if not _is_title_request(body):
            self.in_flight -= 1

    # -- OpenAI ----------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        self._enter(body, "/v1/chat/completions")
        try:
            failure = self._failure(model)
            if failure is not None:
                return failure
            text = self.answer_for(body)
            pieces = _split(text)
            if not body.get("stream"):
                await self._pause()
                return web.json_response({
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                              "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS},
                })
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                    "created": int(time.time()), "model": model}
            first = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                          "finish_reason": None}]}
            await response.write(_sse(first))
            for piece in pieces:
                await self._pause()
                chunk = {**base, "choices": [{"index": 0, "delta": {"content": piece},
                                              "finish_reason": None}]}
                await response.write(_sse(chunk))
            await response.write(_sse({**base, "choices": [{"index": 0, "delta": {},
                                                            "finish_reason": "stop"}]}))
            await response.write(_sse({**base, "choices": [], "usage": {
                "prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}}))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        finally:
            self._leave(body)

    # -- Anthropic -------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        self._enter(body, "/v1/messages")
        try:
            failure = self._failure(model)
            if failure is not None:
                status = failure.status
                kind = {401: "authentication_error", 404: "not_found_error",
                        429: "rate_limit_error"}.get(status, "api_error")
                message = json.loads(failure.text or "{}")["error"]["message"]
                return web.json_response({"type": "error", "error": {"type": kind, "message": message}},
                                         status=status)
            text = self.answer_for(body)
            usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS}
            if not body.get("stream"):
                await self._pause()
                return web.json_response({
                    "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                    "stop_sequence": None, "usage": usage,
                })
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)

            async def event(name: str, data: dict[str, Any]) -> None:
                await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

            await event("message_start", {"type": "message_start", "message": {
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1}}})
            await event("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "text", "text": ""}})
            for piece in _split(text):
                await self._pause()
                await event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                    "delta": {"type": "text_delta", "text": piece}})
            await event("content_block_stop", {"type": "content_block_stop", "index": 0})
            await event("message_delta", {"type": "message_delta",
                                          "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                          "usage": {"output_tokens": COMPLETION_TOKENS}})
            await event("message_stop", {"type": "message_stop"})
            await response.write_eof()
            return response
        finally:
            self._leave(body)


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _split(text: str) -> list[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text_of(message.get("content")).strip()
    return ""


def _is_title_request(body: dict[str, Any]) -> bool:
    """OpenCode asks for a session title with a system prompt about titles."""
    system = body.get("system")
    texts = [_text_of(system)] if system else []
    texts += [_text_of(m.get("content")) for m in body.get("messages") or []
              if m.get("role") == "system"]
    return any("title generator" in t.lower() for t in texts)
