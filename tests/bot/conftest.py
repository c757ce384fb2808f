"""Fixtures for the Mattermost adapter tests: a fake Mattermost, its users and channels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.mattermost import MattermostAdapter
from tests.bot.bot_helpers import BotWorld, start_bot
from tests.bot.mattermost_helpers import Listener, World, populate, start_listener
from tests.conftest import RouterFactory
from tests.fakes.mattermost_server import FakeMattermostServer
from tests.fakes.upstream import FakeUpstream


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


# -- the bot inside a router (tests/bot/bot_helpers.py) -----------------------------------------


@pytest.fixture
async def bot_world(world: World, upstreams: dict[str, FakeUpstream],
                    make_router: RouterFactory) -> BotWorld:
    """A router with the real BotPlugin on all three fake backends, logged in and listening."""
    return await start_bot(world, upstreams, make_router)
