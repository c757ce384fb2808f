"""Chat through the bot: thread context, streamed edits, footer, splitting, errors, decision rows."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from bot.chat import MAX_POST_CHARS, footer, split_message, thread_messages
from bot.mattermost_types import Post
from tests.bot.bot_helpers import TEST_OPTIONS, BotWorld, start_bot
from tests.bot.mattermost_helpers import World
from tests.conftest import RouterFactory, decision_rows
from tests.fakes.upstream import FakeUpstream

# ------------------------------------------------------------------ pure parts


def _post(pid: str, user: str, message: str, type_: str = "") -> Post:
    return Post(id=pid, channel_id="c", user_id=user, message=message, type=type_)


def test_thread_messages_roles_mentions_and_footers() -> None:
    posts = [
        _post("1", "u1", "@aibot what is 2+2?"),
        _post("2", "bot", "4" + footer("3070", "qwen", "small_request")),
        _post("3", "u2", "", "system_join_channel"),
        _post("4", "u2", "and @aibot: times 3?"),
        _post("5", "u1", "@aibot"),
    ]
    assert thread_messages(posts, "bot", "aibot") == [
        {"role": "user", "content": "what is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and   times 3?"},
    ]


@given(st.text(max_size=400), st.integers(min_value=2, max_value=60))
def test_split_message_parts_fit_and_join_back(text: str, limit: int) -> None:
    parts = split_message(text, limit)
    assert "".join(parts) == text
    assert all(len(p) <= limit for p in parts)
    assert all(parts[:-1])  # no empty part except a single empty text


def test_split_prefers_line_breaks() -> None:
    text = "a" * 10 + "\n" + "b" * 10
    assert split_message(text, 15) == ["a" * 10 + "\n", "b" * 10]


# ------------------------------------------------------------------ through the bot


async def test_chat_answer_streams_with_footer_and_logs_source_bot(
        world: World, upstreams: dict[str, FakeUpstream], make_router: RouterFactory) -> None:
    options = dataclasses.replace(TEST_OPTIONS, edit_interval=0.2)
    w = await start_bot(world, upstreams, make_router, options=options)
    w.upstreams["3070"].chunks = 600
    post = w.say(w.bob, "@aibot tell me a long story")
    reply = await w.reply(post, "Answered by 3070", timeout=15.0)
    words = "".join(f"tok{i} " for i in range(600)).rstrip()
    assert reply["message"] == words + footer("3070", "qwen2.5-7b-instruct-awq", "small_request")
    # Streamed: the reply was edited several times, each edit a longer prefix of the answer.
    edits = [e for e in w.server.edits if e.post_id == reply["id"]]
    assert len(edits) >= 2
    bodies = [e.message.removesuffix(" …") for e in edits[:-1]]
    assert all(words.startswith(b) for b in bodies)
    assert [len(b) for b in bodies] == sorted(len(b) for b in bodies)
    # Throttled: about one edit per interval, not one per token (600 tokens). Counted over the
    # span, not per gap: a busy machine may deliver two edits close together.
    span = edits[-1].monotonic - edits[0].monotonic
    assert len(edits) <= span / options.edit_interval + 3
    # Typing indicator in the thread before the answer started.
    assert any(t["parent_id"] == post["id"] for t in w.server.typing)
    # The upstream got the prompt without the mention; the decision row names the bot and user.
    assert w.upstreams["3070"].requests[-1]["messages"] == [
        {"role": "user", "content": "tell me a long story"}]
    rows = await decision_rows(w.router)
    assert [(r.source, r.client, r.backend, r.status_code) for r in rows] == [
        ("bot", "bob", "3070", 200)]


async def test_edits_are_throttled_to_about_one_a_second(
        world: World, upstreams: dict[str, FakeUpstream], make_router: RouterFactory) -> None:
    options = dataclasses.replace(TEST_OPTIONS, edit_interval=1.0)
    w = await start_bot(world, upstreams, make_router, options=options)
    w.upstreams["3070"].chunks = 50
    post = w.say(w.bob, "@aibot quick one")
    reply = await w.reply(post, "Answered by")
    edits = [e for e in w.server.edits if e.post_id == reply["id"]]
    # The answer takes well under a second: the post is created once and edited once (final).
    assert len(edits) == 1


async def test_thread_history_is_the_context(bot_world: BotWorld) -> None:
    w = bot_world
    alice = w.world.alice
    root = w.say(alice, "@aibot first question")
    await w.reply(root, "Answered by")
    follow = w.say(alice, "@aibot and then?", root_id=root["id"])
    await w.server.wait_until(lambda: len(w.upstreams["3070"].requests) == 2)
    assert w.upstreams["3070"].requests[-1]["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "tok0 tok1 tok2 tok3 tok4"},
        {"role": "user", "content": "and then?"},
    ]
    second = await w.server.wait_for_post(
        lambda p: p["user_id"] == w.bot.id and p["root_id"] == root["id"]
        and p["create_at"] > follow["create_at"] and "Answered by" in p["message"])
    assert second["root_id"] == root["id"]


async def test_long_answer_is_split_into_several_posts(bot_world: BotWorld) -> None:
    w = bot_world
    w.upstreams["3070"].chunks = 2300  # "tokNNNN " * 2300 > 16,383 characters
    post = w.say(w.bob, "@aibot write a lot")
    last = await w.reply(post, "Answered by", timeout=30.0)
    replies = sorted((p for p in w.bot_posts() if p["root_id"] == post["id"]),
                     key=lambda p: p["create_at"])
    assert len(replies) == 2 and replies[-1]["id"] == last["id"]
    assert all(len(p["message"]) <= MAX_POST_CHARS for p in replies)
    text = "".join(p["message"] for p in replies)
    assert text.startswith("tok0 tok1 ") and "tok2299" in text


async def test_no_backend_is_answered_not_silent(bot_world: BotWorld) -> None:
    w = bot_world
    for fake in w.upstreams.values():
        fake.mode = "status"
    post = w.say(w.bob, "@aibot hello?")
    reply = await w.reply(post, "Sorry, I could not answer")
    assert "No backend could serve this request" in reply["message"]
    rows = await decision_rows(w.router)
    assert rows[-1].source == "bot" and rows[-1].status_code == 503


async def test_broken_stream_keeps_text_and_says_so(bot_world: BotWorld) -> None:
    w = bot_world
    w.upstreams["3070"].mode = "die_mid_stream"
    post = w.say(w.bob, "@aibot break please")
    reply = await w.reply(post, "cut off")
    assert reply["message"].startswith("tok0 tok1")
    assert "Answered by 3070" in reply["message"]
    rows = await decision_rows(w.router)
    assert rows[-1].status_code == 502
