"""Ops-channel alerts: backend down/up transitions without flapping spam, and gaming notices.

The registry already applies hysteresis (one call per real transition). On top of that
`AlertThrottle` allows at most one alert per backend per `cooldown` seconds: a transition inside
the cooldown is held back, and when the cooldown ends one summary is posted if the backend's
state then differs from the last one announced ("3090 is down (changed 4 times in 5 min)").
The throttle is pure: the caller passes the clock, so it is tested without waiting.

`HeldMessages` keeps the ops messages that could not be posted while the bot is logged out
(Mattermost down at start, or unreachable later), oldest first and bounded: beyond `limit` the
oldest are dropped and counted, and the delivery after the reconnect says how many were lost.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from bot.reports import DISPLAY

__all__ = ["AlertThrottle", "HeldMessages", "Pending", "alert_text", "dropped_notice",
           "gaming_notice"]


@dataclass
class Pending:
    """What one backend did since its last announced alert."""

    announced: bool | None = None  # state in the last alert (None: never announced)
    announced_at: float = float("-inf")
    latest: bool | None = None
    latest_error: str | None = None
    changes: int = 0
    flush_scheduled: bool = False


@dataclass
class AlertThrottle:
    """At most one alert per backend per `cooldown` seconds. Not thread-safe (loop only)."""

    cooldown: float = 300.0
    _state: dict[str, Pending] = field(default_factory=dict)

    def offer(self, name: str, healthy: bool, error: str | None, now: float) -> float | None:
        """Record a transition. Returns 0.0 to announce now, or the delay after which the caller
        should call `flush(name, ...)` (only the first held-back transition returns a delay;
        later ones return None because a flush is already due)."""
        p = self._state.setdefault(name, Pending())
        p.latest, p.latest_error = healthy, error
        p.changes += 1
        wait = p.announced_at + self.cooldown - now
        if wait <= 0:
            self._announce(p, now)
            return 0.0
        if p.flush_scheduled:
            return None
        p.flush_scheduled = True
        return wait

    def flush(self, name: str, now: float) -> tuple[bool, str | None, int] | None:
        """After a held-back transition: (state, error, changes) to announce, or None when the
        backend ended where it was last announced (a flap nobody needs to hear about)."""
        p = self._state.get(name)
        if p is None:
            return None
        p.flush_scheduled = False
        if p.latest is None or p.latest == p.announced:
            p.changes = 0
            return None
        changes = p.changes
        self._announce(p, now)
        return p.latest, p.latest_error, changes

    @staticmethod
    def _announce(p: Pending, now: float) -> None:
        p.announced, p.announced_at, p.changes = p.latest, now, 0


@dataclass
class HeldMessages:
    """Ops messages waiting for Mattermost, oldest first, at most `limit`. Loop only.

    Deliver with `first()` / `delivered()` so a failure in the middle keeps the rest in order."""

    limit: int = 50
    dropped: int = 0
    """Messages pushed out by newer ones since the last delivery (see `dropped_notice`)."""
    _items: deque[str] = field(default_factory=deque)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, text: str) -> None:
        if len(self._items) >= self.limit:
            self._items.popleft()
            self.dropped += 1
        self._items.append(text)

    def first(self) -> str | None:
        return self._items[0] if self._items else None

    def delivered(self) -> None:
        """The message `first()` returned was posted."""
        self._items.popleft()


def dropped_notice(count: int) -> str:
    """Posted before the held messages when some of them were dropped."""
    return (f":warning: {count} older ops message{'s' if count != 1 else ''} "
            f"{'were' if count != 1 else 'was'} dropped while Mattermost was unreachable "
            "(only the newest are kept); the router log has every alert.")


def alert_text(name: str, healthy: bool, error: str | None, changes: int = 1,
               cooldown: float = 0.0, label: str | None = None) -> str:
    """The ops-channel line for a backend transition (`label`: its configured display name)."""
    label = label or DISPLAY.get(name, name)
    if healthy:
        text = f":white_check_mark: Backend **{label}** is back up and available for routing."
    else:
        why = f": {error}" if error else ""
        text = f":red_circle: Backend **{label}** is down{why}. Requests go to the other backends."
    if changes > 1:
        text += f" (It changed state {changes} times in the last {cooldown / 60:.0f} min.)"
    return text


def gaming_notice(enabled: bool, actor: str, source: str, labels: tuple[str, ...] = ("3090",)) -> str:
    """The ops-channel notice for a gaming-mode change (`source`: bot, slash, admin, observed…);
    `labels` are the gaming backends it concerns."""
    who = "the gaming PC itself" if source == "observed" else f"{actor} ({source})"
    names = ", ".join(labels) or "3090"
    if enabled:
        return (f":video_game: Gaming mode **ON**, set by {who}. "
                f"{names} will only respond to force-big requests.")
    verb = "is" if len(labels) <= 1 else "are"
    return f":robot_face: Gaming mode **OFF**, set by {who}. {names} {verb} available for routing."
