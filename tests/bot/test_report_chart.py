"""The daily report and `stats` carry a PNG chart, uploaded through Mattermost's files API and
attached to the post, and keep their text summary."""

from __future__ import annotations

import time
from io import BytesIO

from PIL import Image

from bot.charts import render_chart
from router.store.stats import BackendSeries, Series
from tests.bot.bot_helpers import start_bot
from tests.bot.mattermost_helpers import World
from tests.conftest import RouterFactory
from tests.fakes.upstream import FakeUpstream

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_MAGIC)
    with Image.open(BytesIO(data)) as image:
        image.verify()
        return image.size


def test_render_chart_draws_each_backend_in_its_colour() -> None:
    now = int(time.time()) // 1800 * 1800
    buckets = [now - 1800 * i for i in range(3, -1, -1)]
    series = Series("24h", 1800, buckets, {
        "3070": BackendSeries([0, 4, 9, 2], [0] * 4, [0] * 4, [0] * 4,
                              [None, 120.0, 200.0, 90.0], [None, 300.0, 450.0, 100.0])})
    data = render_chart(series, "test")
    assert _png_size(data) == (960, 600)
    with Image.open(BytesIO(data)) as image:
        colours = {c for _, c in image.convert("RGB").getcolors(maxcolors=1 << 20) or []}
    assert (0x2F, 0x6F, 0xED) in colours  # the 3070's series was drawn
    empty = render_chart(Series("24h", 1800, buckets, {}), "nothing")
    assert _png_size(empty) == (960, 600)


async def test_daily_report_attaches_a_png_chart(world: World, upstreams: dict[str, FakeUpstream],
                                                 make_router: RouterFactory) -> None:
    w = await start_bot(world, upstreams, make_router)
    post = w.say(w.bob, "@aibot hi")
    await w.reply(post, "Answered by")
    await w.plugin.daily_report()
    report = await w.server.wait_for_post(
        lambda p: p["channel_id"] == w.ops.id
        and p["message"].startswith("#### Daily router report"))
    assert "| 3070 | 1 | 0 |" in report["message"]  # the text summary stays
    assert len(report.get("file_ids", [])) == 1
    uploaded = w.server.files[report["file_ids"][0]]
    assert uploaded["channel_id"] == w.ops.id and uploaded["user_id"] == w.bot.id
    assert uploaded["name"].endswith(".png") and uploaded["mime_type"] == "image/png"
    assert _png_size(uploaded["data"]) == (960, 600)
    assert report["metadata"]["files"][0]["id"] == uploaded["id"]


async def test_stats_command_replies_with_table_and_chart(
        world: World, upstreams: dict[str, FakeUpstream], make_router: RouterFactory) -> None:
    w = await start_bot(world, upstreams, make_router)
    await w.reply(w.say(w.bob, "@aibot hi"), "Answered by")
    asked = w.say(w.bob, "@aibot stats 7d")
    reply = await w.reply(asked, "Requests in the last 7d")
    assert "| 3070 | 1 |" in reply["message"]
    assert len(reply.get("file_ids", [])) == 1
    assert _png_size(w.server.files[reply["file_ids"][0]]["data"]) == (960, 600)
