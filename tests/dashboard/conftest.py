"""Fixtures for the dashboard tier: fake agents, and real headless Chromium through Playwright.

Chromium is Debian's package, installed by scripts/setup_chromium.sh when missing (the session
fixture runs it, like tests/e2e's venv builders); Playwright drives it with `executable_path`,
never `playwright install`. Every page records each request URL and every console error.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Request, async_playwright

from tests.dashboard.fake_agent import FakeAgent
from tests.fakes.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
GPU = {"index": 0, "name": "NVIDIA GeForce RTX 3090", "memory_total_mb": 24576,
       "memory_used_mb": 18210, "memory_free_mb": 6366, "utilization_percent": 63}


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary, installed with apt first if it is missing (root only)."""
    subprocess.run(["sh", str(ROOT / "scripts" / "setup_chromium.sh")], check=True, timeout=1200)
    return CHROMIUM


@pytest.fixture
async def agents() -> AsyncIterator[dict[str, FakeUpstream]]:
    """The seed's three backends: two inference agents (with models and a GPU) and opencode."""
    fakes: dict[str, FakeUpstream] = {
        "3070": await FakeAgent("qwen2.5-7b-instruct-awq", 32768,
                                gpu={**GPU, "name": "NVIDIA GeForce RTX 3070",
                                     "memory_total_mb": 8192, "memory_used_mb": 6900,
                                     "utilization_percent": 12}).start(),
        "3090": await FakeAgent("qwen2.5-14b-instruct-awq", 32768, gaming_mode=False,
                                extra_models=("qwen2.5-coder-14b",), gpu=GPU).start(),
        "opencode": await FakeUpstream("glm-4.6", None).start(),
    }
    yield fakes
    for fake in fakes.values():
        await fake.stop()


@dataclass
class Watched:
    """A page with every request URL and console error it produced."""

    page: Page
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, headless=True,
                                                    args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def open_page(browser: Browser, url: str, *, width: int = 1280, height: int = 900,
                    dark: bool = False) -> Watched:
    context = await browser.new_context(viewport={"width": width, "height": height},
                                        color_scheme="dark" if dark else "light")
    page = await context.new_page()
    watched = Watched(page)

    def on_request(request: Request) -> None:
        watched.requests.append(request.url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.errors.append(message.text)

    page.on("request", on_request)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: watched.errors.append(f"page error: {exc}"))
    await page.goto(url)
    return watched
