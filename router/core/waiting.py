"""Waiting for a backend's first byte without silence: keep-alive notes, starting versus hung.

A model started on demand takes a minute or more; clients and proxies give up after 30-60 s of
silence. While the router waits for a candidate's first byte it calls the caller's `notify`
every `interval` seconds (the HTTP handler writes an SSE comment, the bot edits its reply).
`Keepalive` costs a place on the loop's `WatchClock` and no task unless a note falls due.

A backend silent for `FIRST_BYTE_TIMEOUT` is probed (`Watchdog`): one that answers a health
check is busy and waited for; one that does not is hung and failed over. The inference agent
streams comment lines (`: model <id> starting (<s> s)`) while vLLM starts (docs/agent.md):
`first_chunk()` reads past them, each one a sign of life, up to the agent's start timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import orjson

from router.clock import WatchClock
from router.errors import UpstreamError

log = logging.getLogger(__name__)

AGENT_NOTE = b": model "
PROBE_TIMEOUT = 0.8  # seconds a health probe of a silent backend may take (keeps fail-over
# within FIRST_BYTE_TIMEOUT + 1 s; a live backend answers /v1/models in milliseconds)
START_TIMEOUT_HEADER = "x-model-start-timeout"
MODEL_STATE_HEADER = "x-model-state"


@dataclass(frozen=True)
class Progress:
    """What a waiting caller is told: which backend, for how long, and what it says."""

    backend: str
    label: str
    elapsed: float
    detail: str | None  # the agent's note, e.g. "model qwen2.5-14b starting (12.0 s)"
    loading_status: bool = False  # the backend asks for notes as reasoning (`loading_status`)

    def text(self) -> str:
        """A one-line note: "3090: model qwen2.5-14b starting (40.0 s); waiting 41 s"."""
        if self.detail:
            return f"{self.label}: {self.detail}; waiting {self.elapsed:.0f} s"
        return f"waiting for {self.label} ({self.elapsed:.0f} s)"

    def starting(self) -> str | None:
        """"Starting qwen2.5-14b on 3090" when the backend says a model is starting."""
        if not self.detail:
            return None
        parts = self.detail.split()
        if len(parts) >= 3 and parts[0] == "model":
            verb = "Waking" if parts[2] == "waking" else "Starting"
            return f"{verb} {parts[1]} on {self.label}"
        return None


Notify = Callable[[Progress], Awaitable[None]]


class Keepalive:
    """Calls `notify` every `interval` seconds until `stop()`, told by the loop's `WatchClock`
    (no timer of its own). Loop-only; one per request.

    Notes run as tracked tasks (a slow client write never delays the upstream read); `drain()`
    waits for those in flight, so the caller can write the answer after them.
    """

    def __init__(self, notify: Notify, interval: float, clock: WatchClock) -> None:
        self._notify = notify
        self._interval = interval
        self._clock = clock
        self._loop = clock.loop
        self._started = self._loop.time()
        self.due = self._started + interval
        clock.add(self)
        self._tasks: set[asyncio.Task[None]] = set()
        self.backend = ""
        self.label = ""
        self.detail: str | None = None
        self.loading_status = False
        self.notes = 0

    def watch(self, backend: str, label: str, loading_status: bool = False) -> None:
        """The candidate now being waited for."""
        self.backend, self.label, self.detail = backend, label, None
        self.loading_status = loading_status

    def fire(self, now: float) -> None:
        """The clock's call when a note is due."""
        self.notes += 1
        progress = Progress(self.backend, self.label, now - self._started, self.detail,
                            self.loading_status)
        task = self._loop.create_task(self._send(progress))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.due = now + self._interval

    async def _send(self, progress: Progress) -> None:
        try:
            await self._notify(progress)
        except (ConnectionError, RuntimeError) as exc:  # the client left; the request ends
            log.debug("keep-alive note not delivered: %s", exc)

    def stop(self) -> None:
        self._clock.discard(self)

    async def drain(self) -> None:
        """Stop and wait for notes being written."""
        self.stop()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class Watchdog:
    """Tells a backend that is working from a hung one while its first byte is awaited.

    `async with Watchdog(clock, silence, limit, probe):` around the wait. After `silence` seconds
    without a byte it runs `probe` (a health check, at most PROBE_TIMEOUT seconds): a backend
    that answers is busy (a long prefill, a whole non-streaming answer, a model loading) and gets
    another `silence`, up to `limit` seconds in all; one that does not is hung. Either way out
    (hung, or the limit passed) cancels the block, which then raises TimeoutError, and `verdict`
    says why. A byte (the agent's starting notes) resets the count: `touch()`.

    Cost per attempt: a place in the clock's set (a touch only stamps the time) and no task
    unless a probe is due. It does for the block's task what `asyncio.timeout` does, without
    that one's timer and its `get_running_loop()` calls (each a getpid() system call on 3.11).
    """

    def __init__(self, clock: WatchClock, silence: float, limit: float,
                 probe: Callable[[], Awaitable[bool]]) -> None:
        self._clock = clock
        self._loop = clock.loop
        self._silence = silence
        self._limit_after = limit
        self._probe_fn = probe
        self.verdict = f"sent nothing for {silence:g}s"
        self.due = float("inf")  # loop time of the clock's next look at it
        self._expired = False
        self._probing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watchdog:
        task = asyncio.current_task(self._loop)
        assert task is not None, "Watchdog is used inside a task"
        self._task, self._cancelling = task, task.cancelling()
        now = self._loop.time()
        self._limit = now + self._limit_after
        self._quiet_since = now
        self.due = min(now + self._silence, self._limit)
        self._clock.add(self)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        _tb: object) -> None:
        self._clock.discard(self)
        if self._probing is not None:
            self._probing.cancel()
        # As asyncio.timeout does: our cancellation becomes TimeoutError, one from outside stays.
        if self._expired and self._task.uncancel() <= self._cancelling \
                and exc_type is asyncio.CancelledError:
            raise TimeoutError(self.verdict) from exc

    def touch(self, allow: float | None = None) -> None:
        """A sign of life: wait another `silence` (and up to `allow` seconds from now in all)."""
        now = self._loop.time()
        self._quiet_since = now
        if allow is not None:
            self._limit = max(self._limit, now + allow)

    def fire(self, now: float) -> None:
        """The clock's look once `due` has passed: expire, wait on, or probe."""
        if now >= self._limit:
            self.verdict = "sent nothing before its time ran out"
            self._expire()
        elif now < self._quiet_since + self._silence:  # touched since
            self.due = min(self._quiet_since + self._silence, self._limit)
        else:
            self.due = float("inf")  # the probe decides
            self._probing = self._loop.create_task(self._probe())

    def _expire(self) -> None:
        self.due = float("inf")
        if not self._expired:
            self._expired = True
            self._task.cancel()

    async def _probe(self) -> None:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                alive = await self._probe_fn()
        except Exception:  # a failing or slow health check is the answer
            alive = False
        self._probing = None
        if not alive:
            self.verdict = (f"sent nothing for {self._silence:g}s and did not answer a health "
                            "check (hung)")
            self._expire()
        else:  # busy: another `silence` from now, within the limit
            self._quiet_since = self._loop.time()
            self.due = min(self._quiet_since + self._silence, self._limit)


async def first_chunk(name: str, chunks: AsyncIterator[bytes], watchdog: Watchdog,
                      start_timeout: float | None, keepalive: Keepalive | None) -> bytes:
    """The first chunk that is not only the agent's comments (b"" if the body ended).

    Every comment chunk is a sign of life for `watchdog`, which then waits up to
    `start_timeout` from the first one. Raises UpstreamError for an error event sent before
    any content (a model that failed to start: nothing was committed, so the caller may fall
    back).
    """
    first_note = True
    while True:
        chunk = await anext(chunks, b"")
        if not chunk.startswith(b":") or not _only_comments(chunk):
            break
        if keepalive is not None and AGENT_NOTE in chunk:
            line = chunk[chunk.rfind(AGENT_NOTE):].split(b"\n", 1)[0]
            keepalive.detail = line[2:].decode("utf-8", "replace").strip()
        watchdog.touch(start_timeout if first_note else None)
        first_note = False
    _raise_error_event(name, chunk)
    return chunk


def start_timeout_of(headers: object) -> float | None:
    """The agent's start timeout from a starting stream's headers, else None."""
    get = getattr(headers, "get", None)
    if get is None or get(MODEL_STATE_HEADER, get("X-Model-State")) != "starting":
        return None
    value = get(START_TIMEOUT_HEADER, get("X-Model-Start-Timeout"))
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _only_comments(chunk: bytes) -> bool:
    return all(not line or line.startswith(b":") for line in chunk.split(b"\n"))


def _raise_error_event(name: str, chunk: bytes) -> None:
    start = chunk.find(b"data:")
    if start < 0 or not chunk[start + 5:start + 40].lstrip().startswith(b'{"error"'):
        return
    line = chunk[start + 5:].split(b"\n", 1)[0]
    try:
        error = orjson.loads(line)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return
    if not isinstance(error, dict):
        return
    code = error.get("code") if isinstance(error.get("code"), str) else None
    raise UpstreamError(f"backend {name} failed before answering: {error.get('message')}",
                        status=503, code=code)
