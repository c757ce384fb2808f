"""Gaming mode: the router's copy of the gaming PC's switch, and the way to flip it.

The gaming PC's agent owns the switch. The router reads it back through the 3090 health check
(`GAMING_MODE_URL`), changes it with `POST {GAMING_PC_URL}/gaming-mode`, and keeps the last known
state and every change (with who made it) in the database, so a restart while the PC is off
still knows. A change made while the PC is unreachable is kept as pending and applied as soon as
the PC answers again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from sqlalchemy import Engine, select
from sqlmodel import Session

from router.store.models import GamingModeChange

log = logging.getLogger(__name__)

ChangeListener = Callable[[bool, str, str], Awaitable[None]]


@dataclass(frozen=True)
class GamingChange:
    enabled: bool
    applied: bool  # False: the gaming PC was unreachable; the change is pending
    message: str


class GamingMode:
    """The gaming-mode switch as the router sees it. Loop-only; one per router."""

    def __init__(self, engine: Engine, gaming_pc_url: str | None, *, timeout: float = 5.0) -> None:
        self._engine = engine
        self._url = gaming_pc_url
        self._timeout = timeout
        self.enabled = False
        self._pending: bool | None = None
        self._listeners: list[ChangeListener] = []
        self._lock = asyncio.Lock()

    def add_listener(self, listener: ChangeListener) -> None:
        """Called with (enabled, actor, source) after every change, observed ones included."""
        self._listeners.append(listener)

    async def load(self) -> None:
        """Restore the last known state from the database."""
        self.enabled = await asyncio.to_thread(self._last_known)

    def _last_known(self) -> bool:
        with Session(self._engine) as session:
            row = session.exec(select(GamingModeChange.enabled)  # type: ignore[call-overload]
                               .order_by(GamingModeChange.id.desc()).limit(1)).first()  # type: ignore[union-attr]
        return bool(row[0]) if row else False

    async def set(self, enabled: bool, actor: str, source: str) -> GamingChange:
        """Turn gaming mode on or off on the gaming PC and remember who did it."""
        async with self._lock:
            applied = True
            note = ""
            if self._url:
                try:
                    async with httpx.AsyncClient(timeout=self._timeout) as client:
                        response = await client.post(f"{self._url}/gaming-mode",
                                                     json={"enabled": enabled})
                        response.raise_for_status()
                except httpx.HTTPError as exc:
                    applied = False
                    self._pending = enabled
                    note = (f" The gaming PC could not be reached ({type(exc).__name__}); the change"
                            " is kept and applied when it answers.")
                    log.warning("gaming mode change to %s not applied: %s", enabled, exc)
            changed = self.enabled != enabled
            self.enabled = enabled
            await asyncio.to_thread(self._store, enabled, actor, source, applied)
            if changed:
                await self._notify(enabled, actor, source)
            state = "enabled" if enabled else "disabled"
            return GamingChange(enabled, applied, f"Gaming mode {state}.{note}")

    async def observe(self, enabled: bool) -> None:
        """The gaming PC reported its state (health check). Apply a pending change first."""
        if self._pending is not None and self._pending != enabled and self._url:
            pending = self._pending
            self._pending = None
            await self.set(pending, "router", "pending")
            return  # applied, or pending again (set() keeps it): the PC's old state is stale
        self._pending = None
        if enabled != self.enabled:
            async with self._lock:
                self.enabled = enabled
                await asyncio.to_thread(self._store, enabled, "gaming-pc", "observed", True)
            await self._notify(enabled, "gaming-pc", "observed")

    def _store(self, enabled: bool, actor: str, source: str, applied: bool) -> None:
        with Session(self._engine) as session:
            session.add(GamingModeChange(enabled=enabled, actor=actor, source=source, applied=applied))
            session.commit()

    async def _notify(self, enabled: bool, actor: str, source: str) -> None:
        for listener in self._listeners:
            try:
                await listener(enabled, actor, source)
            except Exception:  # a listener's failure must not undo the change
                log.exception("gaming mode listener failed")
