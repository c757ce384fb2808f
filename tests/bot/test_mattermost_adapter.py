"""The Mattermost adapter against a protocol-faithful fake Mattermost (HTTP and HTTPS/WSS)."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import pytest

from bot.mattermost import (
    MattermostAdapter,
    MattermostAuthError,
    MattermostConfig,
    MattermostError,
    MattermostNotFound,
    MattermostUnavailable,
    PostedEvent,
)
from bot.mattermost_types import MattermostConfigError, default_ca_file
from tests.bot.mattermost_helpers import Listener, World, start_listener
from tests.helpers import eventually

# ------------------------------------------------------------------ connect and TLS


async def test_connect_over_http(world: World) -> None:
    mm = MattermostAdapter(world.config())
    me = await mm.connect()
    assert (me.id, me.username) == (world.bot.id, "aibot")
    assert mm.bot == me
    await mm.close()


async def test_bad_token_is_an_auth_error(world: World) -> None:
    mm = MattermostAdapter(world.config(token="wrong"))
    with pytest.raises(MattermostAuthError, match="refused login"):
        await mm.connect()


async def test_refused_rest_is_unavailable(world: World) -> None:
    mm = MattermostAdapter(world.config())
    await world.server.refuse_connections()
    with pytest.raises(MattermostUnavailable, match="unreachable"):
        await mm.connect()


async def test_https_and_wss_with_private_ca(tls_world: World) -> None:
    assert tls_world.server.url.startswith("https://")
    mm = MattermostAdapter(tls_world.config())
    await mm.connect()
    listener = await start_listener(mm)
    tls_world.server.inject_post(tls_world.alice, tls_world.town, "over wss")
    event = await listener.next(lambda e: e.post.message == "over wss")
    assert event.sender_name == "@alice"
    await mm.close()
    await listener.task


async def test_https_ca_from_environment_mapping(tls_world: World) -> None:
    ca = default_ca_file({"SSL_CERT_FILE": str(tls_world.server.ca_file)})
    assert ca == tls_world.server.ca_file
    assert default_ca_file({"REQUESTS_CA_BUNDLE": "a.pem", "SSL_CERT_FILE": "b.pem"}) == "a.pem"
    assert default_ca_file({}) is None
    mm = MattermostAdapter(tls_world.config(ca_file=ca))
    assert (await mm.connect()).username == "aibot"


async def test_https_with_unknown_ca_is_refused(tls_world: World) -> None:
    mm = MattermostAdapter(tls_world.config(ca_file=None))
    with pytest.raises(MattermostUnavailable):
        await mm.connect()


async def test_verify_tls_false_works_with_a_warning(
        tls_world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.mattermost")
    mm = MattermostAdapter(tls_world.config(ca_file=None, verify_tls=False))
    assert "NOT verified" in caplog.text
    await mm.connect()
    listener = await start_listener(mm)
    tls_world.server.inject_post(tls_world.alice, tls_world.town, "unverified")
    await listener.next(lambda e: e.post.message == "unverified")
    await mm.close()
    await listener.task


def test_config_validation_names_the_setting() -> None:
    with pytest.raises(MattermostConfigError, match="MATTERMOST_URL"):
        MattermostConfig(url="mm.example.com", token="t")
    with pytest.raises(MattermostConfigError, match="MATTERMOST_TOKEN"):
        MattermostConfig(url="https://mm.example.com", token="")
    with pytest.raises(MattermostConfigError, match="reconnect_max"):
        MattermostConfig(url="https://mm.example.com", token="t", reconnect_initial=5,
                         reconnect_max=1)


# ------------------------------------------------------------------------- REST


async def test_create_patch_and_thread(adapter: MattermostAdapter, world: World) -> None:
    root = world.server.inject_post(world.alice, world.town, "@aibot what is 2+2?")
    reply = await adapter.create_post(world.town.id, "thinking…", root_id=root["id"])
    assert reply.root_id == root["id"] and reply.user_id == world.bot.id and reply.from_bot
    assert reply.thread_id == root["id"]
    for text in ("4", "4, obviously"):
        patched = await adapter.patch_post(reply.id, text)
        assert patched.message == text
    assert [e.message for e in world.server.edits] == ["4", "4, obviously"]
    world.server.inject_post(world.alice, world.town, "thanks", root_id=root["id"])
    thread = await adapter.get_thread(reply.id)
    assert [p.message for p in thread] == ["@aibot what is 2+2?", "4, obviously", "thanks"]
    assert thread[0].id == root["id"] and not thread[0].from_bot


async def test_typing_reaction_channels_and_users(adapter: MattermostAdapter, world: World) -> None:
    post = world.server.inject_post(world.alice, world.dm, "hi")
    await adapter.send_typing(world.dm.id, parent_id=post["id"])
    assert world.server.typing[-1]["channel_id"] == world.dm.id
    assert world.server.typing[-1]["parent_id"] == post["id"]
    await adapter.add_reaction(post["id"], ":eyes:")
    assert world.server.reactions[-1]["emoji_name"] == "eyes"
    assert await adapter.channel_by_name("home", "town-square") == world.town.id
    dm = await adapter.get_channel(world.dm.id)
    assert dm.is_direct and dm.type == "D"
    town = await adapter.get_channel(world.town.id)
    assert not town.is_direct and town.display_name == "Town Square"
    alice = await adapter.get_user(world.alice.id)
    assert (alice.username, alice.is_bot) == ("alice", False)
    assert (await adapter.get_user(world.other_bot.id)).is_bot
    calls = {(c.method, c.path) for c in world.server.rest_calls}
    assert ("POST", f"/api/v4/users/{world.bot.id}/typing") in calls
    assert ("POST", "/api/v4/reactions") in calls


async def test_not_found(adapter: MattermostAdapter) -> None:
    with pytest.raises(MattermostNotFound):
        await adapter.channel_by_name("home", "no-such-channel")
    with pytest.raises(MattermostNotFound):
        await adapter.get_user("nobody")


async def test_loose_content_type_is_still_decoded(adapter: MattermostAdapter,
                                                   world: World) -> None:
    # The driver returns the raw Response unless Content-Type is exactly application/json.
    world.server.content_type = "application/json; charset=utf-8"
    assert (await adapter.get_user(world.alice.id)).username == "alice"
    assert (await adapter.get_channel(world.town.id)).name == "town-square"


# ---------------------------------------------------------------------- events


async def test_posted_event_is_decoded(listener: Listener, world: World) -> None:
    world.server.inject_post(world.alice, world.town, "hey @aibot, status?")
    event = await listener.next(lambda e: e.post.user_id == world.alice.id)
    assert isinstance(event, PostedEvent)
    assert event.post.message == "hey @aibot, status?"
    assert event.post.channel_id == world.town.id
    assert (event.channel_type, event.channel_name) == ("O", "town-square")
    assert event.sender_name == "@alice" and event.mentions_user(world.bot.id)
    assert not event.is_direct

    world.server.inject_post(world.alice, world.town, "no mention here")
    plain = await listener.next(lambda e: e.post.message == "no mention here")
    assert plain.mentions == ()

    world.server.inject_post(world.alice, world.dm, "direct")
    direct = await listener.next(lambda e: e.post.message == "direct")
    assert direct.is_direct and direct.mentions_user(world.bot.id)


async def test_own_and_other_bot_posts_are_delivered_flagged(listener: Listener,
                                                             world: World) -> None:
    mine = await listener.adapter.create_post(world.town.id, "from me")
    own = await listener.next(lambda e: e.post.id == mine.id)
    assert own.post.from_bot and own.post.user_id == world.bot.id
    world.server.inject_post(world.other_bot, world.town, "beep")
    other = await listener.next(lambda e: e.post.message == "beep")
    assert other.post.from_bot


def test_posted_event_from_real_payload() -> None:
    post = {"id": "p1", "create_at": 1, "update_at": 1, "user_id": "u1", "channel_id": "c1",
            "root_id": "", "message": "@bot hi", "type": "", "props": {}}
    data = {"channel_display_name": "Town Square", "channel_name": "town-square",
            "channel_type": "O", "mentions": json.dumps(["b1"]), "post": json.dumps(post),
            "sender_name": "@alice", "set_online": True, "team_id": "t1"}
    event = PostedEvent.from_ws(data)
    assert event.post.message == "@bot hi" and event.mentions == ("b1",)
    with pytest.raises(ValueError):
        PostedEvent.from_ws({**data, "post": "{not json"})


async def test_slow_handler_outlives_receive_timeouts(world: World) -> None:
    mm = MattermostAdapter(world.config())
    await mm.connect()
    second_seen = asyncio.Event()
    finished: list[str] = []

    async def handler(event: PostedEvent) -> None:
        if event.post.message == "second":
            second_seen.set()
            return
        # Work (simulated) past several ping intervals while more events keep arriving.
        await asyncio.sleep(4 * world.config().ping_interval)
        await asyncio.wait_for(second_seen.wait(), 5.0)
        finished.append(event.post.message)

    task = asyncio.create_task(mm.listen(handler))
    await mm.wait_connected(5.0)
    world.server.inject_post(world.alice, world.town, "first")
    world.server.inject_post(world.alice, world.town, "second")
    await eventually(lambda: finished == ["first"])
    assert mm.drops == 0 and mm.connected
    await mm.close()
    await task


async def test_handler_failure_is_logged_and_listening_goes_on(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    mm = MattermostAdapter(world.config())
    await mm.connect()
    seen: list[str] = []

    async def handler(event: PostedEvent) -> None:
        if event.post.message == "boom":
            raise RuntimeError("handler exploded")
        seen.append(event.post.message)

    task = asyncio.create_task(mm.listen(handler))
    await mm.wait_connected(5.0)
    world.server.inject_post(world.alice, world.town, "boom")
    world.server.inject_post(world.alice, world.town, "fine")
    await eventually(lambda: seen == ["fine"] and mm.handler_failures == 1)
    assert "handler exploded" in caplog.text
    await mm.close()
    await task


# ------------------------------------------------------------------- reconnects


async def _assert_receives(listener: Listener, world: World, text: str) -> None:
    world.server.inject_post(world.alice, world.town, text)
    await listener.next(lambda e: e.post.message == text)


async def test_reconnect_after_clean_close(listener: Listener, world: World) -> None:
    await world.server.wait_for_sessions(1)
    await world.server.close_websockets()
    await world.server.wait_for_sessions(2)
    await eventually(lambda: listener.adapter.connected)
    assert listener.adapter.drops >= 1 and "closed by the server" in listener.adapter.last_error
    await _assert_receives(listener, world, "after clean close")


async def test_reconnect_after_abnormal_close(listener: Listener, world: World) -> None:
    await world.server.wait_for_sessions(1)
    world.server.abort_websockets()
    await world.server.wait_for_sessions(2)
    await eventually(lambda: listener.adapter.connected)
    assert "ConnectionClosedError" in listener.adapter.last_error
    await _assert_receives(listener, world, "after abort")


async def test_reconnect_after_refused_connections(
        listener: Listener, world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.mattermost")
    await world.server.refuse_connections()
    await eventually(lambda: listener.adapter.drops >= 5)
    assert not listener.adapter.connected
    assert "ConnectionRefusedError" in listener.adapter.last_error
    # Backoff: initial after the authenticated session dropped, then doubling up to the cap.
    delays = [float(m) for m in re.findall(r"reconnecting in ([0-9.]+)s", caplog.text)]
    assert delays[:5] == [0.05, 0.1, 0.2, 0.2, 0.2]
    await world.server.accept_connections()
    await world.server.wait_for_sessions(2)
    await listener.adapter.wait_connected(5.0)
    await _assert_receives(listener, world, "after refusal")
    # An authenticated session resets the backoff, whatever way it ends.
    caplog.clear()
    world.server.abort_websockets()
    await world.server.wait_for_sessions(3)
    assert re.findall(r"reconnecting in ([0-9.]+)s", caplog.text) == ["0.05"]


async def test_websocket_auth_failure_is_retried(listener: Listener, world: World) -> None:
    world.server.reject_websocket_auth = True
    world.server.abort_websockets()
    await world.server.wait_until(lambda: world.server.auth_failures >= 2)
    await eventually(lambda: "authentication failed" in listener.adapter.last_error)
    world.server.reject_websocket_auth = False
    await world.server.wait_for_sessions(2)
    await listener.adapter.wait_connected(5.0)
    await _assert_receives(listener, world, "after auth failure")


async def test_cancelling_listen_stops_the_session(adapter: MattermostAdapter,
                                                   world: World) -> None:
    listener = await start_listener(adapter)
    listener.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await listener.task
    assert not adapter.connected
    names = {t.get_name() for t in asyncio.all_tasks() if not t.done()}
    assert "mattermost-websocket" not in names


async def test_reconnect_after_hung_server(world: World) -> None:
    # Short pings here: a hung server is only noticed by a missing pong.
    mm = MattermostAdapter(world.config(ping_interval=0.2, ping_timeout=0.5,
                                        connect_timeout=1.0))
    await mm.connect()
    listener = await start_listener(mm)
    await world.server.wait_for_sessions(1)
    attempts, opened = world.server.ws_attempts, world.server.sessions_opened
    world.server.hang()
    # The open session stops answering pings; the next upgrade is never answered either.
    await eventually(lambda: listener.adapter.drops >= 1)
    await world.server.wait_for_ws_attempts(attempts + 1)
    await eventually(lambda: listener.adapter.drops >= 2)
    assert world.server.sessions_opened == opened  # no session while hung
    world.server.unhang()
    await world.server.wait_for_sessions(opened + 1)
    await listener.adapter.wait_connected(10.0)
    await _assert_receives(listener, world, "after hang")
    await mm.close()
    await asyncio.wait_for(listener.task, 10.0)


async def test_reconnect_after_restart(listener: Listener, world: World) -> None:
    await world.server.restart()
    await world.server.wait_for_sessions(2)
    await listener.adapter.wait_connected(5.0)
    await _assert_receives(listener, world, "after restart")


# --------------------------------------------------------------------- shutdown


async def test_clean_shutdown_leaves_no_tasks(world: World) -> None:
    mm = MattermostAdapter(world.config(handler_grace=0.1))
    await mm.connect()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck(event: PostedEvent) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    before = asyncio.all_tasks()
    task = asyncio.create_task(mm.listen(stuck))
    await mm.wait_connected(5.0)
    world.server.inject_post(world.alice, world.town, "never answered")
    await asyncio.wait_for(started.wait(), 5.0)
    assert mm.pending_handlers == 1
    await mm.close()
    await asyncio.wait_for(task, 10.0)
    assert cancelled.is_set() and mm.pending_handlers == 0 and not mm.connected
    leftover = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert not {t.get_name() for t in leftover if t.get_name().startswith("mattermost")}
    await mm.close()  # idempotent


async def test_close_while_server_refuses(world: World) -> None:
    mm = MattermostAdapter(world.config(reconnect_initial=600.0, reconnect_max=600.0))
    await mm.connect()
    await world.server.refuse_connections()

    async def handler(event: PostedEvent) -> None:
        return None

    task = asyncio.create_task(mm.listen(handler))
    await eventually(lambda: mm.drops >= 1)
    await asyncio.wait_for(mm.close(), 30.0)  # wakes the 600 s backoff at once
    assert task.done()


async def test_close_while_server_hangs_on_upgrade(world: World) -> None:
    world.server.hang()
    mm = MattermostAdapter(world.config(connect_timeout=600.0))
    await mm.connect()

    async def handler(event: PostedEvent) -> None:
        return None

    task = asyncio.create_task(mm.listen(handler))
    await world.server.wait_for_ws_attempts(1)
    await asyncio.wait_for(mm.close(), 30.0)  # not the 600 s connect timeout
    await asyncio.wait_for(task, 30.0)
    world.server.unhang()


async def test_listen_needs_connect(world: World) -> None:
    mm = MattermostAdapter(world.config())

    async def handler(event: PostedEvent) -> None:
        return None

    with pytest.raises(MattermostError, match="connect"):
        await mm.listen(handler)
