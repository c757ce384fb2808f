"""The in-process router: decide where a request goes, open it with fallback, log the decision.

`RouterService` is shared by the HTTP endpoint and the Mattermost bot (no HTTP hop to itself).
`async with service.route(...) as routed:` plans the request, opens it with fallback until a
backend has produced its first bytes (a failing candidate, refused, timed out, hung, 5xx, 429,
is skipped for the next one), and finishes its decision row exactly once on every outcome.
`reload()` swaps in a new configuration generation for new requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from sqlalchemy import Engine

from router.backends.base import Backend, StreamBroken, Upstream, UpstreamError
from router.backends.factory import build_topology, make_client
from router.clock import WatchClock
from router.config import Topology
from router.core import tokens
from router.core.answers import INVALID_ANSWER, client_error, not_an_answer, snippet
from router.core.gaming import GamingMode
from router.core.policy import Features, decide, is_complex
from router.core.registry import BackendRegistry, BackendState
from router.core.routed import (
    BackendStatus,
    ChatChunk,
    Generation,
    NativeRequest,
    Planned,
    ReloadResult,
    Routed,
    RouterStatus,
)
from router.core.waiting import (
    PROBE_TIMEOUT,
    Keepalive,
    Notify,
    Watchdog,
    first_chunk,
    start_timeout_of,
)
from router.errors import ContextLengthExceeded, NoBackendAvailable, RouterError
from router.logs import new_request_id, request_id_var
from router.metrics import Metrics
from router.settings import Settings, redact_url
from router.store.decision_log import DecisionLog, DecisionRow
from router.wire import chat as req
from router.wire.sse import SSEText, checked

log = logging.getLogger(__name__)


class RouterService:
    """The router's core. One per process; all methods run on the event loop."""

    def __init__(self, settings: Settings, topology: Topology, registry: BackendRegistry,
                 gaming: GamingMode, decisions: DecisionLog, metrics: Metrics | None = None, *,
                 engine: Engine) -> None:
        self.settings = settings
        self.engine = engine  # for the store's queries (bot, dashboard); the service runs none
        self.registry = registry
        self.gaming = gaming
        self.decisions = decisions
        self.metrics = metrics or Metrics()
        self.generation = Generation.of(topology, settings)
        self._children: dict[tuple[object, ...], Any] = {}
        self._rejected = _RowBudget(settings.rejected_rows_per_second)
        self._reload_lock = asyncio.Lock()
        self._clock = WatchClock(asyncio.get_running_loop())  # built on the loop it serves

    @property
    def topology(self) -> Topology:
        return self.generation.topology

    # -- deciding --------------------------------------------------------------------------

    async def plan(self, endpoint: str, body: dict[str, Any],
                   headers: Mapping[str, str] | None = None, *, source: str = "api",
                   client: str | None = None) -> Planned:
        """Decide where `body` goes (pure routing, no upstream I/O). Raises RouterError."""
        headers = headers or {}
        # One generation throughout: a reload while the estimate runs must not mix configs.
        generation, states, views = self.generation, self.registry.states, self.registry.views()
        topology = generation.topology
        model = body.get("model")
        target = req.resolve_target(model, topology.aliases, self.registry.served_models(),
                                    states, topology.globs)
        tagged = req.strip_force_big(body) if endpoint == "/v1/chat/completions" else False
        force_big = tagged or req.force_big_header(headers) or model in generation.force_big_models
        estimated = await tokens.estimate(body, self.settings.image_token_budget)
        has_tools = bool(body.get("tools"))
        gaming_mode, gamed = self.gaming.for_policy()
        features = Features(
            target=target.backend, estimated_tokens=estimated, max_tokens=req.max_tokens(body),
            force_big=force_big, gaming_mode=gaming_mode, tools=has_tools,
            client=client, source=source, gamed=gamed,
            complex_task=estimated >= self.settings.complex_task_min_tokens and is_complex(
                req.last_user_text(body), len(body.get("messages") or ()), has_tools),
        )
        decision = decide(features, views, generation.rules)
        return Planned(body, decision, target.backend, target.hint, estimated, force_big,
                       gaming_mode, states, views)

    def model_for(self, planned: Planned) -> dict[str, str]:
        """The backend model id each candidate would get."""
        out: dict[str, str] = {}
        for name in planned.decision.candidates:
            state = planned.states.get(name)
            if state is not None:
                hint = planned.hint if name == planned.target_backend else None
                out[name] = state.client.resolve_model(hint, state.served)
        return out

    # -- sending ---------------------------------------------------------------------------

    def new_row(self, *, request_id: str | None, source: str, client: str | None,
                endpoint: str, body: dict[str, Any]) -> DecisionRow:
        """The decision row of a request about to be routed (`route` fills it in)."""
        model = body.get("model")
        return DecisionRow(request_id or new_request_id(), source, client, endpoint,
                           model if isinstance(model, str) else None, bool(body.get("stream")))

    def route(self, endpoint: str, body: dict[str, Any], row: DecisionRow,
              headers: Mapping[str, str] | None = None, *,
              native: NativeRequest | None = None, notify: Notify | None = None) -> Route:
        """`async with service.route(...) as routed:` the one lifecycle of a routed request.

        Opens it (see `open`; its RouterError propagates with the row recorded), gives the block
        the answer to relay, and finishes the decision row exactly once on the way out: with
        what the block set by `routed.fail`, else the upstream's status; 502 for a StreamBroken;
        499 when the caller left (cancelled, disconnected, a generator closed); 500 for a bug.
        """
        return Route(self, endpoint, body, row, headers, native, notify)

    async def open(self, endpoint: str, body: dict[str, Any], row: DecisionRow,
                   headers: Mapping[str, str] | None = None, *,
                   native: NativeRequest | None = None, notify: Notify | None = None) -> Routed:
        """Plan and open the request, falling back before the first byte.

        While it waits for a first byte, `notify` (if given) is called every `STREAM_KEEPALIVE`
        seconds with the progress; its notes have all finished when `open` returns or raises.
        Raises RouterError; in that case the decision row is already recorded. A cancellation
        (client gone, shutdown past its grace, the bot giving up) records a 499 row and any other
        unexpected error a 500 row before it propagates, so no routed request goes unlogged.
        """
        started = time.perf_counter()
        keepalive = (Keepalive(notify, self.settings.stream_keepalive, self._clock)
                     if notify else None)
        try:
            return await self._open(endpoint, body, row, headers, started, native, keepalive)
        except BaseException as exc:
            if row.status_code is None:  # not recorded yet: cancelled, or a router bug
                if isinstance(exc, asyncio.CancelledError):
                    log.info("request %s: the caller left before the first byte; the upstream "
                             "request to %s was cancelled", row.request_id,
                             row.backend or "no backend")
                    self.finish_row(row, 499, "cancelled before the first byte", started)
                else:
                    self.finish_row(row, 500, f"router error before the first byte: "
                                    f"{type(exc).__name__}: {exc}", started)
            raise
        finally:
            if keepalive is not None:
                await keepalive.drain()

    async def _open(self, endpoint: str, body: dict[str, Any], row: DecisionRow,
                    headers: Mapping[str, str] | None, started: float,
                    native: NativeRequest | None, keepalive: Keepalive | None) -> Routed:
        try:
            planned = await self.plan(endpoint, body, headers, source=row.source,
                                      client=row.client)
        except RouterError as exc:
            self.finish_row(row, exc.status, exc.message, started)
            raise
        decision = planned.decision
        row.reason = decision.reason
        row.estimated_tokens = planned.estimated_tokens
        row.gaming_mode, row.force_big = planned.gaming_mode, planned.force_big
        row.candidates = ",".join(decision.candidates) or None
        row.skipped = orjson.dumps(decision.skipped).decode() if decision.skipped else None
        if decision.backend is None:
            refusal: RouterError = NoBackendAvailable(decision.why_none() + ".")
            if decision.too_long:
                refusal = ContextLengthExceeded(
                    f"The prompt (about {planned.estimated_tokens} tokens) does not fit the "
                    "context window of any configured backend: " + decision.why_none() + ".",
                    param="messages")
            self.finish_row(row, refusal.status, refusal.message, started)
            raise refusal
        failures: list[dict[str, str]] = []
        last: UpstreamError | None = None
        stream = bool(body.get("stream"))
        for attempt, name in enumerate(decision.candidates):
            state = planned.states[name]
            hint = planned.hint if name == planned.target_backend else None
            model = state.client.resolve_model(hint, state.served)
            row.backend, row.backend_model, row.fallback_attempts = name, model, attempt
            out_headers = {"X-Request-ID": row.request_id}
            if planned.force_big and state.spec is not None and state.spec.gaming:
                out_headers["X-Force-Big"] = "true"
            path, source_body, is_native = endpoint, body, False
            if native is not None and native.api in state.apis:
                path, source_body, is_native = native.path, native.body, True
                out_headers.update(native.headers)
            outgoing, clamped = self._outgoing(state, source_body, model, planned.estimated_tokens,
                                               planned.views[name].context_window)
            row.max_tokens_clamped = clamped
            if keepalive is not None:
                keepalive.watch(name, state.label, bool(state.spec and state.spec.loading_status))
            state.active += 1
            try:
                upstream, first = await self._first_bytes(state, path, outgoing, stream,
                                                          out_headers, keepalive)
            except UpstreamError as exc:
                last = exc
            except Exception as exc:  # a backend bug must not skip the fallback or the row
                log.exception("request %s: backend %s failed unexpectedly", row.request_id, name)
                last = UpstreamError(f"backend {name} failed: {type(exc).__name__}: {exc}")
            except BaseException:
                state.active -= 1
                raise
            else:
                row.ttft_ms = round((time.perf_counter() - started) * 1000, 2)
                routed = Routed(self, row, upstream, first, name, model, decision.reason,
                                started, native=is_native, state=state, clamped=clamped)
                routed.meter.feed(first)
                return routed
            state.active -= 1
            failures.append({"backend": name, "error": last.message})
            row.failures = orjson.dumps(failures).decode()
            self.metrics.fallbacks.labels(name).inc()
            if not last.retriable:
                break
            if last.status == 503 and last.code == "gaming_mode":
                # The gaming PC's agent refused: it is up, but in gaming mode. Learn that now
                # rather than at the next health check, and do not count it against its health.
                await self.gaming.observe(name, True)
            elif last.status is None or last.status >= 500:
                self.registry.report_failure(name, last.message)
            log.warning("request %s: %s; trying the next candidate", row.request_id, last.message)
        assert last is not None
        messages = [f"{f['backend']}: {f['error']}" for f in failures]
        error = client_error(last, messages)
        self.finish_row(row, error.status, "; ".join(messages), started)
        raise error

    def _outgoing(self, state: BackendState, body: dict[str, Any], model: str,
                  estimated: int, window: int | None) -> tuple[dict[str, Any], int | None]:
        """The body for one candidate: its model id, its `defaults`, and `max_tokens` lowered
        to what its context window leaves after the prompt (returned when it was lowered)."""
        spec = state.spec
        outgoing = {**spec.defaults, **body, "model": model} if spec and spec.defaults \
            else {**body, "model": model}
        asked = req.max_tokens(body)
        if window is None or not asked:
            return outgoing, None
        # The estimate is cl100k's count, not the model's tokenizer: keep a 5% margin.
        room = window - estimated - estimated // 20
        if asked <= room:
            return outgoing, None
        clamped = max(room, 1)
        key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        outgoing[key] = clamped
        return outgoing, clamped

    async def _first_bytes(self, state: BackendState, path: str, body: dict[str, Any],
                           stream: bool, headers: dict[str, str],
                           keepalive: Keepalive | None) -> tuple[Upstream, bytes]:
        """Send and wait for the first chunk that commits the answer (not the agent's notes).

        Raises UpstreamError, also when the `Watchdog` finds the backend silent and not
        answering a health check; the upstream is released on every failure.
        """
        client = state.client
        settings = self.settings
        # An agent starting a cold model answers nothing, not even its status line, until the
        # model is up (streams get its notes): wait as long as the agent says a start may take.
        limit = max(settings.first_byte_timeout, settings.read_timeout,
                    (state.start_timeout or 0) + settings.first_byte_timeout)
        watchdog = Watchdog(self._clock, settings.first_byte_timeout, limit,
                            lambda: _healthy(client))
        try:
            async with watchdog:
                return await self._first_chunk(client, path, body, stream, headers, watchdog,
                                               keepalive, limit + PROBE_TIMEOUT + 1)
        except TimeoutError:
            raise UpstreamError(f"backend {client.name} {watchdog.verdict}") from None

    async def _first_chunk(self, client: Backend, path: str, body: dict[str, Any], stream: bool,
                           headers: dict[str, str], watchdog: Watchdog,
                           keepalive: Keepalive | None,
                           header_timeout: float) -> tuple[Upstream, bytes]:
        try:
            # The watchdog bounds the wait; the transport's own timeout is only its backstop.
            upstream = await client.send(path, body, stream=stream, headers=headers,
                                         header_timeout=header_timeout)
        except StreamBroken as exc:  # e.g. OpenCode's event stream ending before any output
            raise UpstreamError(str(exc)) from None
        try:
            if stream:
                if not upstream.content_type.startswith("text/event-stream"):
                    head = await anext(upstream.chunks, b"")
                    raise UpstreamError(f"backend {client.name} answered HTTP "
                                        f"{upstream.status} to a stream with "
                                        f"{upstream.content_type!r}, not an event stream "
                                        f"({snippet(head)!r})", code=INVALID_ANSWER)
                upstream = dataclasses.replace(
                    upstream, chunks=checked(client.name, upstream.chunks))
                first = await first_chunk(client.name, upstream.chunks, watchdog,
                                          start_timeout_of(upstream.headers), keepalive)
            else:
                first = await anext(upstream.chunks, b"")
            if not first:
                raise UpstreamError(f"backend {client.name} closed the response without a body")
            problem = not_an_answer(first, stream, upstream.content_type)
            if problem is not None:
                raise UpstreamError(f"backend {client.name} answered HTTP {upstream.status} "
                                    f"with {problem}", code=INVALID_ANSWER)
        except StreamBroken as exc:
            await upstream.release()
            raise UpstreamError(str(exc)) from None
        except BaseException:
            await upstream.release()
            raise
        return upstream, first

    # -- logging ---------------------------------------------------------------------------

    def finish_row(self, row: DecisionRow, status: int, error: str | None, started: float,
                   prompt_tokens: int | None = None, completion_tokens: int | None = None) -> None:
        """Finish `row` with its outcome and record it (exactly once per request: see `route`)."""
        elapsed = time.perf_counter() - started
        row.status_code, row.error = status, error
        row.latency_ms = round(elapsed * 1000, 2)
        row.prompt_tokens, row.completion_tokens = prompt_tokens, completion_tokens
        self.decisions.record(row)
        ttft = row.ttft_ms
        self.metrics.requests.observe(row.backend or "none", row.reason or "none", status,
                                      elapsed, None if ttft is None else ttft / 1000,
                                      prompt_tokens, completion_tokens)

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, cached: prometheus' `labels()` validates and takes a lock
        on every call. Label values come from small fixed sets."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    # -- status ----------------------------------------------------------------------------

    def status(self) -> RouterStatus:
        """Backends, gaming mode and the decision log, as `GET /status` shows them."""
        gamed = self.gaming.gamed()
        backends: list[BackendStatus] = []
        for name, state in self.registry.states.items():
            spec = state.spec
            gaming = bool(spec and spec.gaming)
            backends.append({
                "name": name, "label": state.label, "kind": spec.kind if spec else None,
                "url": redact_url(state.client.url), "healthy": state.healthy,
                "gaming": gaming,
                "gated": gaming and self.gaming.enabled and (gamed is None or name in gamed),
                "explicit_only": bool(spec and spec.explicit_only),
                "context_window": state.context_window,
                "models": [{"id": m.id, "max_model_len": m.max_model_len} for m in state.served],
                "latency_ms": state.latency_ms, "last_error": state.last_error,
            })
        return {
            "gaming_mode": self.gaming.enabled,
            "gaming": self.gaming.states,
            "small_token_threshold": self.settings.small_token_threshold,
            "medium_token_threshold": self.settings.medium_token_threshold,
            "config": self.topology.origin,
            "backends": backends,
            "decision_log": {"queued": self.decisions.depth, "written": self.decisions.written,
                             "dropped": self.decisions.dropped},
        }

    # -- requests refused before routing ---------------------------------------------------

    def reject(self, *, request_id: str, source: str, client: str | None, endpoint: str,
               status: int, error: str, model: str | None = None) -> None:
        """Log a request refused before routing (bad body, auth, size, per-key limit).

        Every one is counted in `/metrics`; rows are kept up to `rejected_rows_per_second`, so a
        flood of junk cannot grow the queue or slow the loop (the rest are counted as unlogged).
        """
        self._child(self.metrics.rejected, str(status)).inc()
        if not self._rejected.take():
            self.metrics.rejected_unlogged.inc()
            return
        self.decisions.record(DecisionRow(request_id, source, client, endpoint, model,
                                          reason="rejected", status_code=status, error=error))

    # -- reloading the home-lab file -------------------------------------------------------

    async def reload(self, environ: Mapping[str, str] | None = None) -> ReloadResult:
        """Re-read the configuration and swap it in for new requests. Raises ConfigError.

        In-flight requests finish on the old generation; an invalid file changes nothing.
        """
        async with self._reload_lock:
            env = self.settings.environ if environ is None else environ
            settings = Settings.from_env(env, **self.settings.overrides)
            topology = await build_topology(settings, env)
            old = self.registry.states
            changed = {name: spec for name, spec in topology.backends.items()
                       if name not in old or old[name].spec != spec}
            clients = [make_client(spec, settings) for spec in changed.values()]
            restart = [f.upper() for f in settings.restart_fields(self.settings)]
            await self.registry.replace(clients, dict(topology.backends))
            # From here to the end, nothing awaits: new requests see all of the new
            # generation (registry states, rules, settings) or none of it.
            self.settings = self.settings.with_live(settings)
            self.gaming.configure(topology.gaming_hosts())
            self.generation = Generation.of(topology, self.settings)
            removed = [name for name in old if name not in topology.backends]
            log.info("configuration reloaded from %s: %d backends (%s new or changed, %s removed)",
                     topology.origin, len(topology.backends), ", ".join(changed) or "none",
                     ", ".join(removed) or "none")
            return ReloadResult(topology.origin, tuple(topology.backends), tuple(changed),
                                tuple(removed), tuple(restart))

    # -- chat for the bot ------------------------------------------------------------------

    async def chat_stream(self, messages: list[dict[str, Any]], *, model: str = "auto",
                          source: str = "bot", client: str | None = None,
                          request_id: str | None = None,
                          notify: Notify | None = None) -> AsyncIterator[ChatChunk]:
        """Stream a chat answer through the router (same rules, fallback and log as the API).

        Yields ChatChunk(text, backend, model); raises RouterError before the first chunk or
        StreamBroken mid-answer (the row records it either way).
        """
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": True,
                                "stream_options": {"include_usage": True}}
        row = self.new_row(request_id=request_id, source=source, client=client,
                           endpoint="/v1/chat/completions", body=body)
        request_id_var.set(row.request_id)  # the bot's log lines carry it too
        async with self.route("/v1/chat/completions", body, row, notify=notify) as routed:
            parser = SSEText()
            for text in parser.feed(routed.first):
                yield ChatChunk(text, routed.backend, routed.model, routed.reason)
            async for chunk in routed.rest():
                for text in parser.feed(chunk):
                    yield ChatChunk(text, routed.backend, routed.model, routed.reason)
            if parser.error:
                raise StreamBroken(parser.error)


async def _healthy(client: Backend) -> bool:
    """The watchdog's probe: does a silent backend still answer its health check?"""
    return (await client.check_health()).healthy


class _RowBudget:
    """A token bucket: `take()` is True at most `rate` times per second (burst `rate`)."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = rate
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class Route:
    """The context manager `RouterService.route` returns (a class: no generator per request)."""

    __slots__ = ("_body", "_endpoint", "_headers", "_native", "_notify", "_routed", "_row",
                 "_service")

    def __init__(self, service: RouterService, endpoint: str, body: dict[str, Any],
                 row: DecisionRow, headers: Mapping[str, str] | None,
                 native: NativeRequest | None, notify: Notify | None) -> None:
        self._service, self._endpoint, self._body, self._row = service, endpoint, body, row
        self._headers, self._native, self._notify = headers, native, notify

    async def __aenter__(self) -> Routed:
        self._routed = await self._service.open(self._endpoint, self._body, self._row,
                                                self._headers, native=self._native,
                                                notify=self._notify)
        return self._routed

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        _tb: object) -> None:
        routed = self._routed
        if exc_type is None:
            await routed.finish(*(routed.outcome or (routed.upstream.status, None)))
        elif issubclass(exc_type, StreamBroken):
            await routed.finish(502, str(exc))
        elif issubclass(exc_type, (ConnectionResetError, asyncio.CancelledError, GeneratorExit)):
            await routed.finish(499, "the client disconnected mid-answer")
        else:
            await routed.finish(500, f"router error mid-answer: {exc_type.__name__}: {exc}")
