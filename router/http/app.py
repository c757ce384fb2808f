"""The application factory: wires settings, database, backends, scheduler, HTTP and plugins.

`create_app(settings)` returns an aiohttp application whose `cleanup_ctx` owns every resource:
migrations run and the decision log starts before the first request; on shutdown the scheduler
stops, plugins (the bot) stop, in-flight requests finish, and the decision log is flushed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from router.store import db
from router.core import tokens
from router.backends.factory import make_backends
from router.store.decision_log import DecisionLog
from router.core.gaming import GamingMode
from router.logs import install_request_ids
from router.metrics import Metrics
from router.core.registry import BackendRegistry
from router.http.api import SERVICE, add_routes, errors_middleware
from router.http.ui import add_ui_routes
from router.http.agent_apis import add_routes as add_agent_routes
from router.core.service import RouterService
from router.settings import Settings

log = logging.getLogger(__name__)

class Plugin(Protocol):
    """Something that runs inside the router process (the Mattermost bot)."""

    def add_routes(self, app: web.Application) -> None:
        """Add HTTP routes; called once, before the app starts."""

    async def start(self, service: RouterService, scheduler: AsyncIOScheduler) -> None:
        """Start background work; must not block on remote services (they may be down)."""

    async def stop(self) -> None:
        """Stop everything started; called once at shutdown."""


SCHEDULER: web.AppKey[AsyncIOScheduler] = web.AppKey("scheduler", AsyncIOScheduler)


async def build_service(settings: Settings) -> RouterService:
    """Migrate the database and build the service (not yet health-checked)."""
    await asyncio.to_thread(db.upgrade, settings.database_url)
    engine = db.make_engine(settings.database_url)
    decisions = DecisionLog(engine)
    gaming = GamingMode(engine, settings.gaming_pc_url)
    await gaming.load()
    registry = BackendRegistry(await make_backends(settings),
                               unhealthy_after=settings.unhealthy_after,
                               healthy_after=settings.healthy_after)
    registry.add_gaming_listener(gaming.observe)
    metrics = Metrics()
    metrics.bind_log(lambda: decisions.depth, lambda: decisions.dropped,
                     lambda: decisions.write_errors)
    service = RouterService(settings, registry, gaming, decisions, metrics)
    service.engine = engine  # type: ignore[attr-defined]
    return service


def create_app(settings: Settings, plugins: Sequence[Plugin] = ()) -> web.Application:
    install_request_ids()
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[errors_middleware])

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        service = await build_service(settings)
        app[SERVICE] = service
        service.decisions.start()
        await asyncio.to_thread(tokens.encoding)  # load the BPE ranks before the first request
        try:
            await asyncio.wait_for(service.registry.check_all(), timeout=10)
        except TimeoutError:
            log.warning("first health check did not finish in 10s; continuing")
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
        await service.decisions.close()
        await service.registry.close()
        service.engine.dispose()  # type: ignore[attr-defined]

    app.cleanup_ctx.append(lifecycle)
    add_agent_routes(app, add_routes(app, settings))  # /v1/messages, /v1/responses
    add_ui_routes(app)  # the dashboard (after the lifecycle: it needs the service)
    for plugin in plugins:
        plugin.add_routes(app)
    return app
