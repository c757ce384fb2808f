"""ModelManager rules with a controllable clock: idle stop, busy models, gaming mode, switching."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from inference.config import HostConfig
from inference.errors import GamingModeRefused, ModelNotFound, ModelStartFailed
from inference.gaming import GamingModeStore
from inference.gpu import GpuReader
from inference.manager import ModelManager
from inference.process import ModelState
from inference.settings import Settings
from tests.inference.inference_helpers import fake_model, make_config


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def _manager(session: aiohttp.ClientSession, tmp_path: Path, clock: Clock,
                   config: HostConfig | None = None) -> ModelManager:
    settings = Settings(state_dir=tmp_path, start_timeout=15, stop_grace=2,
                        idle_shutdown_minutes=1)
    return ModelManager(config or make_config(), settings, session, GamingModeStore(tmp_path),
                        GpuReader(), clock=clock)


async def test_idle_stop_respects_time_and_activity(session: aiohttp.ClientSession,
                                                    tmp_path: Path) -> None:
    clock = Clock()
    manager = await _manager(session, tmp_path, clock)
    profile = manager.resolve("x")
    try:
        async with manager.use(profile, force_big=False):
            clock.now += 120  # a long request is not idle time
            assert await manager.stop_idle() == []
        clock.now += 59
        assert await manager.stop_idle() == []
        assert manager.status()["models"][0]["idle_seconds"] == 59
        clock.now += 1
        assert await manager.stop_idle() == ["fake"]
        assert manager.processes["fake"].state is ModelState.STOPPED
    finally:
        await manager.stop_all()


async def test_idle_zero_never_stops(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    clock = Clock()
    manager = await _manager(session, tmp_path, clock)
    manager.settings = Settings(state_dir=tmp_path, idle_shutdown_minutes=0)
    try:
        await manager.load("fake", force_big=False)
        clock.now += 10**6
        assert await manager.stop_idle() == []
    finally:
        await manager.stop_all()


async def test_gaming_mode_refuses_and_stops(session: aiohttp.ClientSession,
                                             tmp_path: Path) -> None:
    manager = await _manager(session, tmp_path, Clock())
    try:
        await manager.load("fake", force_big=False)
        await manager.set_gaming(True)
        assert manager.processes["fake"].state is ModelState.STOPPED
        with pytest.raises(GamingModeRefused, match="X-Force-Big: true"):
            async with manager.use(manager.resolve(None), force_big=False):
                pass
        assert manager.status()["active_requests"] == 0
    finally:
        await manager.stop_all()


async def test_switch_evicts_least_recently_used(session: aiohttp.ClientSession,
                                                 tmp_path: Path) -> None:
    clock = Clock()
    config = make_config(fake_model("a"), fake_model("b"), fake_model("c"), max_loaded_models=2)
    manager = await _manager(session, tmp_path, clock, config)
    try:
        await manager.load("a", force_big=False)
        clock.now += 1
        await manager.load("b", force_big=False)
        clock.now += 1
        await manager.load("a", force_big=False)  # a is now the most recent
        clock.now += 1
        await manager.load("c", force_big=False)
        states = {m["id"]: m["state"] for m in manager.status()["models"]}
        assert states == {"a": "ready", "b": "stopped", "c": "ready"}
    finally:
        await manager.stop_all()


async def test_gaming_on_while_starting_fails_the_waiter(session: aiohttp.ClientSession,
                                                         tmp_path: Path) -> None:
    config = make_config(fake_model("fake", "--startup-delay", "5"))
    manager = await _manager(session, tmp_path, Clock(), config)
    request = asyncio.create_task(manager.load("fake", force_big=False))
    while manager.processes["fake"].pid is None:
        await asyncio.sleep(0.02)
    await manager.set_gaming(True)
    with pytest.raises(GamingModeRefused, match="X-Force-Big: true"):
        await request
    assert manager.processes["fake"].state is ModelState.STOPPED


async def test_unload_while_starting_fails_the_waiter(session: aiohttp.ClientSession,
                                                      tmp_path: Path) -> None:
    config = make_config(fake_model("fake", "--startup-delay", "5"))
    manager = await _manager(session, tmp_path, Clock(), config)
    request = asyncio.create_task(manager.load("fake", force_big=False))
    while manager.processes["fake"].pid is None:
        await asyncio.sleep(0.02)
    await manager.unload("fake")
    with pytest.raises(ModelStartFailed, match="stopped while it was starting"):
        await request


async def test_unknown_ids(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    config = make_config(fake_model("a"), fake_model("b"))
    manager = await _manager(session, tmp_path, Clock(), config)
    with pytest.raises(ModelNotFound):
        await manager.load("zzz", force_big=False)
    assert manager.get("b-served").id == "b"
