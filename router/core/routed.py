"""The values of one routed request: its generation, plan, native body, and the answer handle.

`Routed` is what `RouterService.route` yields: the first bytes of an upstream answer, the rest
to stream, and `finish`, which releases the upstream and records the decision row (once).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict

from router.backends.base import Upstream
from router.config import Topology
from router.core.policy import BackendView, Decision, RuleSet
from router.core.registry import BackendState
from router.settings import Settings
from router.store.decision_log import DecisionRow
from router.wire import chat as req
from router.wire.usage import UsageMeter


class RowSink(Protocol):
    """Where a finished request's decision row goes (the service)."""

    def finish_row(self, row: DecisionRow, status: int, error: str | None, started: float,
                   prompt_tokens: int | None = None,
                   completion_tokens: int | None = None) -> None: ...


@dataclass(frozen=True)
class Generation:
    """One configuration of the lab: the topology and the rules built from it.

    Swapped whole on reload together with the registry's states, so a request planned on one
    generation is sent on the same one (never a mix of old and new).
    """

    topology: Topology
    rules: RuleSet
    force_big_models: frozenset[str]

    @classmethod
    def of(cls, topology: Topology, settings: Settings) -> Generation:
        gaming = frozenset(topology.gaming_backends)
        rules = RuleSet(topology.rules, topology.fallback, gaming, settings.min_answer_tokens)
        return cls(topology, rules, req.FORCE_BIG_MODELS | gaming)


@dataclass
class Planned:
    """A routing decision for one request, before anything is sent."""

    body: dict[str, Any]
    decision: Decision
    target_backend: str | None
    hint: str | None
    estimated_tokens: int
    force_big: bool
    gaming_mode: bool
    states: dict[str, BackendState] = field(default_factory=dict)
    views: dict[str, BackendView] = field(default_factory=dict)  # what the policy saw

    def as_json(self, model_for: dict[str, str]) -> dict[str, Any]:
        return {
            "backend": self.decision.backend,
            "model": model_for.get(self.decision.backend or "", None),
            "reason": self.decision.reason,
            "estimated_tokens": self.estimated_tokens,
            "gaming_mode": self.gaming_mode,
            "force_big": self.force_big,
            "candidates": list(self.decision.candidates),
            "skipped": self.decision.skipped,
        }


@dataclass(frozen=True)
class NativeRequest:
    """The client's own body in another wire API, for backends that serve that API natively.

    The service plans with the Chat Completions translation of a Messages or Responses request;
    a candidate whose `apis` include `api` gets `body` (with `model` rewritten) sent to `path`
    untouched instead, and the `Routed` it returns says `native=True`.
    """

    api: str  # "messages" | "responses"
    path: str  # "/v1/messages" | "/v1/responses"
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. the client's anthropic-beta


@dataclass
class Routed:
    """An upstream answer that has produced its first bytes. Stream `rest`, then `finish`.

    `native` is True when the backend answered in the client's own wire API (see NativeRequest);
    otherwise the answer is Chat Completions (or the endpoint the request was planned for).
    """

    service: RowSink
    row: DecisionRow
    upstream: Upstream
    first: bytes
    backend: str
    model: str
    reason: str
    started: float
    native: bool = False
    state: BackendState | None = None
    clamped: int | None = None  # the max_tokens forwarded, when it was lowered to fit
    meter: UsageMeter = field(default_factory=UsageMeter)
    outcome: tuple[int, str | None] | None = None  # set by `fail`; else the upstream's status
    _done: bool = False

    def rest(self) -> AsyncIterator[bytes]:
        """The chunks after `first`, each fed to the usage meter on its way."""
        return _Metered(self.upstream.chunks, self.meter)

    async def whole(self) -> bytes:
        """`first` and the rest of the body, all of it (a non-streaming answer)."""
        parts = [self.first]
        async for chunk in self.rest():
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def fail(self, status: int, error: str) -> None:
        """Record that the answer failed after all (a broken stream, an unusable body), for the
        row `RouterService.route` finishes on the way out."""
        self.outcome = (status, error)

    async def finish(self, status: int, error: str | None = None) -> None:
        """Release the upstream and record the decision row. Idempotent."""
        if self._done:
            return
        self._done = True
        if self.state is not None:
            self.state.active -= 1
        await self.upstream.release()
        self.service.finish_row(self.row, status, error, self.started,
                                self.meter.prompt_tokens, self.meter.completion_tokens)


@dataclass(frozen=True)
class ReloadResult:
    origin: str
    backends: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    restart_needed: tuple[str, ...]  # settings that changed but apply only after a restart

    def summary(self) -> str:
        text = (f"Configuration reloaded from {self.origin}: backends "
                f"{', '.join(self.backends) or 'none'}")
        if self.changed:
            text += f"; new or changed: {', '.join(self.changed)}"
        if self.removed:
            text += f"; removed: {', '.join(self.removed)}"
        if self.restart_needed:
            text += f". Restart to apply: {', '.join(self.restart_needed)}"
        return text + "."


@dataclass(frozen=True)
class ChatChunk:
    text: str
    backend: str
    model: str
    reason: str


class ModelStatus(TypedDict):
    id: str
    max_model_len: int | None


class BackendStatus(TypedDict):
    """One backend in `GET /status` (and the bot's and dashboard's views of it)."""

    name: str
    label: str
    kind: str | None
    url: str  # credentials redacted
    healthy: bool
    gaming: bool
    gated: bool
    explicit_only: bool
    context_window: int | None
    models: list[ModelStatus]
    latency_ms: float | None
    last_error: str | None


class LogStatus(TypedDict):
    queued: int
    written: int
    dropped: int


class RouterStatus(TypedDict):
    """`GET /status`: JSON-ready as it is."""

    gaming_mode: bool
    gaming: dict[str, bool]
    small_token_threshold: int
    medium_token_threshold: int
    config: str
    backends: list[BackendStatus]
    decision_log: LogStatus


class _Metered:
    """`chunks`, each fed to `meter` (an iterator class: no async generator per request)."""

    __slots__ = ("_chunks", "_meter")

    def __init__(self, chunks: AsyncIterator[bytes], meter: UsageMeter) -> None:
        self._chunks, self._meter = chunks, meter

    def __aiter__(self) -> _Metered:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._chunks.__anext__()
        self._meter.feed(chunk)
        return chunk
