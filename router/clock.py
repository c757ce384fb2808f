"""One coarse clock for many deadlines, instead of a timer per wait.

Every request waits on deadlines: the first-byte watchdog (`core.waiting.Watchdog`), the
upstream read timeout (`backends.http1`), a stream's keep-alive notes (`core.waiting.Keepalive`).
A timer each is a handle made, pushed on the loop's heap and cancelled per wait (under uvloop
also a libuv timer opened and closed), a few microseconds of CPU per request in all. The waits
here are seconds long (a verdict up to TICK late changes nothing), so a `WatchClock` ticks every
TICK seconds while anything is registered, and not at all while idle; registering is a set
insertion.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Due(Protocol):
    """What a `WatchClock` watches: `fire(now)` is called once loop time passes `due`."""

    due: float  # loop time; float("inf") while there is nothing to do

    def fire(self, now: float) -> None: ...


class WatchClock:
    """The one clock of a loop's deadlines: a tick every TICK seconds while any is registered,
    none while idle. Loop-only. A deadline fires at most TICK late."""

    TICK = 0.05

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._watching: set[Due] = set()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, item: Due) -> None:
        self._watching.add(item)
        if self._handle is None:
            self._handle = self.loop.call_later(self.TICK, self._tick)

    def discard(self, item: Due) -> None:
        self._watching.discard(item)

    def _tick(self) -> None:
        now = self.loop.time()
        for item in [item for item in self._watching if item.due <= now]:
            item.fire(now)
        self._handle = self.loop.call_later(self.TICK, self._tick) if self._watching else None
