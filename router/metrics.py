"""Prometheus metrics of one router, on its own registry (so tests can run many routers)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """Counters and histograms the router updates; cheap enough for the hot path."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("router_requests_total", "Routed requests by backend, reason and status",
                                ["backend", "reason", "status"], registry=r)
        self.latency = Histogram("router_request_latency_seconds", "Time to the last byte",
                                 ["backend"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("router_time_to_first_token_seconds", "Time to the first byte sent",
                              ["backend"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("router_tokens_total", "Tokens by backend and kind (prompt, completion)",
                              ["backend", "kind"], registry=r)
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
