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


async def test_rows_read_back_through_the_model_as_they_were_recorded(tmp_path: Path):
    """The writer's plain SQL (None columns left out, flags bound as ints, the timestamp in
    SQLAlchemy's format) stores what the `Decision` model reads back, whatever each row's
    mix of empty columns."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlmodel import Session, select

    from router.store.models import Decision

    url = f"sqlite:///{tmp_path}/typed.db"
    db.upgrade(url)
    engine = db.make_engine(url)
    log = DecisionLog(engine)
    full = DecisionRow(request_id="full", source="api", client="ci", requested_model="auto",
                       stream=True, reason="alias", estimated_tokens=12, gaming_mode=True,
                       force_big=True, candidates="a,b", skipped='{"c": "down"}', backend="a",
                       backend_model="m", fallback_attempts=1, max_tokens_clamped=100,
                       ttft_ms=1.25, failures='[{"backend": "b"}]', status_code=200,
                       latency_ms=3.5, prompt_tokens=7, completion_tokens=9,
                       created_at=datetime(2026, 12, 6, 13, 0, 0, 0, tzinfo=UTC))
    sparse = DecisionRow(request_id="sparse", source="bot", status_code=503,
                         created_at=datetime(2026, 12, 6, 15, 0, 1, 5,
                                             tzinfo=timezone(timedelta(hours=2))))
    for row in (full, sparse):
        log.record(row)
    log.start()
    await log.close()
    assert (log.written, log.dropped) == (2, 0)
    with Session(engine) as session:
        stored = {r.request_id: r for r in session.exec(select(Decision))}
    for row in (full, sparse):
        got = stored[row.request_id].model_dump()
        assert row.created_at is not None
        assert got.pop("created_at") == row.created_at  # read back as an aware UTC time
        want = row.columns()
        del want["created_at"]
        assert {name: got[name] for name in want} == want
    assert stored["full"].stream is True and stored["sparse"].client is None
    raw = sqlite3.connect(tmp_path / "typed.db").execute(
        "select created_at from decisions order by id").fetchall()
    assert raw == [("2026-12-06 13:00:00.000000",), ("2026-12-06 13:00:01.000005",)]


def test_the_log_is_indexed_for_its_queries_only(tmp_path: Path):
    """Each index costs every decision row a B-tree insert: created_at serves the dashboard's
    and `stats`' time windows, request_id a lookup by hand; backend (dropped in 0003) served
    nothing, and a downgrade puts it back."""
    url = f"sqlite:///{tmp_path}/indexes.db"
    db.upgrade(url)
    engine = db.make_engine(url)
    assert {i["name"] for i in inspect(engine).get_indexes("decisions")} == {
        "ix_decisions_created_at", "ix_decisions_request_id"}
    command.downgrade(db.alembic_config(url), "0002")
    inspect_again = inspect(db.make_engine(url))
    assert "ix_decisions_backend" in {i["name"] for i in inspect_again.get_indexes("decisions")}
