"""Shared fixtures: fake upstreams, in-process routers on free loopback ports, and a real
inference agent process with a stand-in engine (`start_agent`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from router.core.service import RouterService
from router.http.api import SERVICE
from router.http.app import create_app
from router.settings import Settings
from tests.e2e.agent_process import stop_process, wait_http
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


# -- a real inference agent whose engine is the stand-in (tests/fakes/stand_in_engine.py) ------

STAND_IN = Path(__file__).resolve().parent / "fakes" / "stand_in_engine.py"
AgentFactory = Callable[..., Awaitable[str]]
LOGS: dict[str, Path] = {}  # agent URL -> its log file (the stand-in engine logs what reaches it)


@pytest.fixture
async def start_agent(tmp_path: Path) -> AsyncIterator[AgentFactory]:
    """`await start_agent(*engine_flags, start_timeout=600)` -> the agent's base URL."""
    procs: list[subprocess.Popen[bytes]] = []

    async def start(*flags: str, start_timeout: float = 600, keepalive: float = 1) -> str:
        port, engine_port = free_port(), free_port()
        root = tmp_path / f"agent-{port}"
        root.mkdir()
        argv = ", ".join(f'"{a}"' for a in (sys.executable, str(STAND_IN), *flags))
        (root / "agent.toml").write_text(f"""
[host]
default_model = "cold"

[[models]]
id = "cold"
model = "org/cold"
served_name = "cold"
port = {engine_port}
max_model_len = 4096
command = [{argv}]
""")
        env = {**os.environ, "INFERENCE_CONFIG": str(root / "agent.toml"),
               "INFERENCE_PORT": str(port), "INFERENCE_HOST": "127.0.0.1",
               "INFERENCE_STATE_DIR": str(root / "state"), "START_TIMEOUT": str(start_timeout),
               "STREAM_KEEPALIVE": str(keepalive)}
        log = (root / "agent.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "inference.cli", "serve"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        LOGS[url] = root / "agent.log"
        await asyncio.to_thread(wait_http, url + "/health", 60, proc)
        return url

    yield start
    for proc in procs:
        await asyncio.to_thread(stop_process, proc, 20)
