"""The load generator: aiohttp client loops, each bounded in request count and in time.

Every function takes a `Target` (base URL, model name, headers) and returns plain numbers.
aiohttp rather than httpx: httpx's per-request cost would make the client the bottleneck.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from dataclasses import dataclass, field

import aiohttp
import orjson


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    model: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def chat_url(self) -> str:
        return self.url + "/v1/chat/completions"

    def body(self, *, stream: bool = False, max_tokens: int | None = None,
             extra: dict[str, object] | None = None) -> bytes:
        payload: dict[str, object] = {"model": self.model,
                                      "messages": [{"role": "user", "content": "Say hello."}]}
        if stream:
            payload["stream"] = True
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        payload.update(extra or {})
        return orjson.dumps(payload)

    def post_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", **self.headers}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, force_close=False, keepalive_timeout=60)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120),
                                 auto_decompress=False)


async def latencies(target: Target, count: int, warmup: int = 20,
                    max_seconds: float = 30.0) -> list[float]:
    """Sequential non-streaming requests on one kept-alive connection; seconds each."""
    body, headers = target.body(), target.post_headers()
    out: list[float] = []
    deadline = time.monotonic() + max_seconds
    async with _session(1) as session:
        for i in range(warmup + count):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            async with session.post(target.chat_url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{target.name} answered HTTP {response.status}")
            if i >= warmup:
                out.append(time.perf_counter() - started)
    return out


@dataclass
class Throughput:
    requests: int
    errors: int
    seconds: float
    issued: int = 0  # every request sent, warm-up included (for CPU per request)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def throughput(target: Target, concurrency: int, seconds: float,
                     warmup: float = 0.5, max_requests: int = 200_000) -> Throughput:
    """`concurrency` workers loop on non-streaming requests for `seconds` (after a warm-up)."""
    body, headers = target.body(), target.post_headers()
    counted = [0, 0]
    issued_total = [0]
    measuring = False
    stop_at = time.monotonic() + warmup + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        issued = 0
        while time.monotonic() < stop_at and issued < max_requests // concurrency:
            issued += 1
            issued_total[0] += 1
            try:
                async with session.post(target.chat_url, data=body, headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
            except (TimeoutError, aiohttp.ClientError):
                ok = False
            if measuring:
                counted[0 if ok else 1] += 1

    async with _session(concurrency) as session:
        tasks = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
        await asyncio.sleep(warmup)
        measuring = True
        started = time.perf_counter()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return Throughput(counted[0], counted[1], elapsed, issued_total[0])


@dataclass
class StreamResult:
    ttft: float  # seconds from sending the request to the first content event
    events: int  # content events received
    reads: int  # socket reads that carried at least one content event
    coalesced: int  # reads that carried more than one content event
    late: int  # events that arrived more than `late_ns` after the upstream stamped them
    worst_delay_ns: int
    done: bool  # the stream ended with data: [DONE]
    status: int
    delays_ns: list[int] = field(default_factory=list)  # arrival minus send stamp, per event


def _stamps(data: bytes) -> list[int]:
    """Send stamps of the content events in one read (the `t` field, else the content)."""
    out: list[int] = []
    for line in data.split(b"\n"):
        if not line.startswith(b"data: {"):
            continue
        try:
            event = orjson.loads(line[6:])
        except orjson.JSONDecodeError:
            continue
        stamp = event.get("t")
        if stamp is None:
            for choice in event.get("choices") or ():
                content = ((choice.get("delta") or {}).get("content") or "").strip()
                if content.isdigit():
                    stamp = int(content)
        if stamp is not None:
            out.append(int(stamp))
    return out


async def one_stream(session: aiohttp.ClientSession, target: Target, body: bytes,
                     late_ns: int = 1_000_000) -> StreamResult:
    """One streaming request; each read is parsed on arrival and compared with its stamps."""
    headers = target.post_headers()
    started = time.perf_counter()
    ttft = float("nan")
    events = reads = coalesced = late = worst = 0
    delays: list[int] = []
    done = False
    buffer = b""
    async with session.post(target.chat_url, data=body, headers=headers) as response:
        status = response.status
        async for chunk in response.content.iter_any():
            now = time.time_ns()
            buffer += chunk
            if b"\n\n" not in buffer:
                continue
            complete, _, buffer = buffer.rpartition(b"\n\n")
            stamps = _stamps(complete)
            if b"data: [DONE]" in complete:
                done = True
            if not stamps:
                continue
            if events == 0:
                ttft = time.perf_counter() - started
            events += len(stamps)
            reads += 1
            if len(stamps) > 1:
                coalesced += 1
            for stamp in stamps:
                delay = now - stamp
                worst = max(worst, delay)
                delays.append(delay)
                if delay > late_ns:
                    late += 1
    return StreamResult(ttft, events, reads, coalesced, late, worst, done, status, delays)


async def streams(target: Target, count: int, max_tokens: int, interval_ms: float,
                  warmup: int = 5, max_seconds: float = 60.0) -> list[StreamResult]:
    """Sequential streaming requests (concurrency 1)."""
    body = target.body(stream=True, max_tokens=max_tokens,
                       extra={"bench_interval_ms": interval_ms} if target.name != "litellm" else None)
    out: list[StreamResult] = []
    deadline = time.monotonic() + max_seconds
    async with _session(1) as session:
        for i in range(warmup + count):
            if time.monotonic() > deadline:
                break
            result = await one_stream(session, target, body)
            if i >= warmup:
                out.append(result)
    return out


@dataclass
class HeldResult:
    ok: int
    errors: int
    error_samples: list[str]
    seconds: float
    events: int
    peak_concurrent: int


async def held(target: Target, count: int, max_tokens: int, interval_ms: float,
               max_seconds: float = 120.0, ramp_seconds: float = 1.0) -> HeldResult:
    """`count` streaming requests open at the same time, each streaming for a while.

    Requests are started over `ramp_seconds` (a storm of 1,000 SYNs at once only measures the
    kernel's accept queue); each stream lasts `max_tokens * interval_ms`, longer than the ramp,
    so all of them are open together. An error is any non-200, a stream without [DONE], a short
    stream or an exception.
    """
    body = target.body(stream=True, max_tokens=max_tokens,
                       extra={"bench_interval_ms": interval_ms})
    errors: list[str] = []
    ok = events = 0
    open_now = peak = 0

    async def one(session: aiohttp.ClientSession, delay: float) -> None:
        nonlocal ok, events, open_now, peak
        await asyncio.sleep(delay)
        open_now += 1
        peak = max(peak, open_now)
        try:
            result = await one_stream(session, target, body, late_ns=10**12)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            return
        finally:
            open_now -= 1
        events += result.events
        if result.status != 200 or not result.done or result.events != max_tokens:
            errors.append(f"status {result.status}, {result.events} events, done={result.done}")
        else:
            ok += 1

    started = time.perf_counter()
    async with _session(0) as session:
        tasks = [asyncio.create_task(one(session, ramp_seconds * i / count)) for i in range(count)]
        finished, pending = await asyncio.wait(tasks, timeout=max_seconds)
        for task in pending:
            task.cancel()
            errors.append("did not finish in time")
        for task in finished:
            if task.exception() is not None:
                errors.append(repr(task.exception()))
    return HeldResult(ok, len(errors), errors[:5], time.perf_counter() - started, events, peak)


def median(values: list[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else float("nan")
