"""The command parser (pure, property-tested), the command table, and load/stop via the agent API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from bot.commands import (
    COMMANDS,
    USAGE_MAX_WORDS,
    ChatPrompt,
    Empty,
    Invocation,
    UsageError,
    format_invocation,
    help_text,
    parse,
    strip_mention,
)
from router.backends.agent_control import AgentClient, AgentError
from tests.bot.bot_helpers import start_bot
from tests.bot.mattermost_helpers import World
from tests.conftest import RouterFactory
from tests.fakes.upstream import FakeUpstream
from tests.helpers import serve_app

COMMAND_WORDS = {c.name.split()[0] for c in COMMANDS}
token = st.text(st.characters(blacklist_categories=("Z", "C")), min_size=1, max_size=12)

# ------------------------------------------------------------------ parser: tables


@pytest.mark.parametrize(("text", "expected"), [
    ("gaming mode on", Invocation("gaming", ("on",))),
    ("Gaming Mode OFF", Invocation("gaming", ("off",))),
    ("gaming on", Invocation("gaming", ("on",))),
    ("gaming status", Invocation("gaming status")),
    ("gaming mode status", Invocation("gaming status")),
    ("status", Invocation("status")),
    ("  models  ", Invocation("models")),
    ("use claude", Invocation("use", ("claude",))),
    ("use auto", Invocation("use", ("auto",))),
    ("route how do I   sort a list?", Invocation("route", ("how do I   sort a list?",))),
    ("stats", Invocation("stats", ("24h",))),
    ("stats 7D", Invocation("stats", ("7d",))),
    ("load qwen", Invocation("load", ("qwen",))),
    ("load qwen on 3090", Invocation("load", ("qwen", "3090"))),
    ("stop 3070", Invocation("stop", ("3070",))),
    ("help", Invocation("help")),
    ("", Empty()),
    ("   \n ", Empty()),
    ("what is the status of the migration?", ChatPrompt("what is the status of the migration?")),
    ("status of the migration plan please", ChatPrompt("status of the migration plan please")),
    ("help me write a haiku about GPUs", ChatPrompt("help me write a haiku about GPUs")),
    ("use python to sort a list", ChatPrompt("use python to sort a list")),
    ("stop", UsageError("stop", "Usage: `stop <backend>` — Stop every model on a GPU host's "
                                "inference agent (admins only).")),
])
def test_parse_table(text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize("text", ["stats 30d", "gaming mode maybe", "use", "route", "load",
                                  "load a b", "status now", "models please"])
def test_short_misfits_are_usage_errors(text: str) -> None:
    result = parse(text)
    assert isinstance(result, UsageError)
    assert result.message.startswith("Usage: `")


def test_help_is_generated_from_the_table() -> None:
    text = help_text("/ai")
    for command in COMMANDS:
        assert f"`{command.usage}` — {command.help}" in text
    assert {c.name for c in COMMANDS if c.admin_only} == {"gaming", "use", "load", "stop", "reload"}


@pytest.mark.parametrize(("text", "expected"), [
    ("@aibot status", "status"),
    ("@AIBot: gaming status", "gaming status"),
    ("hey @aibot, what now?", "hey   what now?"),
    ("mail me@aibot.example", "mail me@aibot.example"),
    ("@aibotx status", "@aibotx status"),
])
def test_strip_mention(text: str, expected: str) -> None:
    assert strip_mention(text, "aibot") == expected


# ------------------------------------------------------------------ parser: properties


@given(st.text())
def test_parse_never_raises_and_classifies(text: str) -> None:
    result = parse(text)
    assert isinstance(result, (Invocation, UsageError, ChatPrompt, Empty))
    if isinstance(result, ChatPrompt):
        assert result.text == text.strip()
    if isinstance(result, Empty):
        assert not text.strip()


invocations = st.one_of(
    st.sampled_from([Invocation("gaming", ("on",)), Invocation("gaming", ("off",)),
                     Invocation("gaming status"), Invocation("status"), Invocation("models"),
                     Invocation("help")]),
    st.builds(lambda t: Invocation("use", (t,)), token),
    st.builds(lambda t: Invocation("stop", (t,)), token),
    st.builds(lambda t: Invocation("load", (t,)), token),
    st.builds(lambda m, b: Invocation("load", (m, b)), token, token),
    st.builds(lambda w: Invocation("stats", (w,)), st.sampled_from(["24h", "7d"])),
    st.builds(lambda p: Invocation("route", (p,)),
              token.flatmap(lambda first: st.just(first + " and more"))),
)


@given(invocations)
def test_formatted_invocations_parse_back(invocation: Invocation) -> None:
    assert parse(format_invocation(invocation)) == invocation


@given(st.lists(token, min_size=1, max_size=8))
def test_text_not_starting_with_a_command_word_is_chat(words: list[str]) -> None:
    text = " ".join(words)
    if words[0].lower().lstrip("/") in COMMAND_WORDS:
        return
    assert parse(text) == ChatPrompt(text)


@given(st.sampled_from(sorted(COMMAND_WORDS - {"route"})),
       st.lists(token, min_size=USAGE_MAX_WORDS + 1, max_size=8))
def test_long_misfits_are_chat_not_usage(word: str, words: list[str]) -> None:
    text = " ".join([word, "xyzzy", *words])  # never fits: too many words for any grammar
    assert parse(text) == ChatPrompt(text)


# ------------------------------------------------------------------ agent client


async def test_agent_client_maps_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/stop-all":
            return httpx.Response(200, json={"models": []})
        if request.url.path == "/models/missing/load":
            return httpx.Response(404, json={"error": {"message": "Unknown model 'missing'."}})
        raise httpx.ConnectError("refused", request=request)

    client = AgentClient(transport=httpx.MockTransport(handler))
    assert await client.stop_all("http://gpu:8001/") == {"models": []}
    with pytest.raises(AgentError, match=r"refused to load missing \(HTTP 404\): Unknown model"):
        await client.load("http://gpu:8001", "missing")
    with pytest.raises(AgentError, match="could not be reached"):
        await client.load("http://gpu:8001", "other")
    await client.close()


# ------------------------------------------------------------------ load / stop through the bot


class FakeAgent:
    """An inference agent: OpenAI model listing plus the control endpoints the bot calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/status", self._status)
        app.router.add_post("/models/{id}/load", self._load)
        app.router.add_post("/stop-all", self._stop)
        return app

    async def _models(self, _r: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": "qwen2.5-14b", "object": "model", "max_model_len": 32768}]})

    async def _status(self, _r: web.Request) -> web.Response:
        return web.json_response({"gaming_mode": False, "models": [], "gpu": None})

    async def _load(self, request: web.Request) -> web.Response:
        model = request.match_info["id"]
        self.calls.append(f"load {model}")
        if model != "qwen2.5-14b":
            return web.json_response({"error": {"message": f"Unknown model '{model}'."}},
                                     status=404)
        return web.json_response({"models": [{"id": model, "state": "ready"}]})

    async def _stop(self, _r: web.Request) -> web.Response:
        self.calls.append("stop-all")
        return web.json_response({"models": []})


@pytest.fixture
async def agent() -> AsyncIterator[FakeAgent]:
    fake = FakeAgent()
    async with serve_app(fake.app()) as url:
        fake.url = url
        yield fake


async def test_load_and_stop_through_the_agent_api(
        world: World, upstreams: dict[str, FakeUpstream], make_router: RouterFactory,
        agent: FakeAgent) -> None:
    w = await start_bot(world, upstreams, make_router, "3070", "opencode", GAMING_PC_URL=agent.url)
    alice = w.world.alice
    cases: list[tuple[str, str]] = [
        ("load qwen2.5-14b", "Model `qwen2.5-14b` is loaded and ready on 3090."),
        ("load big", "Model `qwen2.5-14b` is loaded and ready on 3090."),
        ("load other on gaming-pc", ("Sorry, that did not work: The inference agent refused to "
                                     "load other (HTTP 404): Unknown model 'other'.")),
        ("stop 3090", ("Stopped every model on 3090; the GPU is free. The next request starts "
                       "the model again.")),
        ("stop opencode", ("Sorry, that did not work: OpenCode has no inference agent; only the "
                           "GPU hosts (3070, 3090) can load or stop models.")),
        ("stop 4090", "Sorry, that did not work: Unknown backend '4090'; the GPU hosts are 3070, 3090."),
    ]
    for text, expected in cases:
        post = w.say(alice, f"@aibot {text}")
        reply: dict[str, Any] = await w.reply(post)
        assert reply["message"] == expected, text
    assert agent.calls == ["load qwen2.5-14b", "load qwen2.5-14b", "load other", "stop-all"]
