"""The dashboard in real headless Chromium: local-only loading, live backends and decisions,
gaming toggle with and without the admin token, playground streaming, charts, API-key prompt."""

from __future__ import annotations

import httpx
from playwright.async_api import Browser, expect

from tests.conftest import RouterFactory, backend_env
from tests.dashboard.conftest import open_page
from tests.dashboard.fake_agent import FakeAgent
from tests.fakes.upstream import FakeUpstream

ADMIN = "admin-secret"


async def test_page_loads_from_the_router_only_and_shows_backends(
        make_router: RouterFactory, agents: dict[str, FakeUpstream], browser: Browser) -> None:
    router = await make_router(backend_env(agents))
    watched = await open_page(browser, f"{router.url}/ui")
    page = watched.page
    await expect(page.locator("#live")).to_have_text("live", timeout=10_000)
    for name, model in (("3070", "qwen2.5-7b-instruct-awq"), ("3090", "qwen2.5-14b-instruct-awq"),
                        ("opencode", "glm-4.6")):
        card = page.locator(f'[data-backend="{name}"]')
        await expect(card).to_contain_text(model)
        await expect(card.locator(".badge")).to_have_text("Available")
    # Agent details: model states and the GPU from the agent's own /status.
    card3090 = page.locator('[data-backend="3090"]')
    await expect(card3090).to_contain_text("qwen2.5-coder-14b")
    await expect(card3090).to_contain_text("NVIDIA GeForce RTX 3090")
    await expect(card3090.locator(".state.ready")).to_have_text("ready")
    await expect(page.locator("#gaming-state")).to_have_text("OFF")
    await expect(page.locator("#chart-requests")).to_contain_text("No requests")
    assert watched.requests, "the page made no request at all"
    outside = [u for u in watched.requests
               if not u.startswith((router.url + "/", "data:"))]
    assert outside == [], f"requests left the router: {outside}"
    assert any(u.endswith("/ui/static/vendor/uplot/uPlot.iife.min.js") for u in watched.requests)
    assert watched.errors == []


async def test_backend_going_down_shows_without_reload(
        make_router: RouterFactory, agents: dict[str, FakeUpstream], browser: Browser) -> None:
    router = await make_router(backend_env(agents), unhealthy_after=1)
    page = (await open_page(browser, f"{router.url}/ui")).page
    badge = page.locator('[data-backend="3070"] .badge')
    await expect(badge).to_have_text("Available", timeout=10_000)
    await expect(page.locator("#live")).to_have_text("live")
    await agents["3070"].stop()
    await router.service.registry.check_all()
    assert not router.service.registry.states["3070"].healthy
    await expect(badge).to_have_text("Down", timeout=5_000)
    await expect(page.locator('[data-backend="3090"] .badge')).to_have_text("Available")


async def test_a_decision_appears_within_two_seconds(
        make_router: RouterFactory, agents: dict[str, FakeUpstream], browser: Browser) -> None:
    router = await make_router(backend_env(agents))
    page = (await open_page(browser, f"{router.url}/ui")).page
    await expect(page.locator("#live")).to_have_text("live", timeout=10_000)
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{router.url}/v1/chat/completions",
                                   headers={"X-Request-ID": "dash-live-1"},
                                   json={"model": "3090", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200
    row = page.locator('tr[data-request-id="dash-live-1"]')
    await expect(row).to_be_visible(timeout=2_000)
    await expect(row).to_contain_text("3090")
    await expect(row).to_contain_text("explicit_model")
    await expect(row.locator("td.status")).to_have_text("200")
    # The details name the candidates; the filters hide and show the row.
    await row.locator("summary").click()
    await expect(row).to_contain_text("Candidates")
    await page.select_option("#filter-backend", "3070")
    await expect(row).to_have_count(0)
    await page.select_option("#filter-backend", "3090")
    await page.select_option("#filter-status", "error")
    await expect(row).to_have_count(0)
    await page.select_option("#filter-status", "ok")
    await page.select_option("#filter-source", "api")
    await expect(row).to_be_visible()


async def test_gaming_toggle_needs_the_admin_token(
        make_router: RouterFactory, agents: dict[str, FakeUpstream], browser: Browser) -> None:
    router = await make_router({**backend_env(agents), "ROUTER_ADMIN_TOKEN": ADMIN})
    page = (await open_page(browser, f"{router.url}/ui")).page
    toggle = page.get_by_role("switch", name="Gaming mode on", exact=True)
    await expect(page.locator("#gaming-state")).to_have_text("OFF", timeout=10_000)
    await toggle.click()
    await expect(page.locator("#admin-message")).to_contain_text("Refused")
    await expect(toggle).not_to_be_checked()
    assert router.service.gaming.enabled is False
    await page.get_by_role("button", name="Admin token").click()
    await page.get_by_role("textbox", name="Admin token").fill(ADMIN)
    await page.get_by_role("button", name="Save").click()
    await toggle.click()
    await expect(page.locator("#gaming-state")).to_have_text("ON")
    await expect(toggle).to_be_checked()
    assert router.service.gaming.enabled is True
    assert agents["3090"].gaming_posts == [True]
    await expect(page.locator('[data-backend="3090"] .badge')).to_have_text("Gated (force-big only)")
    # Each gaming backend has its own switch in its card.
    card_switch = page.get_by_role("switch", name="Gaming mode on 3090")
    await expect(card_switch).to_be_checked()
    await card_switch.click()
    await expect(page.locator('[data-backend="3090"] .badge')).to_have_text("Available")
    assert router.service.gaming.states == {"3090": False}
    assert agents["3090"].gaming_posts == [True, False]
    await expect(page.locator("#gaming-state")).to_have_text("OFF")


async def test_playground_routes_then_streams_the_answer(
        make_router: RouterFactory, agents: dict[str, FakeUpstream], browser: Browser) -> None:
    router = await make_router(backend_env(agents))
    page = (await open_page(browser, f"{router.url}/ui")).page
    await page.get_by_label("Prompt").fill("Say hello")
    await page.get_by_role("button", name="Route and send").click()
    await expect(page.get_by_test_id("route-backend")).to_have_text("3070")
    await expect(page.locator("#play-route")).to_contain_text("small_request")
    await expect(page.locator("#play-answer")).to_have_text("tok0 tok1 tok2 tok3 tok4 ")
    await expect(page.get_by_test_id("play-done")).to_contain_text("Answered by 3070")
    sent = agents["3070"].requests[-1]
    assert sent["stream"] is True
    assert sent["messages"] == [{"role": "user", "content": "Say hello"}]


async def test_charts_draw_the_traffic(
        make_router: RouterFactory, agents: dict[str, FakeUpstream], browser: Browser) -> None:
    router = await make_router(backend_env(agents))
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            answer = await client.post(f"{router.url}/v1/chat/completions",
                                       json={"messages": [{"role": "user", "content": "hi"}]})
            assert answer.status_code == 200
    await router.service.decisions.flush()
    page = (await open_page(browser, f"{router.url}/ui")).page
    canvas = page.locator("#chart-requests canvas")
    await expect(canvas).to_have_count(1, timeout=10_000)
    await expect(page.locator("#chart-requests .u-legend")).to_contain_text("3070")
    # The 3070 series is drawn in its palette colour (#2f6fed): count pixels close to it.
    drawn = await page.evaluate("""() => {
        const c = document.querySelector('#chart-requests canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
            if (Math.abs(d[i] - 0x2f) < 40 && Math.abs(d[i + 1] - 0x6f) < 40
                && Math.abs(d[i + 2] - 0xed) < 40 && d[i + 3] > 200) n++;
        }
        return n;
    }""")
    assert drawn > 20, f"only {drawn} pixels of the 3070 series were drawn"
    await page.get_by_label("7 d").check()
    await expect(page.locator("#chart-requests canvas")).to_have_count(1)


async def test_api_key_prompt_when_keys_are_set(
        make_router: RouterFactory, agents: dict[str, FakeUpstream], browser: Browser) -> None:
    router = await make_router({**backend_env(agents), "ROUTER_API_KEYS": "owner:key-123"})
    page = (await open_page(browser, f"{router.url}/ui")).page
    dialog = page.locator("#key-dialog")
    await expect(dialog).to_be_visible(timeout=10_000)
    await expect(page.locator('[data-backend="3070"]')).to_have_count(0)
    await page.get_by_role("textbox", name="API key").fill("wrong")
    await page.get_by_role("button", name="Use key").click()
    await expect(page.locator("#key-error")).to_contain_text("refused")
    await page.get_by_role("textbox", name="API key").fill("key-123")
    await page.get_by_role("button", name="Use key").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator('[data-backend="3070"] .badge')).to_have_text("Available")
    await expect(page.locator("#live")).to_have_text("live")


async def test_phone_width_keyboard_and_labels(
        make_router: RouterFactory, agents: dict[str, FakeUpstream], browser: Browser) -> None:
    router = await make_router({**backend_env(agents), "ROUTER_ADMIN_TOKEN": ADMIN})
    watched = await open_page(browser, f"{router.url}/ui", width=375, height=740, dark=True)
    page = watched.page
    await expect(page.locator('[data-backend="3090"] .badge')).to_have_text("Available",
                                                                           timeout=10_000)
    await expect(page.locator("#chart-requests")).to_contain_text("No requests")
    # Nothing wider than the phone: the page itself never scrolls sideways.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    # Every control has an accessible name.
    unnamed = await page.evaluate("""() => [...document.querySelectorAll(
            'button, input, select, textarea')].filter(e => e.offsetParent !== null).filter(e =>
        !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
        && !e.textContent.trim()).map(e => e.outerHTML)""")
    assert unnamed == []
    # The keyboard reaches the gaming switch and toggles it (refused here: no token yet).
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to the decision feed")).to_be_focused()
    toggle = page.get_by_role("switch", name="Gaming mode on", exact=True)
    for _ in range(10):
        if await toggle.evaluate("e => e === document.activeElement"):
            break
        await page.keyboard.press("Tab")
    await expect(toggle).to_be_focused()
    await page.keyboard.press("Space")
    await expect(page.locator("#admin-message")).to_contain_text("Refused")
    # Dark mode follows the system.
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(16, 18, 22)"


async def test_load_and_stop_models_through_the_agent(
        make_router: RouterFactory, agents: dict[str, FakeUpstream], browser: Browser) -> None:
    router = await make_router({**backend_env(agents), "ROUTER_ADMIN_TOKEN": ADMIN})
    page = (await open_page(browser, f"{router.url}/ui")).page
    card = page.locator('[data-backend="3090"]')
    await expect(card.locator(".state")).to_have_text(["ready", "stopped"], timeout=10_000)
    await page.get_by_role("button", name="Admin token").click()
    await page.get_by_role("textbox", name="Admin token").fill(ADMIN)
    await page.get_by_role("button", name="Save").click()
    await card.get_by_label("Model to load on 3090").select_option("qwen2.5-coder-14b")
    await card.get_by_role("button", name="Load").click()
    await expect(card.locator('[data-note="3090:agent"]')).to_contain_text(
        "qwen2.5-coder-14b is loaded and ready on 3090")
    agent = agents["3090"]
    assert isinstance(agent, FakeAgent) and agent.loads == ["qwen2.5-coder-14b"]
    await expect(card.locator(".state")).to_have_text(["ready", "ready"])
    await card.get_by_role("button", name="Stop all").click()
    await expect(card.locator('[data-note="3090:agent"]')).to_contain_text("Stopped every model")
    await expect(card.locator(".state")).to_have_text(["stopped", "stopped"])
    assert agent.stops == 1
