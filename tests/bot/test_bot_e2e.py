"""The real bot inside a real router, driven through the fake Mattermost: every command by mention."""

from __future__ import annotations

import pytest

from bot.reports import GAMING_OFF, GAMING_ON
from tests.bot.bot_helpers import BotWorld


async def test_gaming_mode_on_off_and_status_exact_replies(bot_world: BotWorld) -> None:
    w = bot_world
    alice = w.world.alice
    post = w.say(alice, "@aibot gaming mode on")
    assert (await w.reply(post))["message"] == GAMING_ON
    assert w.router.service.gaming.enabled
    assert w.upstreams["3090"].gaming_posts == [True]

    post = w.say(alice, "@aibot gaming status")
    reply = await w.reply(post)
    assert reply["message"] == ("Gaming mode: ON\n3070: Available\n"
                                "3090: Gated (force-big only)\nOpenCode: Available")

    post = w.say(alice, "@aibot gaming mode off")
    assert (await w.reply(post))["message"] == GAMING_OFF
    post = w.say(alice, "@aibot gaming status")
    reply = await w.reply(post)
    assert reply["message"] == "Gaming mode: OFF\n3070: Available\n3090: Available\nOpenCode: Available"


async def test_gaming_status_shows_down_backends(bot_world: BotWorld) -> None:
    w = bot_world
    await w.upstreams["opencode"].stop()
    for _ in range(2):
        await w.router.service.registry.check_all()
    post = w.say(w.bob, "@aibot gaming status")
    assert (await w.reply(post))["message"].endswith("OpenCode: Down")


@pytest.mark.parametrize("text", ["gaming mode on", "gaming mode off", "use small",
                                  "load qwen2.5-14b-instruct-awq on 3090", "stop 3090"])
async def test_non_admins_are_refused(bot_world: BotWorld, text: str) -> None:
    w = bot_world
    post = w.say(w.bob, f"@aibot {text}")
    reply = await w.reply(post)
    assert reply["message"].startswith("Sorry @bob, only admins may change gaming mode or models")
    assert "@alice" in reply["message"]
    assert w.router.service.gaming.enabled is False
    assert w.upstreams["3090"].gaming_posts == []


async def test_status_and_models(bot_world: BotWorld) -> None:
    w = bot_world
    post = w.say(w.bob, "@aibot status")
    status = (await w.reply(post))["message"]
    assert status.startswith("Gaming mode: OFF\n3070: Available")
    assert "| Backend | State | Models | Latency | Last error |" in status
    assert "qwen2.5-14b-instruct-awq" in status

    post = w.say(w.bob, "@aibot models")
    models = (await w.reply(post))["message"]
    assert "| `qwen2.5-7b-instruct-awq` | 3070 | 32768 | Available |" in models
    assert "| `glm-4.6` | OpenCode |" in models
    assert "`small`" in models and "This channel's chat model: `auto`." in models


async def test_help_and_empty_mention_and_usage(bot_world: BotWorld) -> None:
    w = bot_world
    post = w.say(w.bob, "@aibot help")
    help_text = (await w.reply(post))["message"]
    for usage in ("gaming mode on|off [backend]", "gaming status", "use <model|auto>", "route <prompt>",
                  "stats [24h|7d]", "load <model> [on <backend>]", "stop <backend>"):
        assert f"`{usage}`" in help_text
    post = w.say(w.bob, "@aibot")
    assert (await w.reply(post))["message"] == help_text.replace("`@bot ", "`@aibot ")
    post = w.say(w.bob, "@aibot stats 30d")
    assert (await w.reply(post))["message"].startswith("Usage: `stats [24h|7d]`")


async def test_use_persists_per_channel_and_chat_uses_it(bot_world: BotWorld) -> None:
    w = bot_world
    alice = w.world.alice
    post = w.say(alice, "@aibot use opencode")
    assert (await w.reply(post))["message"] == \
        "Chat in this channel now uses model `opencode` (backend opencode)."
    rows = await w.plugin.actions.models.get(w.world.town.id)  # type: ignore[union-attr]
    assert rows == "opencode"
    post = w.say(alice, "@aibot say hi")
    reply = await w.reply(post, "Answered by opencode")
    assert reply["message"].endswith("*Answered by opencode · `zai-coding-plan/glm-4.6` (explicit_model)*")
    assert len(w.upstreams["opencode"].requests) == 1
    # Another channel still routes automatically.
    post = w.say(alice, "@aibot models", channel=w.ops)
    assert "This channel's chat model: `auto`." in (await w.reply(post))["message"]
    post = w.say(alice, "@aibot use no-such-model")
    assert "does not exist" in (await w.reply(post))["message"]
    post = w.say(alice, "@aibot use auto")
    assert "automatic routing" in (await w.reply(post))["message"]
    assert await w.plugin.actions.models.get(w.world.town.id) == "auto"  # type: ignore[union-attr]


async def test_route_explains_the_decision(bot_world: BotWorld) -> None:
    w = bot_world
    post = w.say(w.bob, "@aibot route what is the capital of France?")
    reply = (await w.reply(post))["message"]
    assert reply.startswith("This prompt would go to **3070** (`qwen2.5-7b-instruct-awq`), "
                            "reason `small_request`")
    assert "Fallback order: 3070 → 3090 → opencode." in reply or "Fallback order: 3070" in reply
    assert w.upstreams["3070"].requests == []  # a dry run
    assert any(t["channel_id"] == w.world.town.id for t in w.server.typing)


async def test_stats_table_after_requests(bot_world: BotWorld) -> None:
    w = bot_world
    for i in range(3):
        post = w.say(w.bob, f"@aibot question number {i}")
        await w.reply(post, "Answered by")
    post = w.say(w.bob, "@aibot stats")
    reply = (await w.reply(post, "Requests in the last 24h"))["message"]
    lines = reply.splitlines()
    assert "| Backend | Requests | Errors | Tokens (prompt / completion) | p50 latency | Fallbacks |" in lines
    row = next(line for line in lines if line.startswith("| 3070 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] == ["3", "0", "33 / 15"]
    assert cells[4].endswith(" ms") and cells[5] == "0"
    post = w.say(w.bob, "@aibot stats 7d")
    assert "Requests in the last 7d" in (await w.reply(post, "7d"))["message"]


async def test_ignores_own_posts_other_bots_and_unmentioned(bot_world: BotWorld) -> None:
    w = bot_world
    w.say(w.world.other_bot, "@aibot status")
    w.say(w.bob, "status without a mention")
    w.server.inject_post(w.bot, w.world.town, "@aibot status")  # its own post
    marker = w.say(w.bob, "@aibot help")
    await w.reply(marker)
    replies = [p for p in w.bot_posts() if p["root_id"]]
    assert [p["root_id"] for p in replies] == [marker["id"]]


async def test_direct_message_needs_no_mention(bot_world: BotWorld) -> None:
    w = bot_world
    post = w.say(w.world.alice, "gaming status", channel=w.world.dm)
    assert (await w.reply(post))["message"].startswith("Gaming mode: OFF")
