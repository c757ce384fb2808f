"""The PNG chart the bot attaches to `stats` and the daily report: requests and latency per backend.

`render_chart(series, title)` draws two panels from a `router.store.stats.Series` (requests per
bucket, then p50 solid / p95 dashed latency) with Pillow, and returns PNG bytes. It is pure but
CPU-bound: call it through `asyncio.to_thread`. `chart_for(engine, window)` runs the query and the
drawing together, for one worker-thread hop.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from io import BytesIO

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import Engine

from router.store import stats

__all__ = ["chart_for", "render_chart"]

WIDTH, HEIGHT = 960, 600
PALETTE = ["#2f6fed", "#e8590c", "#12b886", "#ae3ec9", "#fab005", "#e03131", "#1098ad", "#5c940d"]
BG, FG, GRID, MUTED = "#ffffff", "#16181d", "#e3e6eb", "#5b6270"
LEFT, RIGHT = 70, 20

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _nice_max(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^n at or above `value` (at least 1)."""
    if value <= 1:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str,
           buckets: Sequence[int], lines: list[tuple[str, Sequence[float | None], bool]],
           font: Font, small: Font) -> None:
    """One chart: `lines` are (colour, values aligned with `buckets`, dashed)."""
    x0, y0, x1, y1 = box
    draw.text((x0 - LEFT + 8, y0 - 26), title, fill=FG, font=font)
    top = _nice_max(max((v for _, vs, _ in lines for v in vs if v is not None), default=0.0))
    for i in range(5):
        y = y1 - (y1 - y0) * i / 4
        draw.line([(x0, y), (x1, y)], fill=GRID, width=1)
        label = f"{top * i / 4:,.0f}" if top >= 4 else f"{top * i / 4:.2f}"
        draw.text((x0 - 8, y), label, fill=MUTED, font=small, anchor="rm")
    n = max(len(buckets) - 1, 1)
    fmt = "%H:%M" if buckets and buckets[-1] - buckets[0] <= 86_400 else "%d %b"
    for i in range(0, len(buckets), max(len(buckets) // 6, 1)):
        x = x0 + (x1 - x0) * i / n
        text = datetime.fromtimestamp(buckets[i], UTC).strftime(fmt)
        draw.text((x, y1 + 6), text, fill=MUTED, font=small, anchor="mt")
    for colour, values, dashed in lines:
        points = [(x0 + (x1 - x0) * i / n, y1 - (y1 - y0) * v / top)
                  for i, v in enumerate(values) if v is not None]
        for a, b in itertools.pairwise(points):
            if dashed:
                _dash(draw, a, b, colour)
            else:
                draw.line([a, b], fill=colour, width=3)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    draw.rectangle([x0, y0, x1, y1], outline=GRID)


def _dash(draw: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float],
          colour: str, on: float = 8, off: float = 5) -> None:
    (ax, ay), (bx, by) = a, b
    length = max(((bx - ax) ** 2 + (by - ay) ** 2) ** 0.5, 1e-9)
    t = 0.0
    while t < length:
        end = min(t + on, length)
        draw.line([(ax + (bx - ax) * t / length, ay + (by - ay) * t / length),
                   (ax + (bx - ax) * end / length, ay + (by - ay) * end / length)],
                  fill=colour, width=3)
        t = end + off


def render_chart(series: stats.Series, title: str) -> bytes:
    """PNG bytes: requests per bucket and p50/p95 latency per backend over `series`. Pure."""
    image = Image.new("RGB", (WIDTH, HEIGHT), BG)
    draw = ImageDraw.Draw(image)
    font, small = _font(18), _font(13)
    draw.text((LEFT - 50, 14), title, fill=FG, font=_font(22))
    names = list(series.backends)
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    x = LEFT - 50
    for name in names:  # legend
        draw.rectangle([x, 50, x + 14, 64], fill=colours[name])
        draw.text((x + 20, 57), name, fill=FG, font=small, anchor="lm")
        x += 40 + int(draw.textlength(name, font=small))
    if not names:
        draw.text((LEFT - 50, 57), "No requests in this window.", fill=MUTED, font=small,
                  anchor="lm")
    minutes = series.bucket_seconds // 60
    per = f"{minutes} min" if minutes < 60 else f"{minutes // 60} h"
    _panel(draw, (LEFT, 110, WIDTH - RIGHT, 300), f"Requests per {per}", series.buckets,
           [(colours[n], [float(v) for v in s.requests], False)
            for n, s in series.backends.items()], font, small)
    _panel(draw, (LEFT, 380, WIDTH - RIGHT, 560), "Latency p50 (solid) / p95 (dashed), ms",
           series.buckets,
           [line for n, s in series.backends.items()
            for line in ((colours[n], s.p50_ms, False), (colours[n], s.p95_ms, True))],
           font, small)
    out = BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def chart_for(engine: Engine, window: str) -> bytes:
    """Query the decision log and draw its chart for `window` ("24h" or "7d"). BLOCKS."""
    series = stats.bucket_stats(engine, window)
    return render_chart(series, f"local-ai-router: requests and latency, last {window}")
