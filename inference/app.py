"""The agent's HTTP API: an aiohttp app built by `create_app(settings)`.

Routes (see SPEC "Gaming-PC / inference agent API"): `GET /health`, `GET /status`,
`GET|POST /gaming-mode`, `POST /stop-all`, `POST /models/{id}/load`, `POST /models/{id}/unload`,
`GET /v1/models`, `POST /v1/chat/completions|completions|embeddings`. Errors become HTTP only in
`error_middleware`. The cleanup context owns the client session, the `ModelManager` and the
APScheduler job (idle sleep/stop, keep-warm), starts the keep-warm models, and stops every model on
shutdown so no vLLM outlives the agent. Streaming requests for a model that is not ready follow
the starting-stream protocol documented in `inference.starting` (header `X-Model-State:
starting`, comments `: model <id> starting (<elapsed> s)`); docs/agent.md has the whole API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from inference import proxy, starting
from inference.config import HostConfig, load_config
from inference.errors import AgentError, BadRequest, error_response
from inference.fit import check_fit
from inference.gaming import GamingModeStore, is_force_big
from inference.gpu import GpuReader
from inference.manager import ModelManager
from inference.process import ModelState
from inference.reaper import reap_stale_sessions
from inference.settings import Settings

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
CONFIG = web.AppKey("config", HostConfig)
MANAGER = web.AppKey("manager", ModelManager)
SESSION = web.AppKey("session", aiohttp.ClientSession)
MAX_BODY_BYTES = 64 * 1024 * 1024
_STARTED = int(time.time())

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place where errors become HTTP responses, all OpenAI-shaped."""
    try:
        return await handler(request)
    except AgentError as exc:
        return exc.to_response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
        return error_response(exc.status, exc.reason or "Request failed.",
                              "invalid_request_error", code.get(exc.status))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "The inference agent hit an internal error.", "server_error",
                              "internal_error")


async def _json_body(request: web.Request) -> tuple[bytes, dict[str, Any]]:
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    return raw, data


def _force_big(request: web.Request) -> bool:
    return is_force_big(request.headers.get("X-Force-Big"))


# -- OpenAI endpoints --------------------------------------------------------------------------
async def openai_post(request: web.Request) -> web.StreamResponse:
    """Proxy an OpenAI POST to the chosen model, starting (or waking) it first if needed.

    A stream for a model that is not ready gets the starting-stream protocol of
    `inference.starting` (keep-alive comments, then vLLM's stream or one error event).
    """
    manager = request.app[MANAGER]
    _, body = await _json_body(request)
    requested = body.get("model")
    if requested is not None and not isinstance(requested, str):
        raise BadRequest("The field 'model' must be a string.", param="model")
    profile = manager.resolve(requested)
    body["model"] = profile.served_name
    payload = json.dumps(body).encode()
    force_big = _force_big(request)
    session = request.app[SESSION]
    url_path = request.path
    async with manager.hold(profile, force_big):
        if manager.processes[profile.id].state is ModelState.READY:
            base_url = await manager.ready(profile, force_big)
            return await proxy.forward(request, session, base_url + url_path, payload, profile.id)
        if body.get("stream") is True:
            response, ready_url = await starting.stream_while_starting(
                request, manager, profile, force_big, request.app[SETTINGS].stream_keepalive)
            if ready_url is None:
                return response
            return await proxy.forward(request, session, ready_url + url_path, payload,
                                       profile.id, started=response)
        waited_url = await starting.wait_until_ready(request, manager, profile, force_big)
        if waited_url is None:
            return web.Response(status=499, reason="Client Closed Request")
        return await proxy.forward(request, session, waited_url + url_path, payload, profile.id)


async def list_models(request: web.Request) -> web.Response:
    """The configured models in OpenAI shape, with vLLM's own data for ready ones.

    Never starts a model: the router polls this for health and context sizes.
    """
    manager = request.app[MANAGER]
    session = request.app[SESSION]
    data: list[dict[str, Any]] = []
    for process in manager.processes.values():
        profile = process.profile
        entry: dict[str, Any] = {
            "id": profile.served_name, "object": "model", "created": _STARTED,
            "owned_by": "local-ai-inference", "root": profile.model,
            "max_model_len": profile.max_model_len, "state": str(process.state),
        }
        if process.state is ModelState.READY:
            entry.update(await _vllm_model_info(session, process.base_url, profile.served_name))
        data.append(entry)
    return web.json_response({"object": "list", "data": data})


async def _vllm_model_info(session: aiohttp.ClientSession, base: str, name: str) -> dict[str, Any]:
    try:
        async with session.get(f"{base}/v1/models", timeout=aiohttp.ClientTimeout(total=3)) as r:
            listing = await r.json()
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return {}
    for item in listing.get("data", []) if isinstance(listing, dict) else []:
        if isinstance(item, dict) and item.get("id") == name and item.get("max_model_len"):
            return {"max_model_len": item["max_model_len"]}
    return {}


# -- control endpoints -------------------------------------------------------------------------
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[MANAGER].status())


async def gaming_get(request: web.Request) -> web.Response:
    store = request.app[MANAGER].gaming
    return web.json_response({"enabled": store.enabled, "changed_at": store.changed_at})


async def gaming_post(request: web.Request) -> web.Response:
    """`{"enabled": bool}` → the new status (turning it on stops every model first)."""
    _, body = await _json_body(request)
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise BadRequest("The field 'enabled' must be true or false.", param="enabled")
    manager = request.app[MANAGER]
    await manager.set_gaming(enabled)
    log.info("gaming mode %s", "on" if enabled else "off")
    return web.json_response(manager.status())


async def stop_all(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    await manager.stop_all()
    return web.json_response(manager.status())


async def load_model(request: web.Request) -> web.Response:
    """Start a model and wait until it is ready (503 with the reason when it cannot start)."""
    manager = request.app[MANAGER]
    return web.json_response(await manager.load(request.match_info["id"], _force_big(request)))


async def unload_model(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    return web.json_response(await manager.unload(request.match_info["id"]))


# -- lifecycle ---------------------------------------------------------------------------------
def _idle_check_interval(settings: Settings) -> float:
    if settings.idle_shutdown_seconds <= 0:
        return 30.0  # no idle actions; the job only re-warms keep-warm models
    return max(0.1, min(30.0, settings.idle_shutdown_seconds / 4))


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    settings, config = app[SETTINGS], app[CONFIG]
    reap_stale_sessions(settings.state_dir)
    session = aiohttp.ClientSession()
    app[SESSION] = session
    gpu = GpuReader()
    warnings = check_fit(config, gpu.total_memory_gb())
    for warning in warnings:
        log.warning("%s", warning)
    manager = ModelManager(config, settings, session, GamingModeStore(settings.state_dir), gpu,
                           warnings)
    app[MANAGER] = manager
    scheduler = AsyncIOScheduler()
    scheduler.add_job(manager.tick, "interval", seconds=_idle_check_interval(settings),
                      id="idle-and-warm", max_instances=1, coalesce=True)
    scheduler.start()
    manager.spawn(manager.warm_up(), "warm-up")
    try:
        yield
    finally:
        scheduler.shutdown(wait=False)
        await manager.close()
        await manager.stop_all()
        await session.close()
        gpu.close()


def create_app(settings: Settings, config: HostConfig | None = None) -> web.Application:
    """Build the agent app; `config` defaults to `load_config(settings.config)` (may raise
    `ConfigError`). Keep-warm models start with the app; the others on demand."""
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[CONFIG] = config if config is not None else load_config(settings.config)
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_get("/health", health)
    app.router.add_get("/status", status)
    app.router.add_get("/gaming-mode", gaming_get)
    app.router.add_post("/gaming-mode", gaming_post)
    app.router.add_post("/stop-all", stop_all)
    app.router.add_post("/models/{id}/load", load_model)
    app.router.add_post("/models/{id}/unload", unload_model)
    app.router.add_get("/v1/models", list_models)
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        app.router.add_post(path, openai_post)
    return app
