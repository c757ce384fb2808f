"""The decision log: rows are queued in memory and written to SQLite in batches by one task.

`record()` never blocks and never raises: it appends to a bounded queue. A single writer task
drains the queue and inserts whole batches in a worker thread. When the database is locked, slow
or full, the batch is kept and retried with backoff, so requests go on being served; rows are
dropped only when the queue is full, and every drop is counted and logged. `close()` flushes
everything that is queued (bounded by a deadline) before the process exits.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from router.store.models import Decision

log = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_QUEUE = 200_000
LINGER = 0.05  # seconds the writer waits for more rows before a write
# Every column but the key, with its default. Rows are inserted with plain SQL and positional
# parameters, one executemany per batch and set of columns: SQLAlchemy's compiled insert of dicts
# cost ~25 µs of CPU per row, a tenth of a request.
_DEFAULTS: dict[str, Any] = {
    column.name: column.default.arg if column.default is not None and column.default.is_scalar
    else None
    for column in Decision.__table__.columns  # type: ignore[attr-defined]
    if not column.primary_key
}
_BOOLEANS = tuple(name for name, default in _DEFAULTS.items() if isinstance(default, bool))
_REQUIRED = {name: default for name, default in _DEFAULTS.items() if default is not None}


def _columns_and_values(row: dict[str, Any]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """The row's columns that have a value, and those values.

    A None is left out (the column's default is NULL) rather than bound: sqlite3 binds None,
    and a bool, through its adapter lookup, two failed attribute probes each. Booleans go in
    as ints; a column with a default (the NOT NULL ones) gets it when the row lacks it; a key
    that is not a column is ignored. `created_at` is stored as SQLAlchemy's SQLite DateTime
    stores it (UTC, no offset, microseconds always), so its queries compare alike."""
    present = {name: value for name, value in row.items()
               if value is not None and name in _DEFAULTS}
    for name, default in _REQUIRED.items():
        if name not in present:
            present[name] = default
    for name in _BOOLEANS:
        present[name] = int(present[name])
    created = present.get("created_at")
    if isinstance(created, datetime):
        present["created_at"] = created.astimezone(UTC).isoformat(" ", "microseconds")[:26]
    return tuple(present), tuple(present.values())


@functools.cache
def _insert(columns: tuple[str, ...]) -> str:
    return (f"INSERT INTO {Decision.__tablename__} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})")


class DecisionLog:
    """Queue + batched writer. `record` is safe from any coroutine on the loop; one instance."""

    def __init__(self, engine: Engine, *, max_queue: int = MAX_QUEUE,
                 batch_size: int = BATCH_SIZE, retry_max: float = 5.0,
                 linger: float = LINGER) -> None:
        self._engine = engine
        self._linger = linger
        self._queue: deque[dict[str, Any]] = deque()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._retry_max = retry_max
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0
        self.dropped = 0
        self.write_errors = 0
        self.last_error: str | None = None
        # Live viewers (the dashboard): empty unless one is connected, so `record` does no
        # extra work for them on the data plane.
        self._subscribers: list[asyncio.Queue[dict[str, Any]]] = []
        self.subscriber_drops = 0

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="decision-log-writer")

    def record(self, **row: Any) -> None:
        """Queue one decision row (keys are `Decision` columns). Never blocks, never raises."""
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            log.error("decision log queue full (%d rows); dropped row for request %s",
                      self._max_queue, row.get("request_id"))
            return
        row.setdefault("created_at", datetime.now(UTC))
        self._queue.append(row)
        if not self._wakeup.is_set():
            self._wakeup.set()
        if self._subscribers:
            self._fan_out(row)

    def subscribe(self, max_queue: int = 1000) -> asyncio.Queue[dict[str, Any]]:
        """A bounded queue that receives every row recorded from now on (read-only dicts).

        A subscriber that falls `max_queue` rows behind loses rows (counted in
        `subscriber_drops`); `record` never waits for it. Call `unsubscribe` when done.
        """
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_queue)
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        if queue in self._subscribers:
            self._subscribers.remove(queue)

    def _fan_out(self, row: dict[str, Any]) -> None:
        for queue in self._subscribers:
            try:
                queue.put_nowait(row)
            except asyncio.QueueFull:
                self.subscriber_drops += 1

    async def _run(self) -> None:
        delay = 0.05
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._linger and not self._closing and len(self._queue) < self._batch_size:
                # Gather a batch: one transaction (and one thread hop) per window, not per row,
                # keeps the writer thread from competing with the loop for the GIL under load.
                await asyncio.sleep(self._linger)
            batch = [self._queue[i] for i in range(min(self._batch_size, len(self._queue)))]
            try:
                await asyncio.to_thread(self._write, batch)
            except (OperationalError, OSError) as exc:
                self.write_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                log.warning("decision log write failed (%d rows kept, retry in %.2fs): %s",
                            len(batch), delay, self.last_error)
                if self._closing and delay >= self._retry_max:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            except SQLAlchemyError as exc:
                # Not the database's state but the rows (a constraint, a bad value): retrying
                # the batch would block the log for good, so write row by row and count the rest.
                log.error("decision log batch rejected (%s); writing its rows one by one",
                          f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
                written = await asyncio.to_thread(self._write_each, batch)
                self.dropped += len(batch) - written
                self.written += written
                for _ in batch:
                    self._queue.popleft()
                continue
            delay = 0.05
            for _ in batch:
                self._queue.popleft()
            self.written += len(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for row in batch:
            columns, values = _columns_and_values(row)
            by_columns.setdefault(columns, []).append(values)
        with self._engine.begin() as connection:  # one transaction for the batch
            for columns, rows in by_columns.items():
                connection.exec_driver_sql(_insert(columns), rows)

    def _write_each(self, batch: list[dict[str, Any]]) -> int:
        written = 0
        for row in batch:
            try:
                self._write([row])
                written += 1
            except SQLAlchemyError as exc:
                log.error("decision row for request %s could not be written: %s",
                          row.get("request_id"), f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
        return written

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued now has been written (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            self._wakeup.set()
            await asyncio.sleep(0.01)

    async def close(self, timeout: float = 15.0) -> None:
        """Write what is queued, then stop the writer. Rows left unwritten are logged as lost."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
        if self._queue:
            self.dropped += len(self._queue)
            log.error("decision log closed with %d unwritten rows (last error: %s)",
                      len(self._queue), self.last_error)
