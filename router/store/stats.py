"""Dashboard queries over the decision log: time buckets per backend, and the latest rows.

Every function here BLOCKS (SQLite): call it through `asyncio.to_thread`, never on the loop.
Aggregation happens in SQL (percentiles with window functions, SQLite >= 3.25), so a week of
rows never crosses into Python one by one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, text

__all__ = ["WINDOWS", "BackendSeries", "Series", "bucket_stats", "recent_decisions"]

# window name -> (length, bucket size), in seconds
WINDOWS: dict[str, tuple[int, int]] = {"24h": (86_400, 1_800), "7d": (604_800, 14_400)}

_BUCKETS = text("""
WITH rows AS (
    SELECT COALESCE(backend, 'none') AS backend,
           (CAST(strftime('%s', created_at) AS INTEGER) / :size) * :size AS bucket,
           status_code, latency_ms, prompt_tokens, completion_tokens, fallback_attempts
    FROM decisions
    WHERE created_at >= :since
),
totals AS (
    SELECT backend, bucket, COUNT(*) AS requests,
           SUM(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)) AS tokens,
           SUM(CASE WHEN fallback_attempts > 0 THEN 1 ELSE 0 END) AS fallbacks,
           SUM(CASE WHEN status_code BETWEEN 200 AND 399 THEN 0 ELSE 1 END) AS errors
    FROM rows GROUP BY backend, bucket
),
ranked AS (
    SELECT backend, bucket, latency_ms,
           ROW_NUMBER() OVER (PARTITION BY backend, bucket ORDER BY latency_ms) AS rn,
           COUNT(*) OVER (PARTITION BY backend, bucket) AS n
    FROM rows
    WHERE latency_ms IS NOT NULL AND status_code BETWEEN 200 AND 399
),
percentiles AS (
    SELECT backend, bucket,
           MIN(CASE WHEN rn >= 0.50 * n THEN latency_ms END) AS p50,
           MIN(CASE WHEN rn >= 0.95 * n THEN latency_ms END) AS p95
    FROM ranked GROUP BY backend, bucket
)
SELECT t.backend, t.bucket, t.requests, t.tokens, t.fallbacks, t.errors, p.p50, p.p95
FROM totals AS t
LEFT JOIN percentiles AS p ON p.backend = t.backend AND p.bucket = t.bucket
ORDER BY t.backend, t.bucket
""")

_RECENT = text("""
SELECT id, created_at, request_id, source, client, endpoint, requested_model, backend,
       backend_model, reason, estimated_tokens, gaming_mode, force_big, stream,
       fallback_attempts, status_code, error, latency_ms, ttft_ms, prompt_tokens,
       completion_tokens, candidates, skipped, failures, max_tokens_clamped
FROM decisions ORDER BY id DESC LIMIT :limit
""")


@dataclass
class BackendSeries:
    """One backend's values, one per bucket (aligned with `Series.buckets`)."""

    requests: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    fallbacks: list[int] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    p50_ms: list[float | None] = field(default_factory=list)
    p95_ms: list[float | None] = field(default_factory=list)


@dataclass
class Series:
    """Per-backend time series over one window; `buckets` are bucket starts (Unix seconds)."""

    window: str
    bucket_seconds: int
    buckets: list[int]
    backends: dict[str, BackendSeries]

    def as_json(self) -> dict[str, Any]:
        return {"window": self.window, "bucket_seconds": self.bucket_seconds,
                "buckets": self.buckets,
                "backends": {name: vars(s) for name, s in self.backends.items()}}


def bucket_stats(engine: Engine, window: str, now: float | None = None) -> Series:
    """Requests, tokens, fallbacks, errors and p50/p95 latency (successful requests) per backend
    per bucket over `window` ("24h" or "7d"; KeyError otherwise). Empty buckets are zeros (None
    for latencies). BLOCKS."""
    length, size = WINDOWS[window]
    now = time.time() if now is None else now
    first = int((now - length) // size) * size + size
    buckets = list(range(first, int(now // size) * size + 1, size))
    index = {b: i for i, b in enumerate(buckets)}
    since = datetime.fromtimestamp(first, UTC).replace(tzinfo=None)
    with engine.connect() as connection:
        rows = connection.execute(_BUCKETS, {"size": size, "since": since}).all()
    out: dict[str, BackendSeries] = {}
    for backend, bucket, requests, tokens, fallbacks, errors, p50, p95 in rows:
        i = index.get(int(bucket))
        if i is None:
            continue
        series = out.get(backend)
        if series is None:
            n = len(buckets)
            series = out[backend] = BackendSeries([0] * n, [0] * n, [0] * n, [0] * n,
                                                  [None] * n, [None] * n)
        series.requests[i] = int(requests)
        series.tokens[i] = int(tokens or 0)
        series.fallbacks[i] = int(fallbacks or 0)
        series.errors[i] = int(errors or 0)
        series.p50_ms[i] = None if p50 is None else round(float(p50), 1)
        series.p95_ms[i] = None if p95 is None else round(float(p95), 1)
    return Series(window, size, buckets, dict(sorted(out.items())))


def recent_decisions(engine: Engine, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` decision rows, newest first, as column dicts. BLOCKS."""
    with engine.connect() as connection:
        result = connection.execute(_RECENT, {"limit": limit})
        return [dict(row._mapping) for row in result]
