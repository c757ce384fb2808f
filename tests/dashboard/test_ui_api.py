"""The dashboard's server side: live feed, stats buckets, decisions, agent cache, auth, admin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import pytest

from router.store import db
from router.store.decision_log import DecisionLog, DecisionRow
from router.store.stats import bucket_stats
from tests.conftest import RouterFactory, RunningRouter, backend_env
from tests.dashboard.fake_agent import FakeAgent
from tests.fakes.upstream import FakeUpstream
from tests.helpers import eventually

ADMIN = "admin-secret"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


# -- the decision log's subscriber hook -----------------------------------------------------------

async def test_subscribers_get_rows_and_a_slow_one_loses_rows_without_blocking(tmp_path: Path) -> None:
    log = DecisionLog(db.make_engine(f"sqlite:///{tmp_path}/d.db"))
    log.record(DecisionRow(request_id="before"))  # nobody listening: nothing fans out
    fast, slow = log.subscribe(), log.subscribe(max_queue=2)
    for i in range(4):
        log.record(DecisionRow(request_id=f"r{i}"))
    assert [fast.get_nowait()["request_id"] for _ in range(4)] == ["r0", "r1", "r2", "r3"]
    assert [slow.get_nowait()["request_id"] for _ in range(2)] == ["r0", "r1"]
    assert log.subscriber_drops == 2
    log.unsubscribe(fast)
    log.unsubscribe(slow)
    log.record(DecisionRow(request_id="after"))
    assert fast.empty() and slow.empty()
    assert log.depth == 6  # every row still went to the writer's queue


# -- stats buckets (SQL) --------------------------------------------------------------------------

async def test_bucket_stats_counts_and_percentiles(make_router: RouterFactory) -> None:
    router = await make_router()
    now = datetime(2026, 12, 6, 12, 10, tzinfo=UTC)
    at = datetime(2026, 12, 6, 11, 40, tzinfo=UTC)  # the 11:30 bucket
    def record(**columns: object) -> None:
        router.service.decisions.record(DecisionRow(**columns))  # type: ignore[arg-type]

    for i in range(1, 101):  # latencies 1..100 ms
        record(request_id=f"a{i}", backend="3070", status_code=200, latency_ms=float(i),
               prompt_tokens=10, completion_tokens=5, fallback_attempts=1 if i <= 3 else 0,
               created_at=at)
    record(request_id="err", backend="3070", status_code=502, latency_ms=9999.0, created_at=at)
    record(request_id="old", backend="3070", status_code=200, latency_ms=1.0,
           created_at=datetime(2026, 12, 4, tzinfo=UTC))  # outside 24 h
    record(request_id="none", backend=None, status_code=503, created_at=now)
    await router.service.decisions.flush()
    series = await asyncio.to_thread(bucket_stats, router.service.engine, "24h", now.timestamp())
    assert series.bucket_seconds == 1800 and len(series.buckets) == 48
    assert series.buckets[-1] == int(datetime(2026, 12, 6, 12, 0, tzinfo=UTC).timestamp())
    i = series.buckets.index(int(datetime(2026, 12, 6, 11, 30, tzinfo=UTC).timestamp()))
    s = series.backends["3070"]
    assert (s.requests[i], s.tokens[i], s.fallbacks[i], s.errors[i]) == (101, 1500, 3, 1)
    assert (s.p50_ms[i], s.p95_ms[i]) == (50.0, 95.0)  # the 502 is not a latency sample
    assert sum(s.requests) == 101 and s.p50_ms[i - 1] is None
    assert series.backends["none"].requests[-1] == 1
    week = await asyncio.to_thread(bucket_stats, router.service.engine, "7d", now.timestamp())
    assert week.bucket_seconds == 14400 and sum(week.backends["3070"].requests) == 102


# -- HTTP -----------------------------------------------------------------------------------------

@pytest.fixture
async def agent_router(make_router: RouterFactory, upstreams: dict[str, FakeUpstream],
                       ) -> AsyncIterator[tuple[RunningRouter, FakeAgent]]:
    agent = await FakeAgent("qwen2.5-14b-instruct-awq", gaming_mode=False,
                            extra_models=("coder-14b",)).start()
    env = {**backend_env(upstreams, "3070", "opencode"), "GAMING_PC_URL": agent.url,
           "ROUTER_ADMIN_TOKEN": ADMIN}
    yield await make_router(env), agent
    await agent.stop()


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    buffer = b""
    async for chunk in response.content.iter_any():
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            fields = dict(line.split(b": ", 1) for line in block.split(b"\n")
                          if line and not line.startswith(b":"))
            yield fields[b"event"].decode(), orjson.loads(fields[b"data"])


async def test_live_feed_streams_decisions_and_backend_changes(
        agent_router: tuple[RunningRouter, FakeAgent]) -> None:
    router, agent = agent_router
    decisions = router.service.decisions
    assert decisions._subscribers == []
    async with aiohttp.ClientSession() as session, session.get(f"{router.url}/ui/events") as feed:
        assert feed.headers["Content-Type"] == "text/event-stream"
        events = _events(feed)
        assert (await asyncio.wait_for(anext(events), 5)) == ("hello", {})
        assert len(decisions._subscribers) == 1
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{router.url}/v1/chat/completions", json=CHAT,
                                       headers={"X-Request-ID": "feed-1"})
        assert answer.status_code == 200
        kind, row = await asyncio.wait_for(anext(events), 5)
        assert kind == "decision" and row["request_id"] == "feed-1"
        assert row["backend"] == "3070" and row["status_code"] == 200
        assert row["candidates"][0] == "3070" and isinstance(row["skipped"], dict)
        assert row["created_at"].endswith("Z") and row["prompt_tokens"] == 11
        await agent.stop()
        for _ in range(2):  # two failed checks mark it down
            await router.service.registry.check_all()
        kind, change = await asyncio.wait_for(anext(events), 5)
        assert kind == "backend" and change["name"] == "3090" and change["healthy"] is False
    # The handler notices the disconnect and unsubscribes: no work for the data plane.
    await eventually(lambda: not decisions._subscribers, timeout=10, what="unsubscribed")


async def test_decisions_and_stats_endpoints(agent_router: tuple[RunningRouter, FakeAgent]) -> None:
    router, _ = agent_router
    async with httpx.AsyncClient(base_url=router.url) as client:
        for i in range(3):
            assert (await client.post("/v1/chat/completions", json=CHAT,
                                      headers={"X-Request-ID": f"d{i}"})).status_code == 200
        await router.service.decisions.flush()
        rows = (await client.get("/ui/api/decisions", params={"limit": 2})).json()["data"]
        assert [r["request_id"] for r in rows] == ["d2", "d1"]
        assert rows[0]["candidates"][0] == "3070" and rows[0]["failures"] == []
        assert rows[0]["created_at"].endswith("Z") and rows[0]["stream"] is False
        stats = (await client.get("/ui/api/stats", params={"window": "24h"})).json()
        assert sum(stats["backends"]["3070"]["requests"]) == 3
        assert len(stats["buckets"]) == len(stats["backends"]["3070"]["p95_ms"])
        bad = await client.get("/ui/api/stats", params={"window": "30d"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "window"
        bad = await client.get("/ui/api/decisions", params={"limit": "lots"})
        assert bad.status_code == 400 and "limit" in bad.json()["error"]["message"]


async def test_agent_status_is_cached_and_never_fetched_by_the_data_plane(
        agent_router: tuple[RunningRouter, FakeAgent]) -> None:
    router, agent = agent_router
    checks = agent.status_calls  # the health checks read gaming mode from /status
    async with httpx.AsyncClient(base_url=router.url) as client:
        for _ in range(3):
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        assert agent.status_calls == checks
        pages = await asyncio.gather(*(client.get("/ui/api/status") for _ in range(5)))
    assert agent.status_calls == checks + 1
    body = pages[0].json()
    by_name = {b["name"]: b for b in body["backends"]}
    assert by_name["3090"]["agent"]["models"] == [
        {"id": "qwen2.5-14b-instruct-awq", "state": "ready"}, {"id": "coder-14b", "state": "stopped"}]
    assert by_name["opencode"]["agent"] is None
    assert by_name["3090"]["context_window"] == 32768
    assert body["admin_enabled"] is True and body["api_key_required"] is False


async def test_admin_model_control_needs_the_token(agent_router: tuple[RunningRouter, FakeAgent]) -> None:
    router, agent = agent_router
    async with httpx.AsyncClient(base_url=router.url) as client:
        refused = await client.post("/admin/backends/3090/load", json={"model": "coder-14b"})
        assert refused.status_code == 401 and agent.loads == []
        auth = {"Authorization": f"Bearer {ADMIN}"}
        loaded = await client.post("/admin/backends/3090/load", json={"model": "coder-14b"},
                                   headers=auth)
        assert loaded.status_code == 200, loaded.text
        assert agent.loads == ["coder-14b"] and "coder-14b" in loaded.json()["message"]
        stopped = await client.post("/admin/backends/3090/stop", headers=auth)
        assert stopped.status_code == 200 and agent.stops == 1
        missing = await client.post("/admin/backends/nope/stop", headers=auth)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "backend_not_found"
        opencode = await client.post("/admin/backends/opencode/stop", headers=auth)
        assert opencode.status_code == 409 and "not an inference agent" in opencode.text
        unknown = await client.post("/admin/backends/3090/load", json={"model": "nope"}, headers=auth)
        assert unknown.status_code == 502 and "nope" in unknown.json()["error"]["message"]


async def test_api_keys_guard_the_dashboard_api_but_not_the_page(
        make_router: RouterFactory, upstreams: dict[str, FakeUpstream]) -> None:
    router = await make_router({**backend_env(upstreams), "ROUTER_API_KEYS": "owner:key-1"})
    async with httpx.AsyncClient(base_url=router.url) as client:
        page = await client.get("/ui")
        assert page.status_code == 200 and "<title>local-ai-router</title>" in page.text
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        script = await client.get("/ui/static/app.js")
        assert script.status_code == 200 and "readEvents" in script.text
        licence = await client.get("/ui/static/vendor/uplot/LICENSE")
        assert licence.status_code == 200 and "MIT" in licence.text
        for outside in ("/ui/static/..%2Fui.py", "/ui/static/%2E%2E/ui.py", "/ui/static/vendor"):
            assert (await client.get(outside)).status_code == 404, outside
        for path in ("/ui/api/status", "/ui/api/decisions", "/ui/api/stats", "/ui/events"):
            denied = await client.get(path)
            assert denied.status_code == 401, path
            assert denied.json()["error"]["code"] == "invalid_api_key"
        allowed = await client.get("/ui/api/status", headers={"Authorization": "Bearer key-1"})
        assert allowed.status_code == 200 and allowed.json()["api_key_required"] is True
