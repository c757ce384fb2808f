"""The `/ai` slash command: real form POSTs to the router's /mattermost/command endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from bot.reports import GAMING_ON
from bot.slash import WORKING
from tests.bot.bot_helpers import SLASH_TOKEN, BotWorld, start_bot
from tests.bot.mattermost_helpers import World
from tests.conftest import RouterFactory, decision_rows
from tests.fakes.upstream import FakeUpstream
from tests.helpers import serve_app


class ResponseUrl:
    """A loopback server standing in for Mattermost's response_url."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hooks/commands/{id}", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.put_nowait(await request.json())
        return web.json_response({})

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.received.get(), timeout)


@pytest.fixture
async def hook() -> AsyncIterator[ResponseUrl]:
    server = ResponseUrl()
    async with serve_app(server.app()) as url:
        server.url = url
        yield server


async def slash(w: BotWorld, text: str, user: str = "alice", token: str = SLASH_TOKEN,
                response_url: str = "") -> httpx.Response:
    form = {"token": token, "team_id": "t", "team_domain": "home",
            "channel_id": w.world.town.id, "channel_name": "town-square", "user_id": "u",
            "user_name": user, "command": "/ai", "text": text, "response_url": response_url,
            "trigger_id": "x"}
    async with httpx.AsyncClient() as client:
        return await client.post(f"{w.router.url}/mattermost/command", data=form)


@pytest.mark.parametrize("token", ["wrong", ""])
async def test_bad_token_is_401_openai_shaped(bot_world: BotWorld, token: str) -> None:
    response = await slash(bot_world, "gaming mode on", token=token)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "authentication_error"
    assert error["message"] == "Invalid slash command token."
    assert bot_world.router.service.gaming.enabled is False


async def test_unconfigured_slash_token_refuses_everything(
        world: World, upstreams: dict[str, FakeUpstream], make_router: RouterFactory) -> None:
    w = await start_bot(world, upstreams, make_router, MATTERMOST_SLASH_TOKEN="")
    response = await slash(w, "status", token="")
    assert response.status_code == 401
    assert "MATTERMOST_SLASH_TOKEN" in response.json()["error"]["message"]


async def test_queries_are_ephemeral_and_changes_in_channel(bot_world: BotWorld) -> None:
    w = bot_world
    response = await slash(w, "gaming status")
    assert response.status_code == 200
    assert response.json() == {"response_type": "ephemeral", "text": (
        "Gaming mode: OFF\n3070: Available\n3090: Available\nOpenCode: Available")}
    response = await slash(w, "gaming mode on")
    assert response.json() == {"response_type": "in_channel", "text": GAMING_ON}
    assert w.router.service.gaming.enabled
    changes = w.router.service.gaming
    assert changes.enabled
    response = await slash(w, "gaming mode off", user="bob")
    assert response.json()["response_type"] == "ephemeral"
    assert response.json()["text"].startswith("Sorry @bob, only admins")
    assert w.router.service.gaming.enabled
    response = await slash(w, "")
    assert "`stats [24h|7d]`" in response.json()["text"]
    assert "`/ai status`" in response.json()["text"]


async def test_chat_prompt_answers_via_response_url(bot_world: BotWorld, hook: ResponseUrl) -> None:
    w = bot_world
    response = await slash(w, "what is up?", user="bob", response_url=f"{hook.url}/hooks/commands/1")
    assert response.json() == {"response_type": "ephemeral", "text": WORKING}
    answer = await hook.next()
    assert answer["response_type"] == "ephemeral"
    assert answer["text"].startswith("tok0 tok1 tok2 tok3 tok4\n\n---\n*Answered by 3070 · ")
    rows = await decision_rows(w.router)
    assert [(r.source, r.client, r.status_code) for r in rows] == [("slash", "bob", 200)]


async def test_route_is_deferred_and_slow_admin_commands_refused_at_once(
        bot_world: BotWorld, hook: ResponseUrl) -> None:
    w = bot_world
    url = f"{hook.url}/hooks/commands/2"
    response = await slash(w, "route #force_big explain quantum physics", response_url=url)
    assert response.json()["text"] == WORKING
    answer = await hook.next()
    assert answer["response_type"] == "ephemeral"
    assert answer["text"].startswith("This prompt would go to **3090**")
    assert "`force_big`" in answer["text"]
    response = await slash(w, "stop 3090", user="bob", response_url=url)
    assert response.json()["text"].startswith("Sorry @bob, only admins")
    assert hook.received.empty()


async def test_slash_works_while_mattermost_is_down(bot_world: BotWorld) -> None:
    w = bot_world
    await w.server.refuse_connections()
    response = await slash(w, "use claude")
    assert response.json() == {"response_type": "in_channel",
                               "text": "Chat in this channel now uses model `claude` (backend opencode)."}


async def test_the_command_answers_503_while_the_bot_is_not_started() -> None:
    """The route exists from the app's creation; the command itself is built when the bot
    starts. An app served before its start-up (never the router's own) gets a clear 503."""
    from bot.plugin import BotPlugin
    from router.settings import Settings

    plugin = BotPlugin(Settings.from_env({"MATTERMOST_URL": "http://127.0.0.1:1",
                                          "MATTERMOST_TOKEN": "t",
                                          "MATTERMOST_SLASH_TOKEN": SLASH_TOKEN}))
    app = web.Application()
    plugin.add_routes(app)
    async with serve_app(app) as url, httpx.AsyncClient() as http:
        response = await http.post(url + "/mattermost/command",
                                   data={"token": SLASH_TOKEN, "user_name": "alice", "text": "status"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "starting"
    await plugin.adapter.close(grace=0.1)
