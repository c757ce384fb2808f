"""Helpers for the bot tests: a router with the real BotPlugin, driven through a fake Mattermost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.plugin import BotOptions, BotPlugin
from router.settings import Settings
from tests.bot.mattermost_helpers import BOT_TOKEN, FAST, World
from tests.conftest import RouterFactory, RunningRouter, backend_env
from tests.fakes.mattermost_server import FakeChannel, FakeMattermostServer, FakeUser
from tests.fakes.upstream import FakeUpstream

SLASH_TOKEN = "slash-secret"
TEST_OPTIONS = BotOptions(edit_interval=0.05, alert_cooldown=300.0, login_retry_initial=0.05,
                          login_retry_max=0.2, mattermost=dict(FAST))


@dataclass
class BotWorld:
    """A running router with the bot, the fake Mattermost and its people and channels."""

    world: World
    router: RunningRouter
    plugin: BotPlugin
    ops: FakeChannel
    bob: FakeUser
    upstreams: dict[str, FakeUpstream]

    @property
    def server(self) -> FakeMattermostServer:
        return self.world.server

    @property
    def bot(self) -> FakeUser:
        return self.world.bot

    def say(self, user: FakeUser, text: str, channel: FakeChannel | None = None,
            root_id: str = "") -> dict[str, Any]:
        """`user` posts `text` (in town-square unless told) as if typed in the web app."""
        return self.server.inject_post(user, channel or self.world.town, text, root_id)

    async def reply(self, to: dict[str, Any], contains: str = "", timeout: float = 10.0,
                    ) -> dict[str, Any]:
        """The bot's first reply in the thread of post `to` whose message contains `contains`."""
        thread = to["root_id"] or to["id"]
        return await self.server.wait_for_post(
            lambda p: p["user_id"] == self.bot.id and p["root_id"] == thread
            and contains in p["message"], timeout)

    def bot_posts(self, channel: FakeChannel | None = None) -> list[dict[str, Any]]:
        return [p for p in self.server.posts.values() if p["user_id"] == self.bot.id
                and (channel is None or p["channel_id"] == channel.id)]


def bot_env(world: World, upstreams: dict[str, FakeUpstream], *backends: str,
            **extra: str) -> dict[str, str]:
    env = {**backend_env(upstreams, *backends), "MATTERMOST_URL": world.server.url,
           "MATTERMOST_TOKEN": BOT_TOKEN, "MATTERMOST_TEAM": "home",
           "MATTERMOST_CHANNEL": "ops", "MATTERMOST_ADMINS": "alice",
           "MATTERMOST_SLASH_TOKEN": SLASH_TOKEN}
    if world.server.ca_file:
        env["SSL_CERT_FILE"] = world.server.ca_file  # the standard variable, as users set it
    env.update(extra)
    return env


async def start_bot(world: World, upstreams: dict[str, FakeUpstream], make_router: RouterFactory,
                    *backends: str, options: BotOptions = TEST_OPTIONS, connected: bool = True,
                    **extra: str) -> BotWorld:
    """Start a router with `BotPlugin` against `world`'s fake Mattermost; wait until it listens
    (unless `connected` is False: Mattermost may be down on purpose)."""
    ops = world.server.add_channel("ops", display_name="Ops")
    bob = world.server.add_user("bob", token="bob-token")
    env = bot_env(world, upstreams, *backends, **extra)
    plugin = BotPlugin(Settings.from_env(env), options)
    router = await make_router(env, plugins=[plugin])
    assert plugin.adapter is not None
    if connected:
        await plugin.adapter.wait_connected(timeout=10.0)
    return BotWorld(world, router, plugin, ops, bob, upstreams)
