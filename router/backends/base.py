"""The one interface every backend implements, and the values that cross it.

A backend turns an OpenAI request into an `Upstream`: a status, headers and a body that is either
complete bytes or an async iterator of raw chunks (SSE for streams, passed through untouched).
`send` returns as soon as the upstream's status is known, so the proxy can still fall back to the
next candidate until the first byte reaches the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from router.errors import StreamBroken, UpstreamError

__all__ = ["Backend", "HealthReport", "ModelInfo", "StreamBroken", "Upstream", "UpstreamError"]


@dataclass(frozen=True)
class ModelInfo:
    """A model a backend serves, with its context window when the backend reports one."""

    id: str
    max_model_len: int | None = None


@dataclass(frozen=True)
class HealthReport:
    """What one health check saw. `gaming_mode` is set only by hosts that carry the switch."""

    healthy: bool
    models: tuple[ModelInfo, ...] = ()
    error: str | None = None
    latency_ms: float | None = None
    gaming_mode: bool | None = None
    start_timeout: float | None = None  # an inference agent's longest model start (START_TIMEOUT)


@dataclass
class Upstream:
    """An upstream answer whose status is known. Iterate `chunks` once; always `release()`."""

    status: int
    content_type: str
    chunks: AsyncIterator[bytes]
    release: Callable[[], Awaitable[None]]
    model: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names are found


class Backend(Protocol):
    """A place requests can go. Safe to use from many tasks at once."""

    name: str
    url: str

    async def send(self, path: str, body: dict[str, object], *, stream: bool,
                   headers: dict[str, str], header_timeout: float | None = None) -> Upstream:
        """Forward an OpenAI request (`path` like `/v1/chat/completions`; `body["model"]` already
        set to the backend's model id). Returns once the status is known; raises UpstreamError
        for failures before that (and for error statuses, with `status` and `body` set).

        `header_timeout`: the longest wait for the status, when the caller bounds the wait
        itself (the router's watchdog: a cold model may take longer than the read timeout);
        None is the backend's read timeout."""
        ...

    async def check_health(self) -> HealthReport:
        """One health check. Never raises; a failure is a report with healthy=False."""
        ...

    def resolve_model(self, hint: str | None, models: tuple[ModelInfo, ...]) -> str:
        """The backend model id to send for an alias hint (e.g. "claude") or a requested id."""
        ...

    async def close(self) -> None:
        ...
