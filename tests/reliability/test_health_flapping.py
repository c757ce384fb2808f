"""A flapping backend under the health checker: routing follows health with hysteresis, and each
up/down transition reaches the listeners (the bot's alerts) exactly once."""

from __future__ import annotations

import aiohttp

from tests.conftest import backend_env


async def _routed_to(router) -> str:
    async with aiohttp.ClientSession() as http, http.post(router.url + "/v1/route", json={
            "model": "auto", "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status == 200
        return (await r.json())["backend"]


async def test_down_after_n_failures_up_after_m_successes_alerts_once(make_router, upstreams):
    router = await make_router(backend_env(upstreams), unhealthy_after=3, healthy_after=2)
    registry = router.service.registry
    alerts: list[tuple[str, bool]] = []

    async def listener(name: str, healthy: bool, _error: str | None) -> None:
        alerts.append((name, healthy))

    registry.add_listener(listener)
    small = upstreams["3070"]

    async def check(healthy: bool) -> tuple[bool, str]:
        small.healthy = healthy
        await registry.check_all()  # waits for the listeners it triggered
        return registry.get("3070").healthy, await _routed_to(router)

    assert await _routed_to(router) == "3070"
    # two failures are below UNHEALTHY_AFTER=3: still routed to the 3070
    assert await check(False) == (True, "3070")
    assert await check(False) == (True, "3070")
    assert alerts == []
    assert await check(False) == (False, "3090")  # third failure: down, small requests spill
    assert alerts == [("3070", False)]
    for _ in range(5):  # staying down is not news
        assert await check(False) == (False, "3090")
    # one success is below HEALTHY_AFTER=2; a failure in between restarts the count
    assert await check(True) == (False, "3090")
    assert await check(False) == (False, "3090")
    assert await check(True) == (False, "3090")
    assert alerts == [("3070", False)]
    assert await check(True) == (True, "3070")
    assert alerts == [("3070", False), ("3070", True)]
    assert await check(True) == (True, "3070")
    assert alerts == [("3070", False), ("3070", True)]


async def test_fast_flapping_never_crosses_the_threshold(make_router, upstreams):
    router = await make_router(backend_env(upstreams), unhealthy_after=2, healthy_after=2)
    registry = router.service.registry
    alerts: list[tuple[str, bool]] = []

    async def listener(name: str, healthy: bool, _error: str | None) -> None:
        alerts.append((name, healthy))

    registry.add_listener(listener)
    for i in range(20):  # up, down, up, down ...: never two failures in a row
        upstreams["3090"].healthy = i % 2 == 0
        await registry.check_all()
        assert registry.get("3090").healthy is True
    assert alerts == []


async def test_backend_that_vanishes_and_returns_alerts_once_each_way(make_router, upstreams):
    """A real outage (the port closes) rather than an HTTP 503, seen through /status too."""
    router = await make_router(backend_env(upstreams), unhealthy_after=2, healthy_after=1)
    registry = router.service.registry
    alerts: list[tuple[str, bool, str | None]] = []

    async def listener(name: str, healthy: bool, error: str | None) -> None:
        alerts.append((name, healthy, error))

    registry.add_listener(listener)
    opencode = upstreams["opencode"]
    port = opencode.port
    await opencode.stop()
    for _ in range(4):
        await registry.check_all()
    [(name, healthy, error)] = alerts
    assert (name, healthy) == ("opencode", False) and "health check failed" in error
    async with aiohttp.ClientSession() as http, http.get(router.url + "/status") as r:
        backends = {b["name"]: b for b in (await r.json())["backends"]}
    assert backends["opencode"]["healthy"] is False and backends["opencode"]["last_error"]
    await opencode.start(port)
    await registry.check_all()
    await registry.check_all()
    assert alerts[1:] == [("opencode", True, None)]
