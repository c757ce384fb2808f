"""Take the dashboard screenshots in docs/screenshots/ (desktop, phone width, dark).

Runs a router against fake inference agents on loopback, seeds a day of decision rows, sends some
live traffic (one request falls back), then photographs /ui in headless Chromium (Debian's
package, installed by scripts/setup_chromium.sh). Usage, from the repository root:

    .venv/bin/python scripts/dashboard_screenshots.py [OUT_DIR]
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx
from aiohttp import web
from PIL import Image
from playwright.async_api import Page, async_playwright

from router.http.api import SERVICE
from router.http.app import create_app
from router.settings import Settings
from tests.conftest import free_port
from tests.dashboard.conftest import CHROMIUM, CHROMIUM_ARGS, GPU
from tests.dashboard.fake_agent import FakeAgent
from tests.fakes.upstream import FakeUpstream


def seed_history(record: Callable[..., None], now: datetime) -> None:
    """A plausible day: mostly small prompts on the 3070, medium ones on the 3090, a few long."""
    rng = random.Random(7)
    for minutes in range(24 * 60, 0, -7):
        at = now - timedelta(minutes=minutes)
        busy = 3 if 9 <= at.hour <= 23 else 1
        for _ in range(rng.randint(0, busy)):
            backend, reason, latency = rng.choices(
                [("3070", "small_request", rng.gauss(900, 250)),
                 ("3090", "medium_request", rng.gauss(2600, 700)),
                 ("opencode", "long_context", rng.gauss(9000, 2500))], [70, 22, 8])[0]
            fell_back = backend == "3070" and rng.random() < 0.04
            record(request_id=f"seed-{minutes}-{rng.randrange(1 << 30):x}", created_at=at,
                source=rng.choice(["api", "api", "api", "bot"]), backend=backend,
                reason=reason, status_code=200, latency_ms=max(latency, 80.0),
                ttft_ms=max(latency * 0.15, 30.0), prompt_tokens=rng.randint(40, 4000),
                completion_tokens=rng.randint(20, 900), fallback_attempts=1 if fell_back else 0,
                candidates=f"{backend},opencode")


async def traffic(url: str, small: FakeUpstream) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async def chat(content: str, model: str = "auto", **headers: str) -> None:
            await client.post("/v1/chat/completions", headers=headers,
                              json={"model": model, "messages": [{"role": "user", "content": content}]})
        await chat("What is a KV cache?")
        await chat("Summarise this design document for me. " * 300)
        small.mode, small.fail_status = "status", 503  # the 3070 fails: the 3090 takes over
        await chat("Why is the sky blue?", **{"X-Request-ID": "fallback-demo"})
        small.mode = "ok"
        await chat("hi", model="big")
        await chat("Write a haiku about GPUs.")


async def shoot(page: Page, path: Path, url: str) -> None:
    await page.goto(f"{url}/ui")
    await page.locator("#live[data-state=live]").wait_for(timeout=10_000)
    await page.locator("#chart-requests canvas").wait_for(timeout=10_000)
    await page.locator('[data-backend="3090"] .state').first.wait_for()
    await page.get_by_label("Prompt").fill("Explain speculative decoding in one paragraph.")
    await page.get_by_role("button", name="Route and send").click()
    await page.get_by_test_id("play-done").wait_for(timeout=10_000)
    if page.viewport_size and page.viewport_size["width"] >= 800:
        await page.locator('tr[data-request-id="fallback-demo"] summary').click()
        await page.evaluate("document.querySelector('.table-wrap').scrollTop = 0")
    png = await page.screenshot(full_page=True)
    # 256 colours without dithering: text and flat UI stay sharp at a third of the size.
    with Image.open(BytesIO(png)) as image:
        image.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"wrote {path}")


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    small = await FakeAgent("qwen2.5-7b-instruct-awq", 32768, gpu={
        **GPU, "name": "NVIDIA GeForce RTX 3070", "memory_total_mb": 8192,
        "memory_used_mb": 6900, "utilization_percent": 12}).start()
    big = await FakeAgent("qwen2.5-14b-instruct-awq", 32768, gaming_mode=False,
                          extra_models=("qwen2.5-coder-14b",), gpu=GPU).start()
    opencode = await FakeUpstream("glm-4.6", None).start()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        settings = Settings.from_env({
            "DATABASE_URL": f"sqlite:///{tmp}/router.db", "LOCAL_3070_URL": small.url,
            "GAMING_PC_URL": big.url, "OPENCODE_URL": opencode.url, "OPENCODE_API": "openai",
            "HEALTH_CHECK_INTERVAL": "3600", "ROUTER_ADMIN_TOKEN": "demo"})
        app = create_app(settings)
        runner = web.AppRunner(app, shutdown_timeout=2)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}"
        try:
            service = app[SERVICE]
            seed_history(service.decisions.record, datetime.now(UTC))
            await traffic(url, small)
            await service.decisions.flush()
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for name, width, dark in (("dashboard-desktop", 1280, False),
                                          ("dashboard-phone", 375, False),
                                          ("dashboard-dark", 1280, True)):
                    context = await browser.new_context(
                        viewport={"width": width, "height": 900}, device_scale_factor=1,
                        color_scheme="dark" if dark else "light", is_mobile=width < 500)
                    await shoot(await context.new_page(), out / f"{name}.png", url)
                    await context.close()
                await browser.close()
        finally:
            await runner.cleanup()
            for fake in (small, big, opencode):
                await fake.stop()


if __name__ == "__main__":
    subprocess.run(["sh", str(ROOT / "scripts" / "setup_chromium.sh")], check=True)
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"))
