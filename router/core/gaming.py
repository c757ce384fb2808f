"""Gaming mode: the router's copy of each gaming host's switch, and the way to flip it.

Every `agent` backend with `gaming = true` (the seed's 3090) owns a switch on its host. The router
reads it back through that backend's health check (its agent's `/status`), changes it with
`POST {agent}/gaming-mode`, and keeps the last known state and every change (with who made it
and for which backend) in the database, so a restart while a PC is off still knows. A change made
while a host is unreachable is kept as pending and applied as soon as the host answers again.

With no gaming backend configured there is still one switch (stored with no backend): the
policy's gaming rules read it, and it gates nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Engine

from router.store import queries

log = logging.getLogger(__name__)

ChangeListener = Callable[[bool, str, str], Awaitable[None]]
NO_HOST = ""  # the switch's key when no gaming backend is configured


@dataclass(frozen=True)
class GamingChange:
    enabled: bool
    applied: bool  # False: a gaming host was unreachable; the change is pending there
    message: str
    backends: tuple[str, ...] = ()  # the gaming backends the change was for
    hosts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # their new /status


@dataclass
class _Host:
    name: str
    url: str | None  # the agent's base URL; None for the no-host switch
    enabled: bool = False
    pending: bool | None = None


class GamingMode:
    """The gaming-mode switches as the router sees them. Loop-only; one per router.

    `hosts` maps each gaming backend's name to its agent's base URL.
    """

    def __init__(self, engine: Engine, hosts: Mapping[str, str], *, timeout: float = 5.0) -> None:
        self._engine = engine
        self._timeout = timeout
        self._hosts: dict[str, _Host] = {}
        self._listeners: list[ChangeListener] = []
        self._lock = asyncio.Lock()
        self.configure(hosts)

    def configure(self, hosts: Mapping[str, str]) -> None:
        """Set the gaming backends (at start and on reload); known ones keep their state."""
        old = self._hosts
        self._hosts = {name: old.get(name) or _Host(name, url) for name, url in hosts.items()}
        for name, url in hosts.items():
            self._hosts[name].url = url
        if not self._hosts:
            self._hosts[NO_HOST] = old.get(NO_HOST) or _Host(NO_HOST, None)

    @property
    def enabled(self) -> bool:
        """True when any gaming host is in gaming mode."""
        return any(host.enabled for host in self._hosts.values())

    @property
    def states(self) -> dict[str, bool]:
        """Gaming backend name -> gaming mode on (empty when none is configured)."""
        return {name: h.enabled for name, h in self._hosts.items() if name != NO_HOST}

    def for_policy(self) -> tuple[bool, frozenset[str] | None]:
        """`enabled` and `gamed()` in one pass (both go into every request's Features)."""
        if NO_HOST in self._hosts:
            return self._hosts[NO_HOST].enabled, None
        gamed = frozenset(name for name, host in self._hosts.items() if host.enabled)
        return bool(gamed), gamed

    def gamed(self) -> frozenset[str] | None:
        """The gaming backends in gaming mode, for the policy (None: no gaming backend)."""
        return self.for_policy()[1]

    def pending(self, name: str) -> bool | None:
        host = self._hosts.get(name)
        return host.pending if host else None

    def add_listener(self, listener: ChangeListener) -> None:
        """Called with (enabled, actor, source) after every change, observed ones included."""
        self._listeners.append(listener)

    async def load(self) -> None:
        """Restore the last known states from the database."""
        known = await asyncio.to_thread(queries.last_gaming_states, self._engine)
        for name, host in self._hosts.items():
            host.enabled = known.get(name, known.get(None, False))

    async def set(self, enabled: bool, actor: str, source: str,
                  backend: str | None = None) -> GamingChange:
        """Turn gaming mode on or off on every gaming host (or on `backend` only).

        Raises KeyError when `backend` is not a gaming backend.
        """
        hosts = [self._hosts[backend]] if backend is not None else list(self._hosts.values())
        async with self._lock:
            unreachable: list[str] = []
            statuses: dict[str, Mapping[str, Any]] = {}
            changed = False
            for host in hosts:
                status = await self._post(host, enabled)
                applied = status is not None
                if status:
                    statuses[host.name] = status
                if not applied:
                    unreachable.append(host.name)
                changed |= host.enabled != enabled
                host.enabled = enabled
                await asyncio.to_thread(queries.store_gaming_change, self._engine, enabled, actor,
                                        source, applied, host.name or None)
            if changed:
                await self._notify(enabled, actor, source)
        state = "enabled" if enabled else "disabled"
        note = ""
        if unreachable:
            which = "The gaming PC" if unreachable == [NO_HOST] or len(self._hosts) == 1 \
                else "Gaming host " + ", ".join(unreachable)
            note = (f" {which} could not be reached; the change is kept and applied when it "
                    "answers.")
        names = tuple(h.name for h in hosts if h.name != NO_HOST)
        return GamingChange(enabled, not unreachable, f"Gaming mode {state}.{note}", names,
                            statuses)

    async def _post(self, host: _Host, enabled: bool) -> Mapping[str, Any] | None:
        """Flip the host's switch; its new status (empty without a host), None if unreachable."""
        if not host.url:
            return {}
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(f"{host.url}/gaming-mode", json={"enabled": enabled})
                response.raise_for_status()
                status = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            host.pending = enabled
            log.warning("gaming mode change to %s not applied on %s: %s", enabled, host.name, exc)
            return None
        host.pending = None
        return status if isinstance(status, dict) else {}

    async def observe(self, name: str, enabled: bool) -> None:
        """Gaming host `name` reported its state (health check). Apply a pending change first."""
        host = self._hosts.get(name)
        if host is None:
            return
        if host.pending is not None and host.pending != enabled and host.url:
            pending = host.pending
            host.pending = None
            await self.set(pending, "router", "pending", name)
            return  # applied, or pending again (set() keeps it): the host's old state is stale
        host.pending = None
        if enabled != host.enabled:
            async with self._lock:
                host.enabled = enabled
                await asyncio.to_thread(queries.store_gaming_change, self._engine, enabled,
                                        "gaming-pc", "observed", True, name)
            await self._notify(enabled, "gaming-pc", "observed")

    async def _notify(self, enabled: bool, actor: str, source: str) -> None:
        for listener in self._listeners:
            try:
                await listener(enabled, actor, source)
            except Exception:  # a listener's failure must not undo the change
                log.exception("gaming mode listener failed")
