"""The decision log when SQLite is slow (locked) or full, and a graceful SIGTERM of `serve`.

Requests are served regardless; rows wait in the queue and are written once the database
recovers; what cannot be written is counted in the metrics and logged.

"Full" is SQLite's own `PRAGMA max_page_count` set on the writer's connections: SQLite then
fails inserts with SQLITE_FULL ("database or disk is full"), the same error a full disk gives,
without needing root for a tiny filesystem.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from router.store import db
from tests.conftest import backend_env, decision_rows
from tests.helpers import eventually
from tests.reliability.conftest import HELLO, serve


def _metric(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not in /metrics")


async def _metrics(router) -> str:
    async with aiohttp.ClientSession() as http, http.get(router.url + "/metrics") as r:
        return await r.text()


async def _requests(router, n: int, prefix: str) -> None:
    """Send n chat requests concurrently; each must answer 200."""
    async with aiohttp.ClientSession() as http:
        async def one(i: int) -> None:
            async with http.post(router.url + "/v1/chat/completions",
                                 json={"messages": HELLO, "stream": i % 2 == 0},
                                 headers={"X-Request-ID": f"{prefix}-{i}"}) as r:
                await r.read()
                assert r.status == 200
        await asyncio.gather(*(one(i) for i in range(n)))


@contextmanager
def disk_full(router) -> Iterator[None]:
    """Cap the database at its current size on every new connection of the router's engine."""
    engine = router.service.engine
    path = db.sqlite_path(router.settings.database_url)

    def cap(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(engine, "connect", cap)
    engine.dispose()  # pooled connections were opened without the cap
    try:
        yield
    finally:
        event.remove(engine, "connect", cap)
        engine.dispose()
    assert path.exists()


async def test_full_database_delays_rows_serves_requests_and_recovers(make_router, upstreams, caplog):
    router = await make_router(backend_env(upstreams))
    log = router.service.decisions
    with disk_full(router):
        await _requests(router, 40, "full")
        # Every request was answered while its row could not be written: nobody waits on the
        # database (a request that did would still be waiting for the space to come back).
        assert log.written < 40
        await eventually(lambda: log.write_errors > 0)
        text = await _metrics(router)
        assert _metric(text, "router_decision_log_write_errors_total") >= 1
        assert _metric(text, "router_decision_log_queue_depth") > 0
        assert "database or disk is full" in log.last_error
    assert any("decision log write failed" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    # space is back: the queued rows are written, none lost
    await eventually(lambda: log.depth == 0, timeout=30)
    rows = await decision_rows(router)
    assert sorted(r.request_id for r in rows) == sorted(f"full-{i}" for i in range(40))
    assert _metric(await _metrics(router), "router_decision_log_dropped_total") == 0


async def test_rows_still_unwritable_at_shutdown_are_counted_and_logged(make_router, upstreams, caplog):
    router = await make_router(backend_env(upstreams))
    log = router.service.decisions
    n = 40
    with disk_full(router):
        await _requests(router, n, "lost")
        await eventually(lambda: log.write_errors > 0)
        caplog.set_level(logging.ERROR, logger="router.store.decision_log")
        await router.stop()  # the writer retries up to its backoff ceiling, then gives up
    # rows that still fitted in the last page were written; every other one is counted
    assert log.dropped > 0 and log.written + log.dropped == n
    text = router.service.metrics.render().decode()
    assert _metric(text, "router_decision_log_dropped_total") == log.dropped
    [lost] = [r for r in caplog.records if "unwritten rows" in r.getMessage()]
    assert lost.levelno == logging.ERROR
    assert f"{log.dropped} unwritten rows" in lost.getMessage()
    assert "database or disk is full" in lost.getMessage()
    stored = sqlite3.connect(db.sqlite_path(router.settings.database_url)).execute(
        "select count(*) from decisions").fetchone()[0]
    assert stored == log.written


async def test_locked_database_does_not_slow_requests(make_router, upstreams, tmp_path: Path):
    router = await make_router(backend_env(upstreams))
    blocker = sqlite3.connect(db.sqlite_path(router.settings.database_url), timeout=0.1)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock (backup, vacuum...)
    try:
        await _requests(router, 30, "locked")
        # All answered while the lock is still held and no row could be written: the writer is
        # stuck in busy_timeout, the requests are not.
        assert router.service.decisions.written == 0
        assert router.service.decisions.depth > 0
    finally:
        blocker.rollback()
        blocker.close()
    await eventually(lambda: router.service.decisions.depth == 0, timeout=30)
    assert len(await decision_rows(router)) == 30


async def test_sigterm_lets_the_inflight_stream_finish_refuses_new_and_flushes(tmp_path: Path, tricky):
    slow = tricky["3070"]
    slow.chunks = 30
    slow.die_after = 1  # with "pause_mid_stream": one event, then wait for `resume`
    env = {"LOCAL_3070_URL": slow.url, "SHUTDOWN_GRACE": "20", "LOG_LEVEL": "INFO"}
    async with serve(tmp_path, env) as router:
        async with httpx.AsyncClient(timeout=10) as client:
            for i in range(5):  # some finished requests too: their rows must be flushed
                r = await client.post(router.url + "/v1/chat/completions",
                                      json={"messages": HELLO}, headers={"X-Request-ID": f"done-{i}"})
                assert r.status_code == 200
            slow.mode = "pause_mid_stream"  # the stream is in flight until the test resumes it
            async with client.stream("POST", router.url + "/v1/chat/completions",
                                     json={"messages": HELLO, "stream": True},
                                     headers={"X-Request-ID": "inflight"}) as stream:
                lines = stream.aiter_lines()
                assert (await anext(lines)).startswith("data: {")
                sent_at_sigterm = slow.sent
                router.sigterm()
                await eventually(router.refusing, timeout=30, what="serve refuses new requests")
                assert slow.sent == 1  # refused while the stream was still going
                slow.resume.set()
                rest = [line async for line in lines if line]
        assert sent_at_sigterm < slow.chunks
        assert rest[-1] == "data: [DONE]" and not any('"error"' in line for line in rest)
        assert len([l for l in rest if l.startswith("data: {")]) == slow.chunks - 1
        assert await router.terminate() == 0
    rows = sqlite3.connect(tmp_path / "serve.db").execute(
        "select request_id, status_code, stream from decisions order by id").fetchall()
    assert rows == [(f"done-{i}", 200, 0) for i in range(5)] + [("inflight", 200, 1)]


async def test_rows_with_different_columns_share_a_batch(tmp_path: Path):
    """A 404 row (no backend) batched with a routed row must not poison the batch."""
    from router.store.decision_log import DecisionLog, DecisionRow

    url = f"sqlite:///{tmp_path}/mixed.db"
    db.upgrade(url)
    log = DecisionLog(db.make_engine(url))
    log.record(DecisionRow(request_id="routed", source="api", backend="3070",
                           reason="small_request", status_code=200, stream=True, ttft_ms=1.5))
    log.record(DecisionRow(request_id="unknown-model", source="api", status_code=404, error="no such model"))
    log.start()
    await log.close()
    assert (log.written, log.dropped, log.write_errors) == (2, 0, 0)
    rows = sqlite3.connect(tmp_path / "mixed.db").execute(
        "select request_id, backend, status_code, stream from decisions order by id").fetchall()
    assert rows == [("routed", "3070", 200, 1), ("unknown-model", None, 404, 0)]
