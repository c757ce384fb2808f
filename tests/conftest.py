"""Shared fixtures: fake upstreams and in-process routers on free loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from router.http.app import create_app
from router.http.api import SERVICE
from router.core.service import RouterService
from router.settings import Settings
from tests.fakes.upstream import FakeUpstream
from tests.helpers import free_port, serve_app

__all__ = ["RunningRouter", "backend_env", "decision_rows", "free_port"]


@dataclass
class RunningRouter:
    url: str
    app: web.Application
    settings: Settings
    served: AsyncExitStack = field(default_factory=AsyncExitStack, repr=False)

    @property
    def service(self) -> RouterService:
        return self.app[SERVICE]

    async def stop(self) -> None:
        """Stop serving and run the app's cleanup contexts (again: a no-op)."""
        await self.served.aclose()


@pytest.fixture
async def upstreams() -> AsyncIterator[dict[str, FakeUpstream]]:
    fakes = {
        "3070": await FakeUpstream("qwen2.5-7b-instruct-awq", 32768).start(),
        "3090": await FakeUpstream("qwen2.5-14b-instruct-awq", 32768, gaming_mode=False).start(),
        "opencode": await FakeUpstream("glm-4.6", None).start(),
    }
    yield fakes
    for fake in fakes.values():
        await fake.stop()


RouterFactory = Callable[..., Awaitable[RunningRouter]]


@pytest.fixture
async def make_router(tmp_path: Path) -> AsyncIterator[RouterFactory]:
    started: list[RunningRouter] = []

    async def factory(env: dict[str, str] | None = None, plugins: Any = (), **overrides: Any) -> RunningRouter:
        port = free_port()
        base = {"DATABASE_URL": f"sqlite:///{tmp_path}/router.db", "LOCAL_3070_URL": "",
                "HEALTH_CHECK_INTERVAL": "3600", "ROUTER_PORT": str(port)}
        settings = Settings.from_env({**base, **(env or {})}, **overrides)
        app = create_app(settings, plugins)
        served = AsyncExitStack()
        # As `serve` runs it: a client that leaves cancels its handler (and the upstream wait).
        url = await served.enter_async_context(serve_app(app, port=port, handler_cancellation=True))
        router = RunningRouter(url, app, settings, served)
        started.append(router)
        return router

    yield factory
    for router in started:
        await router.stop()


def backend_env(upstreams: dict[str, FakeUpstream], *names: str) -> dict[str, str]:
    """Env pointing the router at the named fake upstreams (default: all three)."""
    names = names or ("3070", "3090", "opencode")
    env = {"LOCAL_3070_URL": "", "OPENCODE_API": "openai"}
    if "3070" in names:
        env["LOCAL_3070_URL"] = upstreams["3070"].url
    if "3090" in names:
        env["GAMING_PC_URL"] = upstreams["3090"].url
    if "opencode" in names:
        env["OPENCODE_URL"] = upstreams["opencode"].url
    return env


async def decision_rows(router: RunningRouter) -> list[Any]:
    """Every decision row of `router`'s database, oldest first (after flushing the queue)."""
    from sqlalchemy import select
    from sqlmodel import Session

    from router.store.models import Decision

    await router.service.decisions.flush()
    with Session(router.service.engine) as session:  # type: ignore[attr-defined]
        return list(session.exec(select(Decision).order_by(Decision.id)).scalars())  # type: ignore[call-overload,arg-type]
