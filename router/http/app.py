"""The application factory: one cleanup context per resource, each under a typed app key.

`create_app(settings)` returns an aiohttp application whose `cleanup_ctx` builds, in order: the
database (migrated), the decision log, the backends (topology, registry with its first health
check, gaming mode), the service, and the scheduler with the plugins (the bot). Shutdown runs
them backwards: the scheduler and plugins stop, in-flight requests finish, the decision log is
flushed, the backends' connections close, and the engine is disposed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine

from router.backends.factory import build_topology, make_client
from router.config import Topology
from router.core import tokens
from router.core.gaming import GamingMode
from router.core.registry import BackendRegistry
from router.core.service import RouterService
from router.http.agent_apis import add_routes as add_agent_routes
from router.http.api import SERVICE, add_routes, errors_middleware
from router.http.ui import add_ui_routes
from router.logs import install_request_ids
from router.metrics import Metrics
from router.settings import Settings
from router.store import db
from router.store.decision_log import DecisionLog

log = logging.getLogger(__name__)

_Context = Callable[[web.Application], AsyncIterator[None]]


class Plugin(Protocol):
    """Something that runs inside the router process (the Mattermost bot)."""

    def add_routes(self, app: web.Application) -> None:
        """Add HTTP routes; called once, before the app starts."""

    async def start(self, service: RouterService, scheduler: AsyncIOScheduler) -> None:
        """Start background work; must not block on remote services (they may be down)."""

    async def stop(self) -> None:
        """Stop everything started; called once at shutdown."""


@dataclass(frozen=True)
class Backends:
    """The lab as built at start: its topology, the registry and the gaming switches."""

    topology: Topology
    registry: BackendRegistry
    gaming: GamingMode


ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
DECISIONS: web.AppKey[DecisionLog] = web.AppKey("decisions", DecisionLog)
BACKENDS: web.AppKey[Backends] = web.AppKey("backends", Backends)
SCHEDULER: web.AppKey[AsyncIOScheduler] = web.AppKey("scheduler", AsyncIOScheduler)
FIRST_CHECK_TIMEOUT = 10.0


def _database(settings: Settings) -> _Context:
    async def context(app: web.Application) -> AsyncIterator[None]:
        await asyncio.to_thread(db.upgrade, settings.database_url)
        app[ENGINE] = engine = db.make_engine(settings.database_url)
        yield
        engine.dispose()
    return context


async def _decision_log(app: web.Application) -> AsyncIterator[None]:
    app[DECISIONS] = decisions = DecisionLog(app[ENGINE])
    decisions.start()
    yield
    await decisions.close()


def _backends(settings: Settings) -> _Context:
    async def context(app: web.Application) -> AsyncIterator[None]:
        topology = await build_topology(settings, settings.environ)
        registry = BackendRegistry([make_client(spec, settings)
                                    for spec in topology.backends.values()],
                                   unhealthy_after=settings.unhealthy_after,
                                   healthy_after=settings.healthy_after,
                                   specs=dict(topology.backends))
        gaming = GamingMode(app[ENGINE], topology.gaming_hosts())
        await gaming.load()
        registry.add_gaming_listener(gaming.observe)
        app[BACKENDS] = Backends(topology, registry, gaming)
        try:
            await asyncio.wait_for(registry.check_all(), timeout=FIRST_CHECK_TIMEOUT)
        except TimeoutError:
            log.warning("first health check did not finish in %gs; continuing",
                        FIRST_CHECK_TIMEOUT)
        yield
        await registry.close()
    return context


def _service(settings: Settings) -> _Context:
    async def context(app: web.Application) -> AsyncIterator[None]:
        decisions, lab = app[DECISIONS], app[BACKENDS]
        metrics = Metrics()
        metrics.bind_log(lambda: decisions.depth, lambda: decisions.dropped,
                         lambda: decisions.write_errors)
        app[SERVICE] = RouterService(settings, lab.topology, lab.registry, lab.gaming, decisions,
                                     metrics, engine=app[ENGINE])
        await asyncio.to_thread(tokens.encoding)  # load the BPE ranks before the first request
        yield
    return context


def _scheduler(settings: Settings, plugins: Sequence[Plugin]) -> _Context:
    async def context(app: web.Application) -> AsyncIterator[None]:
        service = app[SERVICE]
        scheduler = AsyncIOScheduler()
        scheduler.add_job(service.registry.check_all, "interval",
                          seconds=settings.health_check_interval, max_instances=1, coalesce=True,
                          id="health-checks")
        app[SCHEDULER] = scheduler
        for plugin in plugins:
            await plugin.start(service, scheduler)
        scheduler.start()
        log.info("router ready: backends %s", ", ".join(service.registry.states) or "none")
        yield
        scheduler.shutdown(wait=False)
        for plugin in reversed(plugins):
            try:
                await plugin.stop()
            except Exception:
                log.exception("plugin cleanup failed")
    return context


def create_app(settings: Settings, plugins: Sequence[Plugin] = ()) -> web.Application:
    install_request_ids()
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[errors_middleware])
    app.cleanup_ctx.extend([_database(settings), _decision_log, _backends(settings),
                            _service(settings), _scheduler(settings, plugins)])
    add_agent_routes(app, add_routes(app, settings))  # /v1/messages, /v1/responses
    add_ui_routes(app)  # the dashboard (after the lifecycle: it needs the service)
    for plugin in plugins:
        plugin.add_routes(app)
    return app


def create_runner(app: web.Application, **options: Any) -> web.AppRunner:
    """The runner every server of this app uses: a client that leaves cancels its handler, so
    a request still waiting for a backend (streamed or not) cancels its upstream request too."""
    return web.AppRunner(app, handler_cancellation=True, access_log=None, **options)
