"""Gaming mode through /admin, the gaming PC's switch, /status and /metrics."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from tests.conftest import backend_env, decision_rows

ADMIN = {"Authorization": "Bearer admin-secret"}


async def call(router, method: str, path: str, json=None, headers=None):
    async with aiohttp.ClientSession() as http:
        async with http.request(method, router.url + path, json=json, headers=headers) as r:
            body = await r.read()
            return r.status, (await r.json() if r.content_type == "application/json" else body.decode())


async def test_admin_gaming_mode_flips_the_pc_and_routing(make_router, upstreams):
    router = await make_router({**backend_env(upstreams), "ROUTER_ADMIN_TOKEN": "admin-secret"})
    status, data = await call(router, "POST", "/admin/gaming-mode", {"enabled": True}, ADMIN)
    assert status == 200 and data["enabled"] is True and data["applied"] is True
    assert upstreams["3090"].gaming_posts == [True]
    async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="x") as client:
        gated = await client.chat.completions.with_raw_response.create(
            model="medium", messages=[{"role": "user", "content": "hi"}])
        forced = await client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hi"}], extra_headers={"X-Force-Big": "yes"})
    assert (gated.headers["x-routed-backend"], gated.headers["x-route-reason"]) == ("3070", "gaming_mode")
    assert (forced.headers["x-routed-backend"], forced.headers["x-route-reason"]) == ("3090", "force_big")
    assert upstreams["3090"].headers[-1]["X-Force-Big"] == "true"
    _, status_json = await call(router, "GET", "/status")
    assert status_json["gaming_mode"] is True
    assert {b["name"]: b["gated"] for b in status_json["backends"]} == {"3070": False, "3090": True, "opencode": False}
    status, data = await call(router, "GET", "/admin/gaming-mode", headers=ADMIN)
    assert data == {"enabled": True, "backends": {"3090": True}}
    rows = await decision_rows(router)
    assert [r.gaming_mode for r in rows] == [True, True]
    assert [r.force_big for r in rows] == [False, True]


@pytest.mark.parametrize("headers,status", [(None, 401), ({"Authorization": "Bearer nope"}, 401)])
async def test_admin_requires_token(make_router, upstreams, headers, status):
    router = await make_router({**backend_env(upstreams), "ROUTER_ADMIN_TOKEN": "admin-secret"})
    got, data = await call(router, "POST", "/admin/gaming-mode", {"enabled": True}, headers)
    assert got == status and "admin token" in data["error"]["message"]
    assert upstreams["3090"].gaming_posts == []


async def test_admin_disabled_without_token(make_router, upstreams):
    router = await make_router(backend_env(upstreams))
    got, data = await call(router, "GET", "/admin/gaming-mode", headers=ADMIN)
    assert got == 403 and "ROUTER_ADMIN_TOKEN" in data["error"]["message"]


async def test_admin_rejects_bad_body(make_router, upstreams):
    router = await make_router({**backend_env(upstreams), "ROUTER_ADMIN_TOKEN": "admin-secret"})
    got, data = await call(router, "POST", "/admin/gaming-mode", {"enabled": "sure"}, ADMIN)
    assert got == 400 and data["error"]["param"] == "enabled"


async def test_gaming_mode_read_back_from_pc_and_kept_across_restart(make_router, upstreams):
    upstreams["3090"].gaming_mode = True
    router = await make_router(backend_env(upstreams))
    assert router.service.gaming.enabled is True  # read by the first health check
    await router.stop()
    await upstreams["3090"].stop()  # the PC is off now
    again = await make_router(backend_env(upstreams))
    assert again.service.gaming.enabled is True  # last known state, from the database


async def test_change_while_pc_unreachable_is_pending_then_applied(make_router, upstreams):
    router = await make_router({**backend_env(upstreams), "ROUTER_ADMIN_TOKEN": "admin-secret"})
    pc = upstreams["3090"]
    port = pc.port
    await pc.stop()
    status, data = await call(router, "POST", "/admin/gaming-mode", {"enabled": True}, ADMIN)
    assert status == 200 and data["applied"] is False and "could not be reached" in data["message"]
    assert router.service.gaming.enabled is True
    await pc.start(port)
    await router.service.registry.check_all()
    assert pc.gaming_posts == [True]


async def test_status_and_metrics(make_router, upstreams):
    router = await make_router(backend_env(upstreams))
    await upstreams["opencode"].stop()
    await router.service.registry.check_all()
    await router.service.registry.check_all()
    status, data = await call(router, "GET", "/status")
    backends = {b["name"]: b for b in data["backends"]}
    assert backends["3070"]["healthy"] is True
    assert backends["3070"]["models"] == [{"id": "qwen2.5-7b-instruct-awq", "max_model_len": 32768}]
    assert backends["opencode"]["healthy"] is False and "health check failed" in backends["opencode"]["last_error"]
    assert data["small_token_threshold"] == 2000 and data["medium_token_threshold"] == 16000
    async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="x") as client:
        await client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    status, text = await call(router, "GET", "/metrics")
    assert status == 200
    assert 'router_requests_total{backend="3070",reason="small_request",status="200"} 1.0' in text
    assert 'router_backend_up{backend="opencode"} 0.0' in text
    assert "router_decision_log_queue_depth" in text
    status, data = await call(router, "GET", "/health")
    assert (status, data) == (200, {"status": "ok"})


async def test_gaming_refusal_from_the_pc_is_learned_not_counted_as_down(make_router, upstreams):
    """The router's view was stale: the agent refuses with code gaming_mode; routing adapts at once."""
    router = await make_router(backend_env(upstreams), unhealthy_after=1)
    pc = upstreams["3090"]
    pc.mode, pc.fail_status, pc.fail_code = "status", 503, "gaming_mode"
    async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="x", max_retries=0) as client:
        first = await client.chat.completions.with_raw_response.create(
            model="medium", messages=[{"role": "user", "content": "hi"}])
        second = await client.chat.completions.with_raw_response.create(
            model="medium", messages=[{"role": "user", "content": "hi"}])
    assert first.headers["x-routed-backend"] == "3070"  # fell back after the refusal
    assert router.service.gaming.enabled is True
    assert router.service.registry.get("3090").healthy is True
    assert (second.headers["x-routed-backend"], second.headers["x-route-reason"]) == ("3070", "gaming_mode")
    assert len(pc.requests) == 1  # the gated 3090 is not asked again
