"""Fixtures for the Mattermost adapter tests: a fake Mattermost, its users and channels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.mattermost import MattermostAdapter
from tests.bot.mattermost_helpers import Listener, World, populate, start_listener
from tests.fakes.mattermost_server import FakeMattermostServer


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with FakeMattermostServer() as server:
        yield populate(server)


@pytest.fixture
async def tls_world() -> AsyncIterator[World]:
    async with FakeMattermostServer(tls=True) as server:
        yield populate(server)


@pytest.fixture
async def adapter(world: World) -> AsyncIterator[MattermostAdapter]:
    mm = MattermostAdapter(world.config())
    await mm.connect()
    yield mm
    await mm.close()


@pytest.fixture
async def listener(adapter: MattermostAdapter) -> AsyncIterator[Listener]:
    running = await start_listener(adapter)
    yield running
    await adapter.close()
    await asyncio.wait_for(running.task, 5.0)
