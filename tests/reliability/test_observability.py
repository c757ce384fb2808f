"""Every log line emitted while serving a request carries its id; /metrics exports every
family the dashboard and alerts rely on, with the right labels, after traffic."""

from __future__ import annotations

import logging

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import backend_env, decision_rows
from tests.reliability.conftest import HELLO

LINE = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")


async def test_every_log_line_of_a_request_carries_its_id(make_router, upstreams, caplog):
    router = await make_router(backend_env(upstreams), unhealthy_after=1)
    caplog.set_level(logging.DEBUG)
    upstreams["3070"].mode = "status"  # fallback + a backend-down transition, logged mid-request
    upstreams["3090"].mode = "die_mid_stream"
    client = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="x", max_retries=0)
    async with client, httpx.AsyncClient() as http:
        caplog.clear()
        stream = await client.chat.completions.create(
            model="auto", messages=HELLO, stream=True, extra_headers={"X-Request-ID": "obs-fallback"})
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
        records = [r for r in caplog.records if r.name.startswith("router")]
        assert len(records) >= 2  # the fallback warning and the 3070-down transition
        for record in records:
            assert record.request_id == "obs-fallback", (record.name, record.getMessage())
            assert "[obs-fallback]" in LINE.format(record)

        # a later request on the same connection without an id gets a new one, not the old one
        caplog.clear()
        for fake in upstreams.values():
            fake.mode = "status"
        response = await http.post(router.url + "/v1/chat/completions", json={"messages": HELLO})
        assert response.status_code == 503
        new_id = response.headers["X-Request-ID"]
        assert new_id != "obs-fallback"
        records = [r for r in caplog.records if r.name.startswith("router")]
        assert records and all(r.request_id == new_id for r in records)
    rows = await decision_rows(router)
    assert [r.request_id for r in rows] == ["obs-fallback", new_id]

    caplog.clear()  # outside any request (the health checker) the id is "-"
    await router.service.registry.check_all()
    assert all(r.request_id == "-" for r in caplog.records if r.name.startswith("router"))


def _families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


async def test_metrics_cover_requests_latency_tokens_fallbacks_health_and_the_log(make_router, upstreams):
    router = await make_router({**backend_env(upstreams), "ROUTER_ADMIN_TOKEN": "adm"})
    client = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="x", max_retries=0)
    async with client, httpx.AsyncClient() as http:
        await client.chat.completions.create(model="auto", messages=HELLO)
        stream = await client.chat.completions.create(
            model="auto", messages=HELLO, stream=True, stream_options={"include_usage": True})
        [c async for c in stream]
        upstreams["3070"].mode = "status"
        await client.chat.completions.create(model="auto", messages=HELLO)  # falls back to 3090
        assert (await http.post(router.url + "/v1/chat/completions", content=b"{")).status_code == 400
        gaming = await http.post(router.url + "/admin/gaming-mode", json={"enabled": True},
                                 headers={"Authorization": "Bearer adm"})
        assert gaming.status_code == 200
        text = (await http.get(router.url + "/metrics")).text
    families = _families(text)
    requests = {(s.labels["backend"], s.labels["reason"], s.labels["status"]): s.value
                for s in families["router_requests"]}
    assert requests[("3070", "small_request", "200")] == 2
    assert requests[("3090", "small_request", "200")] == 1
    for histogram in ("router_request_latency_seconds", "router_time_to_first_token_seconds"):
        counts = {s.labels["backend"]: s.value for s in families[histogram]
                  if s.name.endswith("_count")}
        assert counts == {"3070": 2, "3090": 1}, histogram
        assert any(s.name.endswith("_bucket") and s.labels["le"] == "0.5" for s in families[histogram])
    tokens = {(s.labels["backend"], s.labels["kind"]): s.value for s in families["router_tokens"]}
    assert tokens[("3070", "prompt")] == 22 and tokens[("3070", "completion")] == 10
    assert {s.labels["backend"]: s.value for s in families["router_fallbacks"]} == {"3070": 1}
    assert {s.labels["status"]: s.value for s in families["router_rejected"]} == {"400": 1}
    up = {s.labels["backend"]: s.value for s in families["router_backend_up"]}
    assert up == {"3070": 1.0, "3090": 1.0, "opencode": 1.0}
    assert families["router_gaming_mode"][0].value == 1
    for gauge in ("router_decision_log_queue_depth", "router_decision_log_dropped_total",
                  "router_decision_log_write_errors_total"):
        assert gauge in families and families[gauge][0].value >= 0, gauge
    # every metric the dashboard and alerts name is exported: tests/test_deploy.py checks names
