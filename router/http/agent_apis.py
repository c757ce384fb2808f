"""The coding agents' wire APIs: `POST /v1/messages` (+ `/count_tokens`) and `POST /v1/responses`.

Each request is validated in its own API (a 400 in that API's error shape, naming the field, and
a decision row), translated to Chat Completions (router.wire.messages / router.wire.responses),
routed by `RouterService.open` exactly like a chat request, and the answer translated back, whole
or streamed. A backend that serves the API natively gets the client's own body (`NativeRequest`)
and its answer is passed through untouched. Auth, the rate limiter, body limits, the routing
headers and the stream writer (`Api._whole` / `Api._stream` with a `Relay`) are `api.py`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from router.core import tokens
from router.core.service import NativeRequest
from router.errors import BadRequest, RouterError
from router.http.api import SERVICE, Api, Relay, _client_name, json_response, routed_headers
from router.logs import request_id_var
from router.wire import chat as req
from router.wire import messages as msg
from router.wire.messages_stream import ChatToMessagesStream
from router.wire import responses as rsp


class MessagesRelay(Relay):
    """Answers in Anthropic's Messages API: translated from Chat, or passed through (native)."""

    content_type = "application/json"

    def __init__(self, body: dict[str, Any], model: str, input_tokens: int, native: bool) -> None:
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

    def __init__(self, body: dict[str, Any], model: str, input_tokens: int, native: bool) -> None:
        self.model = model
        self.native = native
        self.custom = rsp.custom_tools(body)
        self._stream = None if native else rsp.ChatToResponsesStream(model, input_tokens,
                                                                      self.custom)

    def whole(self, body: bytes) -> bytes:
        return body if self.native else rsp.translate_chat_answer(body, self.model, self.custom)

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
    relay: Callable[[dict[str, Any], str, int, bool], Relay]  # (body, model, tokens, native)


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

    async def _serve(self, request: web.Request, dialect: Dialect) -> web.StreamResponse:
        service = request.app[SERVICE]
        request_id = request_id_var.get()
        client: str | None = None
        try:
            client = _client_name(request, self.api.settings.api_keys)
            self.api.limiter.check(client or request.remote or "anonymous")
            raw = await self.api.read_raw(request)
        except RouterError as exc:
            service.reject(request_id=request_id, source="api", client=client,
                           endpoint=dialect.path, status=exc.status, error=exc.message)
            return self._error(dialect, exc, request_id)
        body: dict[str, Any] = {}
        try:
            body = dialect.parse(raw)
            chat = dialect.to_chat(body)
        except (BadRequest, KeyError, TypeError, ValueError, AttributeError) as exc:
            bad = exc if isinstance(exc, BadRequest) else BadRequest(  # a shape validation missed
                f"The request body could not be translated ({type(exc).__name__}: {exc}); "
                f"check its fields against the {dialect.api} API.")
            model = body.get("model")
            service.reject(request_id=request_id, source="api", client=client,
                           endpoint=dialect.path, status=400, error=bad.message,
                           model=model if isinstance(model, str) else None)
            return self._error(dialect, bad, request_id)
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
        headers = routed_headers(request_id, routed)
        relay = dialect.relay(body, str(body.get("model") or routed.model),
                              int(row.get("estimated_tokens") or 0), routed.native)
        if not chat.get("stream"):
            return await Api._whole(routed, headers, relay)
        return await Api._stream(request, routed, headers, relay)

    async def count_tokens(self, request: web.Request) -> web.Response:
        """`{"input_tokens": N}`: the router's estimate of the translated prompt (not routed)."""
        service = request.app[SERVICE]
        request_id = request_id_var.get()
        try:
            _client_name(request, self.api.settings.api_keys)
            chat = msg.messages_to_chat(msg.parse(await self.api.read_raw(request), count_only=True))
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
