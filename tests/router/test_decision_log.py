"""The decision log loses nothing: concurrency, restarts, a locked database, migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiohttp
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from router.store import db
from router.store.decision_log import DecisionLog, DecisionRow
from tests.conftest import backend_env, decision_rows
from tests.helpers import eventually

N = 250


async def _burst(router, n: int, stream: bool = False, prefix: str = "req") -> list[int]:
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def one(i: int) -> int:
            body = {"model": "auto", "stream": stream,
                    "messages": [{"role": "user", "content": f"request {i}"}]}
            async with http.post(router.url + "/v1/chat/completions", json=body,
                                 headers={"X-Request-ID": f"{prefix}-{i}"}) as r:
                await r.read()
                return r.status
        return await asyncio.gather(*(one(i) for i in range(n)))


async def test_concurrent_requests_give_exactly_one_row_each_and_survive_restart(make_router, upstreams):
    router = await make_router(backend_env(upstreams))
    statuses = await _burst(router, N, stream=False)
    statuses += await _burst(router, 10, stream=True, prefix="stream")
    assert statuses == [200] * (N + 10)
    await router.stop()  # clean shutdown flushes the queue
    assert router.service.decisions.depth == 0
    again = await make_router(backend_env(upstreams))
    rows = await decision_rows(again)
    assert len(rows) == N + 10
    assert {r.request_id for r in rows} == {f"req-{i}" for i in range(N)} | {f"stream-{i}" for i in range(10)}
    assert all(r.status_code == 200 and r.backend == "3070" for r in rows)


async def test_locked_database_delays_rows_but_loses_none(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/locked.db"
    db.upgrade(url)
    engine = db.make_engine(url)
    engine.pool.dispose()
    log = DecisionLog(engine, retry_max=0.1)
    blocker = sqlite3.connect(tmp_path / "locked.db", timeout=0.1)
    blocker.execute("BEGIN EXCLUSIVE")
    log.start()
    try:
        for i in range(20):
            log.record(DecisionRow(request_id=f"r{i}", source="api", status_code=200))
        await eventually(lambda: log.write_errors > 0, timeout=30)
        assert log.depth == 20 and log.written == 0
    finally:
        blocker.rollback()
        blocker.close()
    await log.close()
    assert (log.written, log.dropped) == (20, 0)
    count = sqlite3.connect(tmp_path / "locked.db").execute("select count(*) from decisions").fetchone()[0]
    assert count == 20


async def test_full_queue_counts_drops(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/q.db"
    db.upgrade(url)
    log = DecisionLog(db.make_engine(url), max_queue=5)
    for i in range(8):
        log.record(DecisionRow(request_id=f"r{i}", source="api", status_code=200))
    assert (log.depth, log.dropped) == (5, 3)
    log.start()
    await log.close()
    assert log.written == 5


def test_migrations_upgrade_empty_database_and_are_idempotent(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/sub/dir/new.db"
    db.upgrade(url)
    db.upgrade(url)
    engine = db.make_engine(url)
    tables = set(inspect(engine).get_table_names())
    assert {"decisions", "gaming_mode_changes", "settings", "alembic_version"} <= tables
    head = ScriptDirectory.from_config(db.alembic_config(url)).get_current_head()
    with engine.connect() as c:
        assert c.exec_driver_sql("select version_num from alembic_version").scalar() == head
    command.downgrade(db.alembic_config(url), "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    db.upgrade(url)
    columns = {c["name"] for c in inspect(engine).get_columns("decisions")}
    for needed in ("created_at", "request_id", "source", "client", "requested_model", "backend",
                   "backend_model", "reason", "estimated_tokens", "gaming_mode", "force_big", "stream",
                   "fallback_attempts", "status_code", "error", "latency_ms", "ttft_ms",
                   "prompt_tokens", "completion_tokens"):
        assert needed in columns


async def test_a_bad_row_does_not_block_the_log(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/bad.db"
    db.upgrade(url)
    log = DecisionLog(db.make_engine(url))
    log.record(DecisionRow(request_id="good-1", source="api", status_code=200))
    log.record(DecisionRow(request_id=None, source="api", status_code=200))  # violates NOT NULL
    log.record(DecisionRow(request_id="good-2", source="api", status_code=200))
    log.start()
    await log.close()
    assert (log.written, log.dropped, log.depth) == (2, 1, 0)
    ids = [r[0] for r in sqlite3.connect(tmp_path / "bad.db").execute("select request_id from decisions")]
    assert ids == ["good-1", "good-2"]


def test_a_decision_row_has_exactly_the_tables_columns() -> None:
    """The typed row the service fills in and the table Alembic creates must not drift apart."""
    from dataclasses import fields

    from router.store.models import Decision

    table = {c.name for c in Decision.__table__.columns if not c.primary_key}  # type: ignore[attr-defined]
    assert {f.name for f in fields(DecisionRow)} == table
