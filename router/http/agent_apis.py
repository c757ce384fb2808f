"""The coding agents' wire APIs: `POST /v1/messages` (+ `/count_tokens`) and `POST /v1/responses`.

Each request is validated in its own API (a 400 in that API's error shape, naming the field, and
a decision row), translated to Chat Completions (router.wire.messages / router.wire.responses),
routed by `RouterService.open` exactly like a chat request, and the answer translated back, whole
or streamed. A backend that serves the API natively gets the client's own body (`NativeRequest`)
and its answer is passed through untouched. Auth, the rate limiter, body limits, the routing
headers and the stream writer (`Api._whole` / `Api._stream` with a `Relay`) are `api.py`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from router.core import tokens
from router.core.service import NativeRequest
from router.errors import BadRequest, RouterError
from router.http.api import SERVICE, Api, Relay, _client_name, json_response
from router.logs import request_id_var
from router.wire import chat as req
from router.wire import messages as msg
from router.wire.messages_stream import ChatToMessagesStream
from router.wire import responses as rsp


class MessagesRelay(Relay):
    """Answers in Anthropic's Messages API: translated from Chat, or passed through (native)."""

    content_type = "application/json"

    def __init__(self, model: str, input_tokens: int, native: bool) -> None:
        self.model = model
        self.native = native
        self._stream = None if native else ChatToMessagesStream(model, input_tokens)

    def whole(self, body: bytes) -> bytes:
        return body if self.native else msg.translate_chat_answer(body, self.model)

    def feed(self, chunk: bytes) -> bytes:
        if self._stream is None:
            return chunk
        out = self._stream.feed(chunk)
        self.failed = self._stream.failed
        return out

    def end(self) -> bytes:
        if self._stream is None:
            return b""
        out = self._stream.end()
        self.failed = self._stream.failed
        return out

    def stream_error(self, message: str) -> bytes:
        return msg.error_event(message, 502)

    def error_response(self, message: str, status: int, headers: dict[str, str]) -> web.Response:
        return json_response(msg.error_envelope(message, status), status, headers)


class ResponsesRelay(Relay):
    """Answers in OpenAI's Responses API: translated from Chat, or passed through (native)."""

    content_type = "application/json"

    def __init__(self, model: str, input_tokens: int, native: bool) -> None:
        self.model = model
        self.native = native
        self._stream = None if native else rsp.ChatToResponsesStream(model, input_tokens)

    def whole(self, body: bytes) -> bytes:
        return body if self.native else rsp.translate_chat_answer(body, self.model)

    def feed(self, chunk: bytes) -> bytes:
        if self._stream is None:
            return chunk
        out = self._stream.feed(chunk)
        self.failed = self._stream.failed
        return out

    def end(self) -> bytes:
        if self._stream is None:
            return b""
        out = self._stream.end()
        self.failed = self._stream.failed
        return out

    def stream_error(self, message: str) -> bytes:
        if self._stream is not None:
            return self._stream.error(message)
        return b"event: error\ndata: " + orjson.dumps(
            {"type": "error", "code": "server_error", "message": message, "param": None}) + b"\n\n"


@dataclass(frozen=True)
class Dialect:
    """One wire API: how to read it, translate it, and answer in it."""

    api: str  # NativeRequest.api: "messages" | "responses"
    path: str
    parse: Callable[[bytes], dict[str, Any]]
    to_chat: Callable[[dict[str, Any]], dict[str, Any]]
    error_body: Callable[[RouterError], dict[str, Any]]
    relay: Callable[[str, int, bool], Relay]


MESSAGES = Dialect("messages", "/v1/messages", msg.parse, msg.messages_to_chat, msg.error_for,
                   MessagesRelay)
RESPONSES = Dialect("responses", "/v1/responses", rsp.parse, rsp.responses_to_chat,
                    rsp.error_for, ResponsesRelay)


class AgentApis:
    """Handlers for the agent APIs, sharing `api`'s settings and rate limiter."""

    def __init__(self, api: Api) -> None:
        self.api = api

    async def messages(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, MESSAGES)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, RESPONSES)

    def _error(self, dialect: Dialect, exc: RouterError, request_id: str,
               backend: str | None = None) -> web.Response:
        headers = {**exc.headers, "X-Request-ID": request_id}
        if backend:
            headers["X-Routed-Backend"] = backend
        return json_response(dialect.error_body(exc), exc.status, headers)

    async def _admit(self, request: web.Request) -> tuple[str | None, bytes]:
        """Auth, rate limit and body size, as for chat. Raises RouterError."""
        client = _client_name(request, self.api.settings.api_keys)
        self.api.limiter.check(client or request.remote or "anonymous")
        return client, await self.api.read_raw(request)

    async def _serve(self, request: web.Request, dialect: Dialect) -> web.StreamResponse:
        service = request.app[SERVICE]
        request_id = request_id_var.get()
        try:
            client, raw = await self._admit(request)
        except RouterError as exc:
            service.metrics.rejected.labels(str(exc.status)).inc()
            return self._error(dialect, exc, request_id)
        started = time.perf_counter()
        body: dict[str, Any] = {}
        try:
            body = dialect.parse(raw)
            chat = dialect.to_chat(body)
        except BadRequest as exc:
            return self._refuse(request, dialect, exc, client, body, started)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a shape validation missed
            bad = BadRequest(f"The request body could not be translated ({type(exc).__name__}: "
                             f"{exc}); check its fields against the {dialect.api} API.")
            return self._refuse(request, dialect, bad, client, body, started)
        # The chat translation carries `#force_big` for the policy; a native backend gets the
        # client's body, so the tag is taken out of it too (the texts were copied, not shared).
        req.strip_force_big(body)
        row = service.new_row(request_id=request_id, source="api", client=client,
                              endpoint=dialect.path, body=body)
        try:
            routed = await service.open("/v1/chat/completions", chat, row, request.headers,
                                        native=NativeRequest(dialect.api, dialect.path, body))
        except RouterError as exc:
            return self._error(dialect, exc, request_id, row.get("backend"))
        headers = {"X-Request-ID": request_id, "X-Routed-Backend": routed.backend,
                   "X-Routed-Model": routed.model, "X-Route-Reason": routed.reason}
        relay = dialect.relay(str(body.get("model") or routed.model),
                              int(row.get("estimated_tokens") or 0), routed.native)
        if not chat.get("stream"):
            return await Api._whole(routed, headers, relay)
        return await Api._stream(request, routed, headers, relay)

    def _refuse(self, request: web.Request, dialect: Dialect, exc: BadRequest,
                client: str | None, body: dict[str, Any], started: float) -> web.Response:
        """A 400 in the API's own shape, with its decision row (every request gets one)."""
        service = request.app[SERVICE]
        service.metrics.rejected.labels("400").inc()
        row = service.new_row(request_id=request_id_var.get(), source="api", client=client,
                              endpoint=dialect.path, body=body)
        service.finish_row(row, 400, exc.message, started)
        return self._error(dialect, exc, row["request_id"])

    async def count_tokens(self, request: web.Request) -> web.Response:
        """`{"input_tokens": N}`: the router's estimate of the translated prompt (not routed)."""
        service = request.app[SERVICE]
        request_id = request_id_var.get()
        try:
            _client, raw = await self._admit(request)
            chat = msg.messages_to_chat(msg.parse(raw, count_only=True))
        except RouterError as exc:
            return self._error(MESSAGES, exc, request_id)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            bad = BadRequest(f"The request body could not be translated ({type(exc).__name__}: {exc}).")
            return self._error(MESSAGES, bad, request_id)
        count = await tokens.estimate(chat, service.settings.image_token_budget)
        return json_response({"input_tokens": count}, headers={"X-Request-ID": request_id})


def add_routes(app: web.Application, api: Api) -> None:
    """Register the agent APIs. Query strings are accepted (Claude Code posts `?beta=true`)."""
    handlers = AgentApis(api)
    app.router.add_post("/v1/messages", handlers.messages)
    app.router.add_post("/v1/messages/count_tokens", handlers.count_tokens)
    app.router.add_post("/v1/responses", handlers.responses)
