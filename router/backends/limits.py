"""A wrapper backend that caps requests per minute and concurrent requests (paid subscriptions).

`LimitedBackend(inner, rpm, concurrency)` behaves like `inner` but refuses a request it cannot
admit at once with `UpstreamError(status=429, retriable=True, retry_after=...)`, so the router
spills to the next candidate or answers 429 with `Retry-After` when none is left. It never queues:
a request waiting for a slot would hold the client with no answer and no fallback.

A concurrency slot is held from `send()` until the returned `Upstream` is released (for a stream,
that is when the client has its last byte), or given back at once when `send()` fails. The rate
window is a sliding 60 s log of admitted requests. 0 means unlimited for either limit.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from collections.abc import Callable

import orjson

from router.backends.base import Backend, HealthReport, ModelInfo, Upstream, UpstreamError
from router.errors import error_body, error_type

WINDOW = 60.0


def rate_limit_body(message: str) -> bytes:
    """The OpenAI error envelope for a limit hit (sent to the client if no candidate is left)."""
    return orjson.dumps(error_body(message, error_type(429), "rate_limit_exceeded"))


class LimitedBackend:
    """Enforces `rpm` and `concurrency` on `inner`. Loop-only (not thread-safe); never blocks."""

    def __init__(self, inner: Backend, rpm: int = 0, concurrency: int = 0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.name = inner.name
        self.url = inner.url
        self.rpm = rpm
        self.concurrency = concurrency
        self._clock = clock
        self._admitted: deque[float] = deque()
        self.in_flight = 0

    def _refuse(self, message: str, retry_after: float) -> UpstreamError:
        seconds = str(max(1, math.ceil(retry_after)))
        return UpstreamError(message, status=429, retriable=True, retry_after=seconds,
                             body=rate_limit_body(message))

    def _admit(self) -> None:
        now = self._clock()
        while self._admitted and now - self._admitted[0] >= WINDOW:
            self._admitted.popleft()
        if self.concurrency and self.in_flight >= self.concurrency:
            raise self._refuse(
                f"backend {self.name} is at its limit of {self.concurrency} concurrent requests "
                "(OPENCODE_CONCURRENCY)", 1)
        if self.rpm and len(self._admitted) >= self.rpm:
            wait = WINDOW - (now - self._admitted[0])
            raise self._refuse(
                f"backend {self.name} is at its limit of {self.rpm} requests per minute "
                "(OPENCODE_RPM)", wait)
        self._admitted.append(now)
        self.in_flight += 1

    async def send(self, path: str, body: dict[str, object], *, stream: bool,
                   headers: dict[str, str], header_timeout: float | None = None) -> Upstream:
        self._admit()
        released = False

        def give_back() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_flight -= 1

        try:
            upstream = await self.inner.send(path, body, stream=stream, headers=headers,
                                             header_timeout=header_timeout)
        except BaseException:
            give_back()
            raise
        inner_release = upstream.release

        async def release() -> None:
            try:
                await inner_release()
            finally:
                give_back()

        return dataclasses.replace(upstream, release=release)

    async def check_health(self) -> HealthReport:
        return await self.inner.check_health()

    def resolve_model(self, hint: str | None, models: tuple[ModelInfo, ...]) -> str:
        return self.inner.resolve_model(hint, models)

    async def close(self) -> None:
        await self.inner.close()
