"""The router's own work per request, in process: no HTTP server, no sockets, a canned answer.

`measure()` builds the real application (migrated database, decision log, registry with its
health check, service) and runs the service path of a non-streaming chat request over and over:
parse the body, plan, open, read the whole answer, finish and record the decision row. The
backend's transport is a canned one that answers at once, so what is timed is the router's
own code; the writer thread's SQLite inserts are in it too, as process CPU.

On this 2-core VM its spread is about ±1–2 µs, where the c=50 figure over sockets moves by
±5–8% between runs: it is the figure to watch when cutting the router's own per-request work.
The HTTP handler layer, aiohttp's server and the sockets are not in it (see the c=50 rows), and
its caches are hot: among 50 interleaved requests the same path costs about half again as much.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Mapping
from pathlib import Path

from bench.report import Row
from router.backends.base import Backend
from router.backends.openai import OpenAIBackend
from router.http.api import SERVICE
from router.http.app import create_app, create_runner
from router.http.serving import loop_factory
from router.settings import Settings
from router.wire import chat

BODY = b'{"model":"small","messages":[{"role":"user","content":"Say hello."}]}'
ANSWER = (b'{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"bench-model",'
          b'"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant",'
          b'"content":"Hello from the bench upstream."}}],'
          b'"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}')
ENDPOINT = "/v1/chat/completions"


class _Answer:
    """One canned exchange (the `Exchange` protocol of router/backends/transport.py)."""

    status = 200
    headers: Mapping[str, str] = {"content-type": "application/json",
                                  "content-length": str(len(ANSWER))}

    def __init__(self) -> None:
        self._sent = False

    async def next_chunk(self) -> bytes:
        if self._sent:
            return b""
        self._sent = True
        return ANSWER

    def release(self) -> None:
        pass


class _Canned:
    """A transport whose every request is answered at once with ANSWER. Not the tests'
    `FakeTransport` (tests/fakes/transport.py): that one keeps every request and exchange for
    its assertions, which would grow over 70,000 timed requests and be timed with them."""

    async def handle(self, path: str, headers: dict[str, str], body: bytes,
                     header_timeout: float | None = None) -> _Answer:
        return _Answer()

    async def close(self) -> None:
        pass


async def _measure(upstream_url: str, workdir: Path, requests: int, repeats: int) -> list[float]:
    env = {"LOCAL_3070_URL": upstream_url, "DATABASE_URL": f"sqlite:///{workdir}/service.db",
           "LOG_LEVEL": "WARNING", "HEALTH_CHECK_INTERVAL": "30"}
    app = create_app(Settings.from_env(env))
    runner = create_runner(app)
    await runner.setup()  # the app's resources, as `serve` builds them; no listening socket
    try:
        service = app[SERVICE]
        registry = service.registry
        # The same backend with a canned transport (health checks still reach the upstream).
        canned: list[Backend] = [OpenAIBackend(name, state.client.url, transport=_Canned())
                                 for name, state in registry.states.items()]
        await registry.replace(canned, dict(service.topology.backends))
        await registry.check_all()

        async def one() -> None:
            body = chat.parse_body(BODY, ENDPOINT)
            row = service.new_row(request_id=None, source="api", client=None, endpoint=ENDPOINT,
                                  body=body)
            async with service.route(ENDPOINT, body, row) as routed:
                await routed.whole()

        for _ in range(requests // 5):  # warm up: caches, the first batches of rows
            await one()
        await service.decisions.flush()
        out = []
        for _ in range(repeats):
            started = time.process_time()
            for _ in range(requests):
                await one()
            # The writer thread falls behind a loop that never waits (it gets the GIL only when
            # the loop lets go): its rows are written, and counted, before the clock stops.
            await service.decisions.flush()
            out.append((time.process_time() - started) / requests * 1e6)
        return out
    finally:
        await runner.cleanup()


def measure(upstream_url: str, workdir: Path, requests: int = 10_000,
            repeats: int = 7) -> float:
    """CPU µs per request of the service path, the median of `repeats` timed loops."""
    factory = loop_factory(os.environ.get("EVENT_LOOP", "auto"))
    with asyncio.Runner(loop_factory=factory) as runner:
        samples = runner.run(_measure(upstream_url, workdir, requests, repeats))
    return statistics.median(samples)


def row(us: float) -> Row:
    return Row("The service's own path in process (parse, plan, open, whole answer, finish, "
               "decision row; a canned upstream, no sockets), CPU µs per request",
               f"{us:.1f} µs", "—", None)
