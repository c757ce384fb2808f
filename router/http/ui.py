"""The dashboard: `GET /ui` (static files shipped in the package), its JSON API and live feed.

Routes (`add_ui_routes`):
- `GET /ui`, `GET /ui/static/...`: the page; loads without a key, makes no request off the router.
- `GET /ui/api/status`: `/status` plus each backend's context window and, for inference agents,
  the agent's own `/status` (models and their states, GPU). Agent statuses are fetched here,
  server-side, at most once per `AGENT_TTL` per backend however many dashboards ask, and never
  by the data plane.
- `GET /ui/api/decisions?limit=N`: the newest rows, for the feed's first paint.
- `GET /ui/api/stats?window=24h|7d`: per-backend time buckets (router/store/stats.py).
- `GET /ui/events`: Server-Sent Events `decision` (a row as it is recorded), `backend` (up/down)
  and `gaming` (a change). Rows come from the decision log's subscriber queue, which exists only
  while a dashboard is connected, so the data plane does no extra work without one.
- `POST /admin/backends/{name}/load` (`{"model": id}`) and `POST /admin/backends/{name}/stop`:
  model control through the backend's inference agent (admin token).
With `ROUTER_API_KEYS` set every `/ui/api` and `/ui/events` call needs a key, like `/v1`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from sqlalchemy import Engine

from router.backends.agent_control import AgentClient, AgentError
from router.core.registry import BackendState
from router.core.service import RouterService
from router.errors import BadRequest, Forbidden, RouterError, Unauthorized
from router.http.api import SERVICE, _bearer, _client_name, _error_response, json_response
from router.store import stats

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
AGENT_TTL = 5.0  # seconds an agent's /status is reused
FEED_INTERVAL = 0.5  # seconds between batches of rows: at most 2 writes a second per dashboard
ROW_BACKLOG = 10_000  # rows the pump may fall behind before the decision log drops them for it
FEED_BACKLOG = 256  # batches a stalled dashboard may fall behind before it misses some
KEEPALIVE = 15.0
GONE_CHECK = 1.0  # seconds between checks that an idle dashboard is still connected
CSP = ("default-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'")
_CLOSE = b""  # queued to a feed to end it


class BackendNotFound(RouterError):
    status = 404
    type = "invalid_request_error"
    code = "backend_not_found"


class NotAnAgent(RouterError):
    status = 409
    type = "invalid_request_error"
    code = "not_an_agent"


class AgentFailed(RouterError):
    """The inference agent could not be reached or refused: the router is its gateway."""

    status = 502
    type = "server_error"
    code = "agent_error"


def _engine(service: RouterService) -> Engine:
    """The one place the dashboard reaches for the database engine."""
    return service.engine


def _check_key(request: web.Request, service: RouterService) -> None:
    _client_name(request, service.settings.api_keys)


def _check_admin(request: web.Request, service: RouterService) -> None:
    token = service.settings.admin_token
    if not token:
        raise Forbidden("Admin endpoints are disabled: set ROUTER_ADMIN_TOKEN.")
    given = _bearer(request)
    if given is None or not hmac.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("Missing or wrong admin token (Authorization: Bearer $ROUTER_ADMIN_TOKEN).")


def row_json(row: dict[str, Any]) -> dict[str, Any]:
    """A decision row (live dict or database row) as the page reads it. Pure."""
    out = dict(row)
    created = out.get("created_at")
    if isinstance(created, datetime):
        out["created_at"] = created.astimezone(UTC).isoformat().replace("+00:00", "Z")
    elif isinstance(created, str):
        out["created_at"] = created.replace(" ", "T") + ("" if created.endswith("Z") else "Z")
    for key in ("gaming_mode", "force_big", "stream"):
        if key in out and out[key] is not None:
            out[key] = bool(out[key])
    candidates = out.get("candidates")
    out["candidates"] = candidates.split(",") if isinstance(candidates, str) and candidates else []
    for key, empty in (("skipped", {}), ("failures", [])):
        value = out.get(key)
        try:
            out[key] = orjson.loads(value) if isinstance(value, str) and value else empty
        except orjson.JSONDecodeError:
            out[key] = {"?": value} if key == "skipped" else [{"backend": "?", "error": value}]
    return out


class AgentProbe:
    """Cached, rate-limited reads of inference agents' `GET /status`. Loop-only.

    Only backends of kind `agent` are asked. Concurrent askers share one fetch per backend; a
    result (or failure) is reused for `AGENT_TTL` seconds. Never raises.
    """

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._inflight: dict[str, asyncio.Task[dict[str, Any] | None]] = {}

    def forget(self, name: str) -> None:
        self._cache.pop(name, None)

    async def status(self, state: BackendState) -> dict[str, Any] | None:
        if state.spec is None or state.spec.kind != "agent":
            return None  # only inference agents have a /status to show
        cached = self._cache.get(state.name)
        if cached is not None and time.monotonic() < cached[0]:
            return cached[1]
        task = self._inflight.get(state.name)
        if task is None:
            task = asyncio.create_task(self._fetch(agent_url(state)), name=f"ui-agent-{state.name}")
            self._inflight[state.name] = task
            task.add_done_callback(self._finished(state.name))
        result = await asyncio.shield(task)
        self._cache[state.name] = (time.monotonic() + AGENT_TTL, result)
        return result

    def _finished(self, name: str) -> Callable[[asyncio.Task[dict[str, Any] | None]], None]:
        def done(_task: asyncio.Task[dict[str, Any] | None]) -> None:
            self._inflight.pop(name, None)
        return done

    async def _fetch(self, base: str) -> dict[str, Any] | None:
        try:
            async with self._session.get(f"{base}/status") as response:
                if response.status != 200:
                    return None
                payload = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, ValueError):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("models"), list):
            return None
        keep = ("gaming_mode", "safe_to_game", "models", "gpu", "active_requests", "warnings")
        return {k: payload.get(k) for k in keep}


def agent_url(state: BackendState) -> str:
    return state.client.url.rstrip("/").removesuffix("/v1")


class Dashboard:
    """Live-feed fan-out and agent access for one app. Created and closed by `_lifecycle`.

    While at least one feed is open, one pump task holds the decision log's only subscription:
    it turns each batch of rows into SSE bytes once and hands the same bytes to every feed, at
    most once per `FEED_INTERVAL`. With no feed open there is no subscription and no pump.
    """

    def __init__(self, service: RouterService) -> None:
        self.service = service
        self.clients: set[asyncio.Queue[bytes]] = set()
        self.closing = False
        self.dropped = 0
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
        self.probe = AgentProbe(self.session)
        self.agents = AgentClient()
        self._rows: asyncio.Queue[dict[str, Any]] | None = None
        self._pump: asyncio.Task[None] | None = None
        service.registry.add_listener(self._on_backend)
        service.gaming.add_listener(self._on_gaming)

    def attach(self) -> asyncio.Queue[bytes]:
        """A queue of SSE bytes for one feed; the first feed starts the pump."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(FEED_BACKLOG)
        self.clients.add(queue)
        if self._pump is None:
            self._rows = self.service.decisions.subscribe(max_queue=ROW_BACKLOG)
            self._pump = asyncio.create_task(self._run(self._rows), name="ui-feed-pump")
            self._pump.add_done_callback(_log_failure)
        return queue

    def detach(self, queue: asyncio.Queue[bytes]) -> None:
        """Forget one feed; the last one stops the pump and the subscription."""
        self.clients.discard(queue)
        if not self.clients and self._pump is not None:
            self._pump.cancel()
            self._pump = None
            if self._rows is not None:
                self.service.decisions.unsubscribe(self._rows)
                self._rows = None

    async def _run(self, rows: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            batch = [await rows.get()]
            while not rows.empty():
                batch.append(rows.get_nowait())
            self._push(b"".join(_frame("decision", row_json(row)) for row in batch))
            await asyncio.sleep(FEED_INTERVAL)  # rows arriving meanwhile go in the next batch

    def _push(self, data: bytes) -> None:
        for queue in self.clients:
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:
                self.dropped += 1  # a stalled dashboard misses rows; it never slows the router

    async def _on_backend(self, name: str, healthy: bool, error: str | None) -> None:
        self.probe.forget(name)
        self._push(_frame("backend", {"name": name, "healthy": healthy, "error": error}))

    async def _on_gaming(self, enabled: bool, actor: str, source: str) -> None:
        self._push(_frame("gaming", {"enabled": enabled, "actor": actor, "source": source}))

    def shutdown(self) -> None:
        """End every live feed (before the server waits for its handlers)."""
        self.closing = True
        for queue in self.clients:
            while True:
                try:
                    queue.put_nowait(_CLOSE)
                    break
                except asyncio.QueueFull:
                    queue.get_nowait()

    async def close(self) -> None:
        for queue in list(self.clients):
            self.detach(queue)
        await self.session.close()
        await self.agents.close()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("dashboard feed pump failed", exc_info=task.exception())


DASHBOARD: web.AppKey[Dashboard] = web.AppKey("dashboard", Dashboard)


def _dashboard(request: web.Request) -> tuple[RouterService, Dashboard]:
    return request.app[SERVICE], request.app[DASHBOARD]


async def index(_request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={
        "Content-Security-Policy": CSP, "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


async def static_file(request: web.Request) -> web.StreamResponse:
    """A file under static/ (vendored libraries included); never anything outside it."""
    path = (STATIC / request.match_info["path"]).resolve()
    if not path.is_relative_to(STATIC) or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "no-cache",
                                           "X-Content-Type-Options": "nosniff"})


async def status(request: web.Request) -> web.Response:
    service, dashboard = _dashboard(request)
    try:
        _check_key(request, service)
    except RouterError as exc:
        return _error_response(exc)
    status = service.status()
    states = service.registry.states
    shown = [b for b in status["backends"] if b["name"] in states]
    agents = await asyncio.gather(*(dashboard.probe.status(states[b["name"]]) for b in shown))
    payload = {**status, "admin_enabled": bool(service.settings.admin_token),
               "api_key_required": bool(service.settings.api_keys),
               "backends": [{**backend, "last_check": states[backend["name"]].last_check,
                             "agent": agent} for backend, agent in zip(shown, agents)]}
    return json_response(payload, headers={"Cache-Control": "no-store"})


async def decisions(request: web.Request) -> web.Response:
    service, _ = _dashboard(request)
    try:
        _check_key(request, service)
        limit = _int_param(request, "limit", 100, 1, 1000)
    except RouterError as exc:
        return _error_response(exc)
    rows = await asyncio.to_thread(stats.recent_decisions, _engine(service), limit)
    return json_response({"data": [row_json(r) for r in rows]}, headers={"Cache-Control": "no-store"})


async def stats_view(request: web.Request) -> web.Response:
    service, _ = _dashboard(request)
    window = request.query.get("window", "24h")
    try:
        _check_key(request, service)
        if window not in stats.WINDOWS:
            raise BadRequest(f"Query parameter 'window' must be one of "
                             f"{', '.join(stats.WINDOWS)}; got '{window}'.", param="window")
    except RouterError as exc:
        return _error_response(exc)
    series = await asyncio.to_thread(stats.bucket_stats, _engine(service), window)
    return json_response(series.as_json(), headers={"Cache-Control": "no-store"})


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"Query parameter '{name}' must be an integer; got '{raw}'.",
                         param=name) from None
    if not low <= value <= high:
        raise BadRequest(f"Query parameter '{name}' must be between {low} and {high}; got {value}.",
                         param=name)
    return value


async def events(request: web.Request) -> web.StreamResponse:
    """The live feed: the pump's batches as they come, a keep-alive comment when idle."""
    service, dashboard = _dashboard(request)
    try:
        _check_key(request, service)
    except RouterError as exc:
        return _error_response(exc)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    queue = dashboard.attach()
    try:
        await response.write(b"event: hello\ndata: {}\n\n")
        quiet = 0.0
        while not dashboard.closing:
            try:
                async with asyncio.timeout(GONE_CHECK):
                    first = await queue.get()
            except TimeoutError:
                # aiohttp does not cancel a handler whose client left: look, so that a closed
                # tab stops receiving rows within seconds, not at the next keep-alive.
                if request.transport is None or request.transport.is_closing():
                    break
                quiet += GONE_CHECK
                if quiet >= KEEPALIVE:
                    quiet = 0.0
                    await response.write(b": keepalive\n\n")
                continue
            quiet = 0.0
            chunks = [first]
            while not queue.empty():
                chunks.append(queue.get_nowait())
            if _CLOSE in chunks:
                break
            await response.write(b"".join(chunks))
    except ConnectionResetError:
        pass  # the dashboard went away (a cancellation, when the server cancels, propagates)
    finally:
        dashboard.detach(queue)
    return response


def _frame(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _agent_backend(request: web.Request) -> tuple[RouterService, Dashboard, BackendState]:
    service, dashboard = _dashboard(request)
    _check_admin(request, service)
    name = request.match_info["name"]
    state = service.registry.get(name)
    if state is None:
        raise BackendNotFound(f"There is no backend named '{name}'.")
    if await dashboard.probe.status(state) is None:
        raise NotAnAgent(f"Backend '{name}' is not an inference agent (or its agent does not "
                         f"answer /status), so its models cannot be loaded or stopped here.")
    return service, dashboard, state


async def load_model(request: web.Request) -> web.Response:
    try:
        service, dashboard, state = await _agent_backend(request)
        try:
            payload = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("model"), str) \
                or not payload["model"]:
            raise BadRequest("Body must be JSON like {\"model\": \"qwen2.5-14b\"}.", param="model")
        try:
            result = await dashboard.agents.load(agent_url(state), payload["model"])
        except AgentError as exc:
            raise AgentFailed(exc.message) from None
    except RouterError as exc:
        return _error_response(exc)
    dashboard.probe.forget(state.name)
    await service.registry.check_all()
    return json_response({"message": f"Model {payload['model']} is loaded and ready on "
                                     f"{state.name}.", "agent": result})


async def stop_models(request: web.Request) -> web.Response:
    try:
        _service, dashboard, state = await _agent_backend(request)
        try:
            result = await dashboard.agents.stop_all(agent_url(state))
        except AgentError as exc:
            raise AgentFailed(exc.message) from None
    except RouterError as exc:
        return _error_response(exc)
    dashboard.probe.forget(state.name)
    return json_response({"message": f"Stopped every model on {state.name}.", "agent": result})


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    dashboard = Dashboard(app[SERVICE])
    app[DASHBOARD] = dashboard
    yield
    dashboard.shutdown()
    await dashboard.close()


async def _on_shutdown(app: web.Application) -> None:
    if DASHBOARD in app:
        app[DASHBOARD].shutdown()


def add_ui_routes(app: web.Application) -> None:
    """Register the dashboard. Call after the app's own lifecycle (it needs the service)."""
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_on_shutdown)
    app.router.add_get("/ui", index)
    app.router.add_get("/ui/", index)
    app.router.add_get("/ui/static/{path:.+}", static_file)
    app.router.add_get("/ui/api/status", status)
    app.router.add_get("/ui/api/decisions", decisions)
    app.router.add_get("/ui/api/stats", stats_view)
    app.router.add_get("/ui/events", events)
    app.router.add_post("/admin/backends/{name}/load", load_model)
    app.router.add_post("/admin/backends/{name}/stop", stop_models)
