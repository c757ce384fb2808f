"""The backend registry: which backends exist, what they serve, and whether they are healthy.

Health follows the checks with hysteresis: a healthy backend is marked down after
`unhealthy_after` consecutive failed checks, and a down one up after `healthy_after` successes.
A request that fails before the first byte counts as a failed check too, so a dead backend
leaves the rotation without waiting for the next scheduled check. Listeners hear each up/down
transition once (the bot turns them into alerts).

Everything here runs on the event loop; `views()` is a cheap snapshot for the policy. A reload
(`replace`) swaps in a new `states` dict at once: a request that took the old one keeps using it,
unchanged backends keep their state (health, pools), and removed ones are closed once idle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from router.backends.base import Backend, HealthReport, ModelInfo
from router.config import BackendSpec
from router.core.policy import BackendView

log = logging.getLogger(__name__)

Listener = Callable[[str, bool, str | None], Awaitable[None]]
GamingListener = Callable[[str, bool], Awaitable[None]]  # (backend name, gaming mode on)
OPENCODE_CONTEXT = 200_000
CHAT_ONLY: frozenset[str] = frozenset({"chat"})


@dataclass
class BackendState:
    """The registry's view of one backend. Mutated only by the registry."""

    name: str
    client: Backend
    spec: BackendSpec | None = None
    healthy: bool = False
    checked: bool = False
    models: tuple[ModelInfo, ...] = ()
    latency_ms: float | None = None
    last_error: str | None = None
    last_check: float | None = None
    failures: int = 0
    successes: int = 0
    active: int = 0  # requests holding this backend's client (a retired one closes at 0)
    start_timeout: float | None = None  # an inference agent's longest model start, as it says
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.spec.label if self.spec else self.name

    @property
    def apis(self) -> frozenset[str]:
        """Wire APIs the backend serves natively ("chat", "messages", "responses")."""
        return self.spec.apis if self.spec is not None else CHAT_ONLY

    @property
    def context_window(self) -> int | None:
        if self.spec is not None and self.spec.context_window:
            return self.spec.context_window
        windows = [m.max_model_len for m in self.models if m.max_model_len]
        if windows:
            return max(windows)
        # An OpenCode session's providers have large windows it does not report.
        return OPENCODE_CONTEXT if self.spec is not None and self.spec.kind == "opencode" else None

    @property
    def served(self) -> tuple[ModelInfo, ...]:
        """The models to show and route by: the reported ones, else the configured list."""
        if self.models or self.spec is None:
            return self.models
        return tuple(ModelInfo(m) for m in self.spec.models)


class BackendRegistry:
    """Holds every configured backend. One per router; not thread-safe (loop only)."""

    def __init__(self, backends: list[Backend], *, unhealthy_after: int = 2,
                 healthy_after: int = 1, specs: dict[str, BackendSpec] | None = None) -> None:
        specs = specs or {}
        self.states: dict[str, BackendState] = {
            b.name: BackendState(b.name, b, specs.get(b.name)) for b in backends}
        self._unhealthy_after = unhealthy_after
        self._healthy_after = healthy_after
        self._listeners: list[Listener] = []
        self._gaming_listeners: list[GamingListener] = []
        self._retired: list[BackendState] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._views: dict[str, BackendView] = {}
        self._served: dict[str, str] = {}
        self._rebuild()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_gaming_listener(self, listener: GamingListener) -> None:
        self._gaming_listeners.append(listener)

    def get(self, name: str) -> BackendState | None:
        return self.states.get(name)

    def views(self) -> dict[str, BackendView]:
        return self._views

    def served_models(self) -> dict[str, str]:
        """Backend model id -> backend name, for routing requests that name a served model."""
        return self._served

    async def check_all(self) -> None:
        """Check every backend concurrently, apply the results, and wait for the listeners."""
        names = list(self.states)
        results = await asyncio.gather(*(self.states[n].client.check_health() for n in names),
                                       return_exceptions=True)
        before = set(self._tasks)
        for name, result in zip(names, results):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):  # cancellation, interpreter exit
                    raise result
                # check_health must not raise; one that does must not hide the others' results.
                log.error("health check of backend %s raised", name, exc_info=result)
                result = HealthReport(False, error=f"health check failed: "
                                                   f"{type(result).__name__}: {result}")
            self.apply(name, result)
        spawned = self._tasks - before
        if spawned:
            await asyncio.wait(spawned)

    def apply(self, name: str, report: HealthReport) -> None:
        self._apply(self.states[name], report)
        self._rebuild()

    def _apply(self, state: BackendState, report: HealthReport) -> None:
        name = state.name
        state.last_check = time.time()
        state.latency_ms = report.latency_ms
        if report.start_timeout is not None:
            state.start_timeout = report.start_timeout
        if report.healthy:
            state.models = report.models or state.models
            state.last_error = None
            state.successes += 1
            state.failures = 0
            if not state.healthy and (not state.checked or state.successes >= self._healthy_after):
                self._transition(state, True, None)
        else:
            state.last_error = report.error
            state.failures += 1
            state.successes = 0
            if state.healthy and state.failures >= self._unhealthy_after:
                self._transition(state, False, report.error)
            elif not state.checked:
                log.warning("backend %s is down at start: %s", name, report.error)
        state.checked = True
        if report.gaming_mode is not None:
            for gaming_listener in self._gaming_listeners:
                self._spawn(gaming_listener(name, report.gaming_mode))

    def report_failure(self, name: str, error: str) -> None:
        """A live request failed before its first byte: count it like a failed check."""
        if name in self.states:  # not a backend a reload has removed meanwhile
            self.apply(name, HealthReport(False, error=error))

    async def replace(self, clients: list[Backend], specs: dict[str, BackendSpec]) -> None:
        """Swap in a new set of backends (a reload).

        `clients` are the new or changed backends: each gets its first health check before the
        swap, so no request sees it as down in between. A backend whose spec is unchanged keeps
        its state and client. Removed or changed ones are closed once no request holds them.
        """
        fresh = {client.name: BackendState(client.name, client, specs[client.name])
                 for client in clients}
        reports = await asyncio.gather(*(s.client.check_health() for s in fresh.values()),
                                       return_exceptions=True)
        for state, report in zip(fresh.values(), reports):
            if isinstance(report, BaseException):
                if not isinstance(report, Exception):
                    raise report
                report = HealthReport(False, error=f"health check failed: {report}")
            self._apply(state, report)
        states = {name: fresh.get(name) or self.states[name] for name in specs}
        for name, old in self.states.items():
            if states.get(name) is not old:
                self._retired.append(old)
        self.states = states
        self._rebuild()
        if self._retired:
            self._spawn(self._close_retired())

    async def _close_retired(self) -> None:
        """Close retired clients once the requests that hold them have finished."""
        while self._retired:
            idle = [s for s in self._retired if s.active == 0]
            for state in idle:
                self._retired.remove(state)
                await state.client.close()
            if self._retired:
                await asyncio.sleep(0.5)

    def _transition(self, state: BackendState, healthy: bool, error: str | None) -> None:
        was_checked = state.checked
        state.healthy = healthy
        log.log(logging.INFO if healthy else logging.WARNING, "backend %s is %s%s", state.name,
                "up" if healthy else "down", f": {error}" if error else "")
        if not was_checked:
            return  # the first check's result is not news
        for listener in self._listeners:
            self._spawn(listener(state.name, healthy, error))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("registry listener failed", exc_info=task.exception())

    def _rebuild(self) -> None:
        views: dict[str, BackendView] = {}
        served: dict[str, str] = {}
        for name, state in self.states.items():
            spec = state.spec
            models = state.served
            views[name] = BackendView(name, True, state.healthy, state.context_window,
                                      tuple(m.id for m in models),
                                      client_tools=spec.client_tools if spec else True,
                                      explicit_only=spec.explicit_only if spec else False)
            for model in models:
                served.setdefault(model.id, name)
        self._views = views
        self._served = served

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(s.client.close() for s in (*self.states.values(), *self._retired)),
                             return_exceptions=True)
