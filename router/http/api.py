"""The thin aiohttp endpoint: OpenAI-compatible `/v1/*`, status, metrics and admin routes.

Handlers only translate HTTP to `RouterService` calls and back; routing lives in the service.
Errors become HTTP in one place (`_error_response`). Every `/v1` response carries
`X-Request-ID`; routed ones also `X-Routed-Backend`, `X-Routed-Model` and `X-Route-Reason`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from router.backends.base import StreamBroken
from router.core.answers import PassThrough
from router.core.routed import Routed
from router.core.service import RouterService
from router.core.waiting import Progress
from router.errors import (
    BadRequest,
    BodyTooLarge,
    Forbidden,
    NotFound,
    RateLimited,
    RouterError,
    Unauthorized,
    body_for,
    error_body,
    error_type,
)
from router.http import openapi
from router.logs import new_request_id, request_id_var
from router.settings import ConfigError, Settings
from router.wire import chat as req

log = logging.getLogger(__name__)

SERVICE: web.AppKey[RouterService] = web.AppKey("service", RouterService)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, headers=headers,
                        content_type="application/json")


def _error_response(exc: RouterError, request_id: str | None = None) -> web.Response:
    headers = dict(exc.headers)
    if request_id:
        headers["X-Request-ID"] = request_id
    if isinstance(exc, PassThrough):
        return web.Response(body=exc.raw, status=exc.status, headers=headers,
                            content_type="application/json")
    return json_response(body_for(exc), exc.status, headers)


class RateLimiter:
    """Fixed one-minute windows per client: its key's name, else its address. Loop-only."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows: dict[str, tuple[int, int]] = {}

    def check(self, key_name: str | None, request: web.BaseRequest) -> None:
        """Count the request; RateLimited once its client is over the limit."""
        if self.per_minute <= 0:
            return  # (the peer's address is looked up only when there is a limit)
        client = key_name or request.remote or "anonymous"
        window = int(time.monotonic() // 60)
        start, count = self._windows.get(client, (window, 0))
        if start != window:
            start, count = window, 0
        if count >= self.per_minute:
            retry = str(60 - int(time.monotonic() % 60))
            raise RateLimited(f"Rate limit of {self.per_minute} requests per minute reached for "
                              f"'{client}'; retry in {retry}s.", headers={"Retry-After": retry})
        self._windows[client] = (start, count + 1)


def _bearer(request: web.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _client_name(request: web.Request, keys: dict[str, str]) -> str | None:
    """The API key's name; raises Unauthorized when keys are set and none matches.

    The key comes as `Authorization: Bearer <key>` or (Anthropic clients) `x-api-key: <key>`.
    """
    if not keys:
        return None
    token = _bearer(request) or request.headers.get("x-api-key", "").strip() or None
    if token is None:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>' "
                           "(or 'x-api-key: <key>').")
    for key, name in keys.items():
        if hmac.compare_digest(token.encode(), key.encode()):
            return name
    raise Unauthorized("Invalid API key.")


class Relay:
    """How an answer reaches the client. This base passes Chat Completions bytes through;
    the agent APIs (router.http.agent_apis) subclass it to translate and to shape errors.

    One instance per response. `failed` is set when the relay itself saw the answer fail
    (e.g. an error event inside the stream); the row is then recorded as a 502.
    """

    failed: str | None = None
    content_type: str | None = None  # None: the upstream's own

    def whole(self, body: bytes) -> bytes:
        """The client's body for a whole upstream answer. Raises ValueError if unusable."""
        return body

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send for one upstream stream chunk."""
        return chunk

    def end(self) -> bytes:
        """The bytes to send when the upstream stream ended cleanly."""
        return b""

    def stream_error(self, message: str) -> bytes:
        """An error event for a stream that failed after its first byte."""
        event = error_body(message, "server_error", "stream_error")
        return b"data: " + orjson.dumps(event) + b"\n\n"

    def error_response(self, message: str, status: int, headers: dict[str, str]) -> web.Response:
        """An error answer for a whole response that failed after the backend was chosen."""
        return json_response(error_body(message, "server_error", "upstream_error"), status, headers)

    def refusal_event(self, exc: RouterError) -> bytes:
        """The error event ending a stream opened early (for keep-alives) that no backend served."""
        return b"data: " + orjson.dumps(body_for(exc)) + b"\n\n"

    def keepalive(self, progress: Progress, as_reasoning: bool) -> bytes:
        """A note while the backend has not answered: an SSE comment, which every client
        ignores and which commits nothing (or, for chat UIs that show reasoning, a reasoning
        delta; chat completions only)."""
        if as_reasoning:
            note = progress.starting() or f"Waiting for {progress.label}"
            chunk = {"id": "loading", "object": "chat.completion.chunk", "created": 0, "model": "",
                     "choices": [{"index": 0, "delta": {"reasoning_content":
                                                        f"{note}… {progress.elapsed:.0f} s\n"},
                                  "finish_reason": None}]}
            return b"data: " + orjson.dumps(chunk) + b"\n\n"
        return b": " + progress.text().encode() + b"\n\n"


PASS_THROUGH = Relay()


class EarlyStream:
    """A client's event stream, opened before any backend answered, to carry keep-alive notes.

    `note` is given to `RouterService.open` as its `notify`: the first note sends the status
    line and headers (the routing headers are not known yet, so a comment names the backend
    once it answers), later ones only write. `response` stays None on the fast path.
    """

    def __init__(self, request: web.Request, relay: Relay, request_id: str) -> None:
        self.request = request
        self.relay = relay
        self.request_id = request_id
        self.reasoning = req.truthy_header(request.headers, "X-Loading-Status")
        self.response: web.StreamResponse | None = None

    async def note(self, progress: Progress) -> None:
        if self.response is None:
            self.response = web.StreamResponse(
                status=200, headers={"X-Request-ID": self.request_id, **SSE_HEADERS})
            await self.response.prepare(self.request)
        await self.response.write(self.relay.keepalive(
            progress, (self.reasoning or progress.loading_status) and self.relay is PASS_THROUGH))

    async def refuse(self, exc: RouterError) -> web.StreamResponse:
        """End the early stream with the error no backend could avoid (the row is recorded)."""
        assert self.response is not None
        try:
            await self.response.write(self.relay.refusal_event(exc))
            await self.response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return self.response


class Api:
    """Route handlers bound to one service."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limiter = RateLimiter(settings.rate_limit_rpm)
        self._openapi = orjson.dumps(openapi.spec())

    async def _read_body(self, request: web.Request, endpoint: str) -> dict[str, Any]:
        return req.parse_body(await self.read_raw(request), endpoint)

    async def read_raw(self, request: web.Request) -> bytes:
        """The request body, within MAX_BODY_BYTES. Raises BodyTooLarge."""
        length = request.content_length
        limit = self.settings.max_body_bytes
        if length is not None and length > limit:
            raise BodyTooLarge(f"Request body is {length} bytes; the limit is {limit} bytes.")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BodyTooLarge(f"Request body is larger than the limit of {limit} bytes.") from None
        return raw

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        service = request.app[SERVICE]
        endpoint = request.path
        request_id = request_id_var.get()
        client: str | None = None
        try:
            client = _client_name(request, self.settings.api_keys)
            self.limiter.check(client, request)
            body = await self._read_body(request, endpoint)
        except RouterError as exc:
            service.reject(request_id=request_id, source="api", client=client, endpoint=endpoint,
                           status=exc.status, error=exc.message)
            return _error_response(exc, request_id)
        row = service.new_row(request_id=request_id, source="api", client=client,
                              endpoint=endpoint, body=body)
        early = EarlyStream(request, PASS_THROUGH, request_id) if body.get("stream") else None
        try:
            async with service.route(endpoint, body, row, request.headers,
                                     notify=early.note if early else None) as routed:
                headers = routed_headers(request_id, routed)
                if early is None:
                    return await self._whole(routed, headers)
                return await self._stream(request, routed, headers, early=early)
        except RouterError as exc:  # from routing: no backend answered (the row is recorded)
            if early is not None and early.response is not None:
                return await early.refuse(exc)
            response = _error_response(exc, request_id)
            if row.backend:
                response.headers["X-Routed-Backend"] = row.backend
            return response

    @staticmethod
    async def _whole(routed: Routed, headers: dict[str, str],
                     relay: Relay = PASS_THROUGH) -> web.Response:
        """The whole answer, through `relay` (inside `RouterService.route`, which logs it)."""
        try:
            answer = await routed.whole()
        except StreamBroken as exc:
            routed.fail(502, str(exc))
            return relay.error_response(f"The backend failed mid-response: {exc}", 502, headers)
        try:
            body = relay.whole(answer)
        except ValueError as exc:
            routed.fail(502, f"unusable answer from backend {routed.backend}: {exc}")
            return relay.error_response(f"The backend {routed.backend} sent an unusable answer: "
                                        f"{exc}.", 502, headers)
        return web.Response(body=body, status=routed.upstream.status,
                            headers={**headers, "Content-Type":
                                     relay.content_type or routed.upstream.content_type})

    @staticmethod
    async def _stream(request: web.Request, routed: Routed, headers: dict[str, str],
                      relay: Relay = PASS_THROUGH,
                      early: EarlyStream | None = None) -> web.StreamResponse:
        """Relay SSE chunks as they arrive (inside `RouterService.route`, which logs the row)."""
        opened = early.response if early is not None else None
        response = opened or web.StreamResponse(status=routed.upstream.status,
                                                headers={**headers, **SSE_HEADERS})
        try:
            if opened is None:
                await response.prepare(request)
            else:  # opened early for keep-alives: say in a comment where it went
                routing = ", ".join(f"{k}: {v}" for k, v in headers.items() if k != "X-Request-ID")
                await response.write(b": " + routing.encode() + b"\n\n")
            await response.write(relay.feed(routed.first))
            async for chunk in routed.rest():
                if out := relay.feed(chunk):
                    await response.write(out)
            if tail := relay.end():
                await response.write(tail)
            if relay.failed:
                routed.fail(502, relay.failed)
        except StreamBroken as exc:
            routed.fail(502, str(exc))
            try:
                await response.write(relay.stream_error(f"The backend failed mid-stream: {exc}"))
            except (ConnectionResetError, RuntimeError):
                pass
        await response.write_eof()
        return response

    async def route(self, request: web.Request) -> web.Response:
        service = request.app[SERVICE]
        request_id = request_id_var.get()
        try:
            client = _client_name(request, self.settings.api_keys)
            body = await self._read_body(request, "/v1/chat/completions")
            planned = await service.plan("/v1/chat/completions", body, request.headers,
                                         client=client)
        except RouterError as exc:
            return _error_response(exc, request_id)
        return json_response(planned.as_json(service.model_for(planned)),
                             headers={"X-Request-ID": request_id})

    async def models(self, request: web.Request) -> web.Response:
        service = request.app[SERVICE]
        request_id = request_id_var.get()
        try:
            _client_name(request, self.settings.api_keys)
        except RouterError as exc:
            return _error_response(exc, request_id)
        created = int(time.time())
        data = [{"id": "auto", "object": "model", "created": created, "owned_by": "local-ai-router"}]
        for alias, target in sorted(service.topology.aliases.items()):
            data.append({"id": alias, "object": "model", "created": created,
                         "owned_by": f"local-ai-router:{target.partition(':')[0]}"})
        for name, state in service.registry.states.items():
            for model in state.served:
                entry: dict[str, Any] = {"id": model.id, "object": "model", "created": created,
                                         "owned_by": name}
                if model.max_model_len:
                    entry["max_model_len"] = model.max_model_len
                data.append(entry)
        return json_response({"object": "list", "data": data}, headers={"X-Request-ID": request_id})

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")

    async def health(self, _request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def status(self, request: web.Request) -> web.Response:
        service = request.app[SERVICE]
        return json_response(service.status())

    async def metrics(self, request: web.Request) -> web.Response:
        service = request.app[SERVICE]
        m = service.metrics
        m.gaming_mode.set(1 if service.gaming.enabled else 0)
        for name, state in service.registry.states.items():
            m.backend_up.labels(name).set(1 if state.healthy else 0)
        return web.Response(body=m.render(), content_type="text/plain", charset="utf-8")

    def _admin(self, request: web.Request) -> None:
        token = self.settings.admin_token
        if not token:
            raise Forbidden("Admin endpoints are disabled: set ROUTER_ADMIN_TOKEN.")
        given = _bearer(request)
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthorized("Missing or wrong admin token (Authorization: Bearer $ROUTER_ADMIN_TOKEN).")

    async def gaming_mode(self, request: web.Request) -> web.Response:
        service = request.app[SERVICE]
        try:
            self._admin(request)
            if request.method == "GET":
                return json_response({"enabled": service.gaming.enabled,
                                      "backends": service.gaming.states})
            try:
                payload = orjson.loads(await request.read())
            except orjson.JSONDecodeError:
                raise BadRequest("Body must be JSON like {\"enabled\": true}.") from None
            if not isinstance(payload, dict) or not isinstance(payload.get("enabled"), bool):
                raise BadRequest("Body must be JSON like {\"enabled\": true}.", param="enabled")
            backend = payload.get("backend")
            gaming = service.gaming.states
            if backend is not None and not isinstance(backend, str):
                raise BadRequest("'backend' must be the name of a gaming backend.", param="backend")
            if backend is not None and backend not in gaming:
                raise NotFound(f"There is no gaming backend {backend!r} (gaming backends: "
                               f"{', '.join(gaming) or 'none is configured'}).", param="backend",
                               code="backend_not_found")
            actor = request.headers.get("X-Actor", "admin-api")[:100]
            change = await service.gaming.set(payload["enabled"], actor, "admin", backend)
        except RouterError as exc:
            return _error_response(exc)
        return json_response({"enabled": change.enabled, "applied": change.applied,
                              "message": change.message, "backends": service.gaming.states})

    async def reload(self, request: web.Request) -> web.Response:
        """POST /admin/reload: re-read the home-lab file; an invalid one changes nothing."""
        service = request.app[SERVICE]
        try:
            self._admin(request)
            try:
                result = await service.reload()
            except ConfigError as exc:
                raise BadRequest(f"The configuration was not reloaded: {exc}",
                                 code="invalid_config") from None
        except RouterError as exc:
            return _error_response(exc)
        return json_response({"reloaded": True, "config": result.origin,
                              "backends": list(result.backends), "changed": list(result.changed),
                              "removed": list(result.removed),
                              "restart_needed": list(result.restart_needed),
                              "message": result.summary()})


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown routes and unexpected failures still answer in OpenAI's error shape.

    First it sets the request id (the client's `X-Request-ID` or a new one) in `request_id_var`,
    so that every log line emitted while serving this request carries it.
    """
    request_id = request.headers.get("X-Request-ID") or new_request_id()
    request_id_var.set(request_id)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status)
        headers = {"X-Request-ID": request_id}  # SPEC: every /v1 response carries it
        if "Allow" in exc.headers:  # RFC 9110
            headers["Allow"] = exc.headers["Allow"]
        return json_response(error_body(f"{exc.reason}: {request.method} {request.path}",
                                        error_type(exc.status), code), exc.status, headers)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response(error_body("Internal router error; see the router log.",
                                        "server_error", "internal_error"), 500,
                             {"X-Request-ID": request_id})


def add_routes(app: web.Application, settings: Settings) -> Api:
    """Register the OpenAI routes; returns the handlers (the agent APIs share their limiter)."""
    api = Api(settings)
    app.router.add_post("/v1/chat/completions", api.proxy)
    app.router.add_post("/v1/completions", api.proxy)
    app.router.add_post("/v1/embeddings", api.proxy)
    app.router.add_post("/v1/route", api.route)
    app.router.add_get("/v1/models", api.models)
    app.router.add_get("/health", api.health)
    app.router.add_get("/status", api.status)
    app.router.add_get("/metrics", api.metrics)
    app.router.add_get("/openapi.json", api.openapi)
    app.router.add_route("GET", "/admin/gaming-mode", api.gaming_mode)
    app.router.add_route("POST", "/admin/gaming-mode", api.gaming_mode)
    app.router.add_post("/admin/reload", api.reload)
    return api


def routed_headers(request_id: str, routed: Routed) -> dict[str, str]:
    """The headers of every routed answer, whichever wire API carries it."""
    headers = {"X-Request-ID": request_id, "X-Routed-Backend": routed.backend,
               "X-Routed-Model": routed.model, "X-Route-Reason": routed.reason}
    if routed.clamped is not None:
        headers["X-Max-Tokens-Clamped"] = str(routed.clamped)
    return headers
