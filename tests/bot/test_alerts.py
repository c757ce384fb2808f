"""Ops-channel alerts, gaming notices and the daily report, through the real bot."""

from __future__ import annotations

import dataclasses

from apscheduler.triggers.cron import CronTrigger

from bot.alerts import AlertThrottle, HeldMessages, alert_text, dropped_notice
from router.http.app import SCHEDULER
from tests.bot.bot_helpers import TEST_OPTIONS, BotWorld, start_bot
from tests.bot.mattermost_helpers import World
from tests.conftest import RouterFactory
from tests.fakes.upstream import FakeUpstream
from tests.helpers import eventually

# ------------------------------------------------------------------ the throttle (pure)


def test_throttle_announces_first_then_holds_within_cooldown() -> None:
    t = AlertThrottle(cooldown=60)
    assert t.offer("3090", False, "refused", now=0) == 0.0
    assert t.offer("3090", True, None, now=10) == 50  # held; flush due in 50 s
    assert t.offer("3090", False, "refused", now=20) is None  # flush already due
    assert t.flush("3090", now=60) is None  # ended where it was announced: a flap, no news
    assert t.offer("3090", True, None, now=61) == 0.0  # cooldown over: announced at once
    assert t.offer("3090", False, "gone", now=70) == 51
    assert t.flush("3090", now=121) == (False, "gone", 1)
    assert t.offer("3070", False, "x", now=122) == 0.0  # per backend
    assert t.offer("3090", True, None, now=200) == 0.0


def test_held_messages_keep_the_newest_in_order_and_count_the_dropped() -> None:
    held = HeldMessages(limit=2)
    for text in ("a", "b", "c"):
        held.add(text)
    assert len(held) == 2 and held.dropped == 1
    assert held.first() == "b"
    held.delivered()
    assert held.first() == "c"
    held.delivered()
    assert held.first() is None and len(held) == 0
    assert dropped_notice(1).startswith(":warning: 1 older ops message was dropped")
    assert "3 older ops messages were dropped" in dropped_notice(3)


def test_alert_texts() -> None:
    assert alert_text("opencode", False, "refused") == (
        ":red_circle: Backend **OpenCode** is down: refused. Requests go to the other backends.")
    assert alert_text("3090", True, None, changes=3, cooldown=300).endswith(
        "(It changed state 3 times in the last 5 min.)")


# ------------------------------------------------------------------ through the bot


def ops_posts(w: BotWorld) -> list[str]:
    return [p["message"] for p in w.bot_posts(w.ops)]


async def test_backend_down_alert_and_recovery_after_cooldown(
        world: World, upstreams: dict[str, FakeUpstream], make_router: RouterFactory) -> None:
    options = dataclasses.replace(TEST_OPTIONS, alert_cooldown=0.3)
    w = await start_bot(world, upstreams, make_router, options=options)
    registry = w.router.service.registry
    fake = w.upstreams["3090"]
    port = fake.port
    await fake.stop()
    await registry.check_all()
    await registry.check_all()  # hysteresis: down after two failed checks
    down = await w.server.wait_for_post(
        lambda p: p["channel_id"] == w.ops.id and "**3090** is down" in p["message"])
    assert down["root_id"] == ""
    await fake.start(port)
    await registry.check_all()  # back up inside the cooldown: held, then announced once
    up = await w.server.wait_for_post(
        lambda p: p["channel_id"] == w.ops.id and "**3090** is back up" in p["message"])
    assert up["create_at"] > down["create_at"]
    assert sum("3090" in m for m in ops_posts(w)) == 2


async def test_flapping_inside_the_cooldown_posts_once(bot_world: BotWorld) -> None:
    w = bot_world
    registry = w.router.service.registry
    fake = w.upstreams["opencode"]
    port = fake.port
    await fake.stop()
    await registry.check_all()
    await registry.check_all()
    await w.server.wait_for_post(lambda p: "**OpenCode** is down" in p["message"])
    for _ in range(3):
        await fake.start(port)
        await registry.check_all()
        await fake.stop()
        await registry.check_all()
        await registry.check_all()
    marker = w.say(w.bob, "@aibot help")
    await w.reply(marker)
    assert [m for m in ops_posts(w) if "OpenCode" in m] == [
        m for m in ops_posts(w) if "**OpenCode** is down" in m]
    assert len(ops_posts(w)) == 1


async def _all_down(w: BotWorld) -> None:
    for fake in w.upstreams.values():
        await fake.stop()
    await w.router.service.registry.check_all()
    await w.router.service.registry.check_all()  # hysteresis: down after two failed checks


async def test_alerts_raised_before_login_are_posted_after_it_bounded(
        world: World, upstreams: dict[str, FakeUpstream], make_router: RouterFactory) -> None:
    await world.server.refuse_connections()  # Mattermost is down when the router starts
    options = dataclasses.replace(TEST_OPTIONS, held_messages=2)
    w = await start_bot(world, upstreams, make_router, options=options, connected=False)
    await _all_down(w)  # three alerts while logged out; two are kept
    assert not w.plugin.logged_in.is_set() and ops_posts(w) == []
    await world.server.accept_connections()
    await w.server.wait_until(lambda: len(ops_posts(w)) == 3 or None, timeout=20)
    notice, *alerts = ops_posts(w)
    assert notice == dropped_notice(1)
    assert all(" is down" in a for a in alerts)
    assert len({a.split("**")[1] for a in alerts}) == 2  # two different backends, newest kept


async def test_alerts_raised_while_mattermost_is_unreachable_are_posted_on_reconnect(
        bot_world: BotWorld) -> None:
    w = bot_world
    await w.server.refuse_connections()  # REST and websocket refused after login
    await _all_down(w)
    assert ops_posts(w) == []
    await w.server.accept_connections()
    await w.server.wait_until(lambda: len(ops_posts(w)) == 3 or None, timeout=20)
    assert {p.split("**")[1] for p in ops_posts(w)} == {"3070", "3090", "OpenCode"}
    assert all(" is down" in p for p in ops_posts(w))


async def test_gaming_change_in_the_ops_channel_is_announced_there_once(
        bot_world: BotWorld) -> None:
    w = bot_world
    post = w.say(w.world.alice, "@aibot gaming mode on", channel=w.ops)
    await w.reply(post)
    assert w.router.service.gaming.enabled
    # A notice would have been spawned inside the change, before the reply: wait for it.
    await eventually(lambda: not any(t.get_name() == "gaming-notice" for t in w.plugin._tasks),
                     what="no gaming notice is being posted")
    gaming = [m for m in ops_posts(w) if "Gaming mode" in m]
    assert len(gaming) == 1, gaming
    # The same change from elsewhere is still announced in the ops channel.
    post = w.say(w.world.alice, "@aibot gaming mode off", channel=w.world.dm)
    await w.reply(post)
    await w.server.wait_for_post(
        lambda p: p["channel_id"] == w.ops.id and "Gaming mode **OFF**" in p["message"])


async def test_gaming_mode_notices(bot_world: BotWorld) -> None:
    w = bot_world
    post = w.say(w.world.alice, "@aibot gaming mode on", channel=w.world.dm)
    await w.reply(post)
    notice = await w.server.wait_for_post(
        lambda p: p["channel_id"] == w.ops.id and "Gaming mode **ON**" in p["message"])
    assert "alice (bot)" in notice["message"]
    # The gaming PC turns it off itself; the health check observes it.
    w.upstreams["3090"].gaming_mode = False
    await w.router.service.registry.check_all()
    observed = await w.server.wait_for_post(
        lambda p: p["channel_id"] == w.ops.id and "Gaming mode **OFF**" in p["message"])
    assert "the gaming PC itself" in observed["message"]


async def test_daily_report_job_and_text(world: World, upstreams: dict[str, FakeUpstream],
                                         make_router: RouterFactory) -> None:
    w = await start_bot(world, upstreams, make_router, DAILY_REPORT_TIME="07:45")
    job = w.router.app[SCHEDULER].get_job("bot-daily-report")
    assert job is not None and isinstance(job.trigger, CronTrigger)
    assert str(job.trigger.fields[5]) == "7" and str(job.trigger.fields[6]) == "45"
    post = w.say(w.bob, "@aibot hi")
    await w.reply(post, "Answered by")
    await w.plugin.daily_report()
    report = await w.server.wait_for_post(
        lambda p: p["channel_id"] == w.ops.id and p["message"].startswith("#### Daily router report"))
    assert "Gaming mode: OFF" in report["message"]
    assert "| 3070 | 1 | 0 |" in report["message"]
