"""Small synchronous queries the router and the bot run in worker threads.

Every function takes the engine and blocks on SQLite: call it with `asyncio.to_thread`. The
decision log's batched writer lives in `decision_log.py`, the statistics in `stats.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import Session

from router.store.models import Decision, GamingModeChange, Setting


def decision_stats_rows(engine: Engine, since: datetime) -> list[tuple[Any, ...]]:
    """(backend, status, prompt tokens, completion tokens, latency ms, fallback attempts) of
    every decision row created at or after `since`, for the bot's `stats`."""
    c = Decision.__table__.c  # type: ignore[attr-defined]
    query = select(c.backend, c.status_code, c.prompt_tokens, c.completion_tokens,
                   c.latency_ms, c.fallback_attempts).where(c.created_at >= since)
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query).all()]


def recent_decisions(engine: Engine, last: int) -> list[Decision]:
    """The last `last` decision rows, oldest first."""
    with Session(engine) as session:
        rows = session.execute(select(Decision).order_by(Decision.id.desc())  # type: ignore[union-attr]
                               .limit(last)).scalars().all()
        session.expunge_all()
    return list(reversed(rows))


def last_gaming_states(engine: Engine) -> dict[str | None, bool]:
    """The last recorded gaming mode per backend (None: rows from before per-backend switches)."""
    with Session(engine) as session:
        rows = session.execute(
            select(GamingModeChange.backend, GamingModeChange.enabled)  # type: ignore[call-overload]
            .order_by(GamingModeChange.id)).all()
    states: dict[str | None, bool] = {}
    for backend, enabled in rows:  # oldest first, so the newest row wins
        states[backend] = bool(enabled)
        if backend is not None:
            states[None] = bool(enabled)
    return states


def store_gaming_change(engine: Engine, enabled: bool, actor: str, source: str, applied: bool,
                        backend: str | None) -> None:
    with Session(engine) as session:
        session.add(GamingModeChange(enabled=enabled, actor=actor, source=source, applied=applied,
                                     backend=backend))
        session.commit()


def get_setting(engine: Engine, key: str) -> str | None:
    with Session(engine) as session:
        row = session.get(Setting, key)
        return row.value if row is not None else None


def put_setting(engine: Engine, key: str, value: str, by: str | None) -> None:
    with Session(engine) as session:
        row = session.get(Setting, key)
        if row is None:
            row = Setting(key=key, value=value, updated_by=by)
        else:
            row.value, row.updated_by = value, by
            row.updated_at = datetime.now(UTC)
        session.add(row)
        session.commit()
