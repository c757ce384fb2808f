"""The decision log: rows are queued in memory and written to SQLite in batches by one task.

`record()` never blocks and never raises: it appends to a bounded queue. A single writer task
drains the queue and inserts whole batches in a worker thread. When the database is locked, slow
or full, the batch is kept and retried with backoff, so requests go on being served; rows are
dropped only when the queue is full, and every drop is counted and logged. `close()` flushes
everything that is queued (bounded by a deadline) before the process exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import operator
import sqlite3
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from router.store.models import Decision

log = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_QUEUE = 200_000
LINGER = 0.05  # seconds the writer waits for more rows before a write


@dataclass(slots=True)
class DecisionRow:
    """One request's row of `decisions` while it is routed: the handler starts it
    (`RouterService.new_row`), the service fills in where it went and how it ended, and
    `DecisionLog.record` queues it once. Field names are the table's columns (a test holds them
    to `models.Decision`); `status_code` is None until the request is finished."""

    request_id: str
    source: str = "api"  # api | bot | slash
    client: str | None = None
    endpoint: str = "/v1/chat/completions"
    requested_model: str | None = None
    stream: bool = False
    reason: str | None = None
    estimated_tokens: int | None = None
    gaming_mode: bool = False
    force_big: bool = False
    candidates: str | None = None
    skipped: str | None = None
    backend: str | None = None
    backend_model: str | None = None
    fallback_attempts: int = 0
    max_tokens_clamped: int | None = None
    ttft_ms: float | None = None
    failures: str | None = None
    status_code: int | None = None
    error: str | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    created_at: datetime | None = None  # set by `record`

    def columns(self) -> dict[str, Any]:
        """The row as a dict of columns (for live viewers and tests)."""
        return dict(zip(_NAMES, _ALL(self), strict=True))


# Rows are inserted with plain SQL and positional parameters, one executemany per batch and set
# of columns: SQLAlchemy's compiled insert of dicts cost ~25 µs of CPU per row, a tenth of a
# request. The writer thread holds the GIL while it turns rows into parameters, so that is done
# with C-level calls (attrgetter, map, itemgetter) rather than a Python loop over the columns.
_NAMES = tuple(field.name for field in dataclasses.fields(DecisionRow))
_ALL = operator.attrgetter(*_NAMES)
_VALUED = tuple(name for name in _NAMES if name != "created_at")  # `record` always sets it
_VALUES = operator.attrgetter(*_VALUED)
_NONES = (None,) * len(_VALUED)

# sqlite3 binds a bool as the int it is, but only after probing it for the adapter protocol
# (`__adapt__`, `__conform__`); naming `int` as its adapter halves the cost of binding one. The
# registry is process-wide, and the value bound is the same either way.
sqlite3.register_adapter(bool, int)


@functools.cache
def _statement(nulls: tuple[bool, ...]) -> tuple[str, operator.itemgetter[Any]]:
    """The INSERT for rows whose None values are where `nulls` says, and the getter of their
    other values. A None is left out (the column's default is NULL) rather than bound: sqlite3
    probes None for an adapter just as it does a bool, and the adapter one could name for None
    (itself) would be a Python call per value."""
    present = [index for index, null in enumerate(nulls) if not null]
    columns = [_VALUED[index] for index in present] + ["created_at"]
    sql = (f"INSERT INTO {Decision.__tablename__} ({', '.join(columns)}) "
           f"VALUES ({', '.join('?' for _ in columns)})")
    # An itemgetter of one index would return a bare value, not a tuple; the NOT NULL columns
    # (request id, source, endpoint, the flags, fallback attempts) are always there.
    assert len(present) > 1, columns
    return sql, operator.itemgetter(*present)


def _timestamp(created_at: datetime) -> str:
    """`created_at` as SQLAlchemy's SQLite DateTime stores it (UTC, no offset, microseconds
    always), so that its queries compare alike."""
    if created_at.tzinfo is not UTC:
        created_at = created_at.astimezone(UTC)
    return created_at.isoformat(" ", "microseconds")[:26]


def _parameters(row: DecisionRow) -> tuple[str, tuple[Any, ...]]:
    """The INSERT for a recorded row and its parameters."""
    values = _VALUES(row)
    sql, pick = _statement(tuple(map(operator.is_, values, _NONES)))
    assert row.created_at is not None  # set by `record`
    return sql, (*pick(values), _timestamp(row.created_at))


class DecisionLog:
    """Queue + batched writer. `record` is safe from any coroutine on the loop; one instance."""

    def __init__(self, engine: Engine, *, max_queue: int = MAX_QUEUE,
                 batch_size: int = BATCH_SIZE, retry_max: float = 5.0,
                 linger: float = LINGER) -> None:
        self._engine = engine
        self._linger = linger
        self._queue: deque[DecisionRow] = deque()
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

    def record(self, row: DecisionRow) -> None:
        """Queue one finished decision row. Never blocks, never raises."""
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            log.error("decision log queue full (%d rows); dropped row for request %s",
                      self._max_queue, row.request_id)
            return
        if row.created_at is None:
            row.created_at = datetime.now(UTC)
        self._queue.append(row)
        if not self._wakeup.is_set():
            self._wakeup.set()
        if self._subscribers:
            self._fan_out(row.columns())

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

    def _write(self, batch: list[DecisionRow]) -> None:
        by_statement: dict[str, list[tuple[Any, ...]]] = {}
        for row in batch:
            sql, parameters = _parameters(row)
            by_statement.setdefault(sql, []).append(parameters)
        with self._engine.begin() as connection:  # one transaction for the batch
            for sql, rows in by_statement.items():
                connection.exec_driver_sql(sql, rows)

    def _write_each(self, batch: list[DecisionRow]) -> int:
        written = 0
        for row in batch:
            try:
                self._write([row])
                written += 1
            except SQLAlchemyError as exc:
                log.error("decision row for request %s could not be written: %s",
                          row.request_id, f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
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
