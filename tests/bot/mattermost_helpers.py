"""Helpers for the Mattermost adapter tests: a populated fake Mattermost and a running listener."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.mattermost import MattermostAdapter, MattermostConfig, PostedEvent
from tests.fakes.mattermost_server import FakeChannel, FakeMattermostServer, FakeUser

BOT_TOKEN = "bot-token"
# Short waits keep the tests quick; the ping and connect timeouts stay long enough that a busy
# 2-core machine does not drop a healthy websocket (which would break counts of drops).
FAST = {
    "request_timeout": 5.0,
    "connect_timeout": 5.0,
    "ping_interval": 0.2,
    "ping_timeout": 2.0,
    "close_timeout": 0.5,
    "reconnect_initial": 0.05,
    "reconnect_max": 0.2,
    "handler_grace": 1.0,
}


@dataclass
class World:
    server: FakeMattermostServer
    bot: FakeUser
    alice: FakeUser
    other_bot: FakeUser
    town: FakeChannel
    dm: FakeChannel

    def config(self, **overrides: Any) -> MattermostConfig:
        options: dict[str, Any] = {"url": self.server.url, "token": BOT_TOKEN, "team": "home",
                                   "ca_file": self.server.ca_file, **FAST}
        options.update(overrides)
        return MattermostConfig(**options)


def populate(server: FakeMattermostServer) -> World:
    bot = server.add_user("aibot", bot=True, token=BOT_TOKEN)
    alice = server.add_user("alice", token="alice-token")
    other = server.add_user("otherbot", bot=True, token="other-token")
    town = server.add_channel("town-square", display_name="Town Square")
    return World(server, bot, alice, other, town, server.direct_channel(alice, bot))


@dataclass
class Listener:
    """A running `listen()` whose events land in `events`."""

    adapter: MattermostAdapter
    task: asyncio.Task[None]
    events: asyncio.Queue[PostedEvent] = field(default_factory=asyncio.Queue)

    async def next(self, predicate: Callable[[PostedEvent], bool] = lambda e: True,
                   timeout: float = 5.0) -> PostedEvent:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if predicate(event):
                    return event


async def start_listener(mm: MattermostAdapter) -> Listener:
    queue: asyncio.Queue[PostedEvent] = asyncio.Queue()

    async def handler(event: PostedEvent) -> None:
        queue.put_nowait(event)

    task = asyncio.create_task(mm.listen(handler))
    listener = Listener(mm, task, queue)
    await mm.wait_connected(timeout=5.0)
    return listener

