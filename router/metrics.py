"""Prometheus metrics of one router, on its own registry (so tests can run many routers)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# The `le` labels as prometheus_client writes them ("0.005", "1.0", "+Inf").
_BOUNDS = (*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf")


class _Histogram:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(_BOUNDS, self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class _BackendTotals:
    __slots__ = ("completion", "latency", "prompt", "ttft")

    def __init__(self) -> None:
        self.latency, self.ttft = _Histogram(), _Histogram()
        self.prompt = self.completion = 0


class RequestMetrics:
    """The metrics every routed request updates, kept as plain numbers: the loop adds to them
    without the locks and label lookups of prometheus_client's objects (most of the row's cost
    on the hot path), and they become Prometheus families only when /metrics is scraped."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, int], int] = {}
        self._backends: dict[str, _BackendTotals] = {}

    def observe(self, backend: str, reason: str, status: int, latency: float,
                ttft: float | None, prompt_tokens: int | None,
                completion_tokens: int | None) -> None:
        key = (backend, reason, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        totals = self._backends.get(backend)
        if totals is None:
            totals = self._backends[backend] = _BackendTotals()
        totals.latency.observe(latency)
        if ttft is not None:
            totals.ttft.observe(ttft)
        if prompt_tokens:
            totals.prompt += prompt_tokens
        if completion_tokens:
            totals.completion += completion_tokens

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("router_requests",
                                       "Routed requests by backend, reason and status",
                                       labels=["backend", "reason", "status"])
        for (backend, reason, status), value in self._requests.items():
            requests.add_metric([backend, reason, str(status)], value)
        yield requests
        latency = HistogramMetricFamily("router_request_latency_seconds", "Time to the last byte",
                                        labels=["backend"])
        ttft = HistogramMetricFamily("router_time_to_first_token_seconds",
                                     "Time to the first byte sent", labels=["backend"])
        tokens = CounterMetricFamily("router_tokens",
                                     "Tokens by backend and kind (prompt, completion)",
                                     labels=["backend", "kind"])
        for backend, totals in self._backends.items():
            for family, histogram in ((latency, totals.latency), (ttft, totals.ttft)):
                if any(histogram.counts):
                    family.add_metric([backend], histogram.buckets(), histogram.total)
            for kind, count in (("prompt", totals.prompt), ("completion", totals.completion)):
                if count:
                    tokens.add_metric([backend, kind], count)
        yield latency
        yield ttft
        yield tokens


class Metrics:
    """The router's metrics: per-request figures (`requests`) and prometheus_client's objects
    for the rest."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = RequestMetrics()
        r.register(self.requests)
        self.fallbacks = Counter("router_fallbacks_total", "Candidates that failed before the first byte",
                                 ["backend"], registry=r)
        self.backend_up = Gauge("router_backend_up", "1 when the backend is healthy", ["backend"],
                                registry=r)
        self.gaming_mode = Gauge("router_gaming_mode", "1 when gaming mode is on", registry=r)
        self.rejected = Counter("router_rejected_total", "Requests refused before routing, by status",
                                ["status"], registry=r)
        self.rejected_unlogged = Counter(
            "router_rejected_unlogged_total",
            "Rejected requests counted but not given a decision row (over the row rate)",
            registry=r)
        self.log_queue = Gauge("router_decision_log_queue_depth", "Decision rows waiting to be written",
                               registry=r)
        self.log_dropped = Gauge("router_decision_log_dropped_total",
                                 "Decision rows that could not be written", registry=r)
        self.log_errors = Gauge("router_decision_log_write_errors_total",
                                "Failed decision-log batch writes (rows kept and retried)", registry=r)

    def bind_log(self, depth: Callable[[], float], dropped: Callable[[], float],
                 errors: Callable[[], float]) -> None:
        self.log_queue.set_function(depth)
        self.log_dropped.set_function(dropped)
        self.log_errors.set_function(errors)

    def render(self) -> bytes:
        return generate_latest(self.registry)
