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
from router.core.routed import NativeRequest
from router.errors import BadRequest, RouterError
from router.http.api import (
    SERVICE,
    Api,
    EarlyStream,
    Relay,
    _client_name,
    json_response,
    routed_headers,
)
from router.logs import request_id_var
from router.wire import chat as req
from router.wire import messages as msg
from router.wire import responses as rsp
from router.wire.messages_stream import ChatToMessagesStream


class _AgentRelay(Relay):
    """An agent API's answer: translated from Chat, or passed through when the backend spoke the
    client's API natively. Made before routing (an early stream needs its error shapes);
    `start()` once the backend is known, before the first byte is fed."""

    content_type = "application/json"
    native_failure = b"event: error"  # how a natively answering backend reports a failure

    def __init__(self, body: dict[str, Any], model: str) -> None:
        self.body = body
        self.model = model
        self.native = False
        self._stream: ChatToMessagesStream | rsp.ChatToResponsesStream | None = None

    def start(self, native: bool, input_tokens: int) -> None:
        self.native = native
        self._stream = None if native else self._translator(input_tokens)

    def _translator(self, input_tokens: int) -> ChatToMessagesStream | rsp.ChatToResponsesStream:
        raise NotImplementedError

    def feed(self, chunk: bytes) -> bytes:
        if self._stream is None:
            if self.native_failure in chunk:  # passed on as sent; the row says it failed
                tail = chunk[-300:].decode(errors="replace")
                self.failed = f"backend sent an error event: {tail}"
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


class MessagesRelay(_AgentRelay):
    """Answers in Anthropic's Messages API (errors as `event: error`)."""

    def _translator(self, input_tokens: int) -> ChatToMessagesStream:
        return ChatToMessagesStream(self.model, input_tokens)

    def whole(self, body: bytes) -> bytes:
        return body if self.native else msg.translate_chat_answer(body, self.model)

    def stream_error(self, message: str) -> bytes:
        return msg.error_event(message, 502)

    def refusal_event(self, exc: RouterError) -> bytes:
        return msg.sse_event("error", msg.error_for(exc))

    def error_response(self, message: str, status: int, headers: dict[str, str]) -> web.Response:
        return json_response(msg.error_envelope(message, status), status, headers)


class ResponsesRelay(_AgentRelay):
    """Answers in OpenAI's Responses API (a failure mid-stream is `response.failed`)."""

    native_failure = b"event: response.failed"

    def __init__(self, body: dict[str, Any], model: str) -> None:
        super().__init__(body, model)
        self.custom = rsp.custom_tools(body)

    def _translator(self, input_tokens: int) -> rsp.ChatToResponsesStream:
        return rsp.ChatToResponsesStream(self.model, input_tokens, self.custom)

    def whole(self, body: bytes) -> bytes:
        return body if self.native else rsp.translate_chat_answer(body, self.model, self.custom)

    def stream_error(self, message: str) -> bytes:
        if isinstance(self._stream, rsp.ChatToResponsesStream):
            return self._stream.error(message)
        return b"event: error\ndata: " + orjson.dumps(
            {"type": "error", "code": "server_error", "message": message, "param": None}) + b"\n\n"

    def refusal_event(self, exc: RouterError) -> bytes:
        return rsp.ChatToResponsesStream(self.model).error(exc.message)


@dataclass(frozen=True)
class Dialect:
    """One wire API: how to read it, translate it, and answer in it."""

    api: str  # NativeRequest.api: "messages" | "responses"
    path: str
    parse: Callable[[bytes], dict[str, Any]]
    to_chat: Callable[[dict[str, Any]], dict[str, Any]]
    error_body: Callable[[RouterError], dict[str, Any]]
    relay: Callable[[dict[str, Any], str], _AgentRelay]  # (the client's body, its model)


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
            self.api.limiter.check(client, request)
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
        relay = dialect.relay(body, str(body.get("model") or ""))
        # A stream is opened early (SSE comments) if the backend is slow to start answering.
        early = EarlyStream(request, relay, request_id) if chat.get("stream") else None
        native = NativeRequest(dialect.api, dialect.path, body, _passed_headers(request))
        try:
            async with service.route("/v1/chat/completions", chat, row, request.headers,
                                     native=native,
                                     notify=early.note if early else None) as routed:
                relay.model = relay.model or routed.model
                relay.start(routed.native, row.estimated_tokens or 0)
                headers = routed_headers(request_id, routed)
                if early is None:
                    return await Api._whole(routed, headers, relay)
                return await Api._stream(request, routed, headers, relay, early=early)
        except RouterError as exc:  # from routing: no backend answered (the row is recorded)
            if early is not None and early.response is not None:
                return await early.refuse(exc)
            return self._error(dialect, exc, request_id, row.backend)

    async def count_tokens(self, request: web.Request) -> web.Response:
        """`{"input_tokens": N}`: the router's estimate of the translated prompt (not routed)."""
        service = request.app[SERVICE]
        request_id = request_id_var.get()
        try:
            _client_name(request, self.api.settings.api_keys)
            body = msg.parse(await self.api.read_raw(request), count_only=True)
            chat = msg.messages_to_chat(body)
        except RouterError as exc:
            return self._error(MESSAGES, exc, request_id)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            bad = BadRequest(
                f"The request body could not be translated ({type(exc).__name__}: {exc}).")
            return self._error(MESSAGES, bad, request_id)
        count = await tokens.estimate(chat, service.settings.image_token_budget)
        return json_response({"input_tokens": count}, headers={"X-Request-ID": request_id})


def add_routes(app: web.Application, api: Api) -> None:
    """Register the agent APIs. Query strings are accepted (Claude Code posts `?beta=true`)."""
    handlers = AgentApis(api)
    app.router.add_post("/v1/messages", handlers.messages)
    app.router.add_post("/v1/messages/count_tokens", handlers.count_tokens)
    app.router.add_post("/v1/responses", handlers.responses)


PASSED_HEADERS = ("anthropic-beta",)  # what a native backend needs of the client's own headers


def _passed_headers(request: web.Request) -> dict[str, str]:
    """The client's headers a backend serving its API natively needs (never its credentials)."""
    return {name: request.headers[name] for name in PASSED_HEADERS if name in request.headers}
