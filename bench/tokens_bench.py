"""Token estimation cost (`router.core.tokens`) and whether `await estimate(...)` blocks the loop.

Runs in the benchmark's own process: the prompts are built from a fixed seed, so each run
tokenises the same text.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from router.core import tokens

_WORDS = ["the", "router", "sends", "each", "request", "to", "the", "best", "backend", "while", "gaming", "mode", "keeps", "the", "big", "card", "free", "estimate", "tokens", "context", "window", "stream", "chunk", "latency", "throughput", "decision", "log", "sqlite", "batch", "writer", "upstream", "fallback", "health", "check", "model", "alias", "mattermost", "bot", "python", "asyncio", "event", "loop", "thread", "worker", "json", "schema", "tool", "call", "image", "budget"]


def prompt_body(target_tokens: int, seed: int = 6) -> dict[str, object]:
    """A chat body whose text is about `target_tokens` tokens (checked against the tokenizer)."""
    rng = random.Random(seed)
    words: list[str] = []
    text = ""
    while True:
        words.extend(rng.choice(_WORDS) + rng.choice(("", "", "", ",", ".", "\n")) for _ in range(256))
        text = " ".join(words)
        if len(tokens.encoding().encode_ordinary(text)) >= target_tokens:
            break
    return {"model": "auto", "messages": [{"role": "system", "content": "You are helpful."},
                                          {"role": "user", "content": text}]}


@dataclass
class EstimateCost:
    tokens: int
    sync_ms: float  # median cost of count_parts(collect(body)), blocking
    async_ms: float  # median wall time of `await estimate(body)`
    loop_lag_ms: float  # median over calls of the worst 1 ms-ticker lag during the call
    worst_lag_ms: float  # worst ticker lag seen during any call (includes scheduler noise)
    inline_lag_ms: float  # the same median, had the count run on the loop (what blocking looks like)
    cached_ms: float  # median `await estimate(body)` once its texts were counted (a repeated prompt)


async def _lag_during(call: Callable[[], Awaitable[object]], repeats: int) -> tuple[float, float, float]:
    """(median wall ms, median per-call worst lag ms, worst lag ms) of `call` under a 1 ms ticker.

    A per-call figure, because one 2-core machine shared with other work shows multi-ms
    scheduler stalls now and then: a blocked loop shows up in every call, noise in a few.
    """
    ticks: list[tuple[float, float]] = []  # (time of tick, lag before it)
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            ticks.append((now, now - last - 0.001))
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)  # let the ticker settle
    walls: list[float] = []
    per_call: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        await call()
        ended = time.perf_counter()
        await asyncio.sleep(0.003)  # the tick that was due during the call lands now
        walls.append(ended - started)
        lags = [lag for at, lag in ticks if started < at <= ended + 0.003]
        per_call.append(max(lags, default=0.0))
    running = False
    await task
    return (statistics.median(walls) * 1000, statistics.median(per_call) * 1000,
            max(per_call) * 1000)


def measure(size: int, repeats: int = 21) -> EstimateCost:
    body = prompt_body(size)
    parts = tokens.collect(body)
    tokens.count_parts(parts)  # warm
    costs: list[float] = []
    for _ in range(repeats):
        tokens.forget_counts()  # first sight of a prompt; the repeated case is measured last
        started = time.perf_counter()
        count = tokens.count_parts(tokens.collect(body))
        costs.append(time.perf_counter() - started)

    async def awaited() -> object:
        tokens.forget_counts()
        return await tokens.estimate(body)

    async def inline() -> object:
        tokens.forget_counts()
        return tokens.count_parts(tokens.collect(body))

    async def repeated() -> object:
        return await tokens.estimate(body)

    async_ms, lag, worst = asyncio.run(_lag_during(awaited, repeats))
    _, inline_lag, _ = asyncio.run(_lag_during(inline, max(5, repeats // 3)))
    cached_ms, _, _ = asyncio.run(_lag_during(repeated, repeats))
    return EstimateCost(count, statistics.median(costs) * 1000, async_ms, lag, worst, inline_lag,
                        cached_ms)


async def _idle_lag(seconds: float = 0.2) -> float:
    """The ticker's worst lag with nothing else running: the noise floor of this machine."""
    worst = 0.0
    last = time.perf_counter()
    end = last + seconds
    while last < end:
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        worst = max(worst, now - last - 0.001)
        last = now
    return worst * 1000


def idle_lag() -> float:
    return asyncio.run(_idle_lag())
