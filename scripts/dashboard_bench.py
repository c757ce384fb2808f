"""Router CPU per request at a fixed 50 req/s, with no dashboard and with 5 dashboards open.

A "dashboard" here does what the page does: it keeps `/ui/events` open (reading every decision)
and polls `/ui/api/status` every 10 s. Runs alternate (0, 5, 0, 5, …) against one router
(`local-ai-router serve` on the bench's fake upstream, see bench/targets.py) and the medians are
compared. CPU is the router process's user+system time from /proc, so the load generator's own
work does not count. Usage, from the repository root:

    .venv/bin/python scripts/dashboard_bench.py [--runs 4] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp
import orjson

from bench.targets import Proc, make_workdir, start_router, start_upstream

RATE = 50
DASHBOARDS = 5
BODY = orjson.dumps({"model": "small", "messages": [{"role": "user", "content": "Say hello."}]})


async def dashboard(url: str, stop: asyncio.Event, seen: list[int]) -> None:
    async with aiohttp.ClientSession() as session:
        async def poll() -> None:
            while not stop.is_set():
                async with session.get(url + "/ui/api/status") as response:
                    await response.read()
                try:
                    await asyncio.wait_for(stop.wait(), 10)
                except TimeoutError:
                    pass

        poller = asyncio.create_task(poll())
        async with session.get(url + "/ui/events") as feed:
            async for chunk in feed.content.iter_any():
                seen[0] += chunk.count(b"event: decision")
        poller.cancel()


async def run(router: Proc, dashboards: int, seconds: float) -> tuple[float, int]:
    """CPU microseconds per request over `seconds` at RATE, and decision events the feeds got."""
    stop, seen = asyncio.Event(), [0]
    feeds = [asyncio.create_task(dashboard(router.url, stop, seen)) for _ in range(dashboards)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        async def one() -> None:
            async with session.post(router.url + "/v1/chat/completions", data=BODY,
                                    headers={"Content-Type": "application/json"}) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"router answered {response.status}")

        await asyncio.gather(*(one() for _ in range(RATE)))  # warm-up; feeds connect meanwhile
        count = int(RATE * seconds)
        cpu, start, tasks = router.cpu_seconds(), time.monotonic(), []
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        cpu = router.cpu_seconds() - cpu
    stop.set()
    for feed in feeds:
        feed.cancel()
    await asyncio.gather(*feeds, return_exceptions=True)
    return cpu / count * 1e6, seen[0]


async def main(runs: int, seconds: float) -> None:
    workdir = make_workdir()
    upstream = start_upstream(workdir)
    router = start_router(workdir, upstream.url)
    results: dict[int, list[float]] = {0: [], DASHBOARDS: []}
    try:
        for _ in range(runs):
            for dashboards, figures in results.items():
                micros, seen = await run(router, dashboards, seconds)
                figures.append(micros)
                print(f"{dashboards} dashboards: {micros:5.0f} µs router CPU per request "
                      f"({seen} decision events delivered)", flush=True)
    finally:
        router.stop()
        upstream.stop()
    base, loaded = statistics.median(results[0]), statistics.median(results[DASHBOARDS])
    print(f"median: {base:.0f} µs without, {loaded:.0f} µs with {DASHBOARDS} dashboards "
          f"({(loaded / base - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.seconds))
