"""What the agent APIs add: `/v1/messages` and `/v1/responses` against `/v1/chat/completions`
through the same router, on the same 2k-token prompt.

The three requests carry the same conversation in each API's shape; they are sent in turn
(chat, messages, responses, chat, ...) on one kept-alive connection, so the machine's noise hits
all three alike, and each figure is the difference of medians. Non-streaming: the whole request
time. Streaming: the time to the first content event (`data:` with content for chat,
`content_block_delta` for Messages, `response.output_text.delta` for Responses).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson

from bench.loadgen import median
from bench.report import Row, check, ms

API_KEY = "bench"
# ~2k cl100k tokens of ordinary prose, the size the target is stated for.
PROMPT = "Summarise the following notes about the home lab router. " + (
    "The router sends each request to the 3070, the 3090 or OpenCode, by size and by load. ") * 120
FIRST_CONTENT = {"chat": b'"content":"', "messages": b"content_block_delta",
                 "responses": b"response.output_text.delta"}


def bodies(model: str, stream: bool) -> dict[str, tuple[str, bytes]]:
    """Path and body of the same request in each API."""
    chat: dict[str, Any] = {"model": model, "max_tokens": 4, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}]}
    messages: dict[str, Any] = {"model": model, "max_tokens": 4, "system": "Be brief.",
                                "messages": [{"role": "user", "content": PROMPT}]}
    responses: dict[str, Any] = {"model": model, "max_output_tokens": 4, "store": False,
                                 "instructions": "Be brief.", "input": PROMPT}
    for body in (chat, messages, responses):
        if stream:
            body["stream"] = True
    return {"chat": ("/v1/chat/completions", orjson.dumps(chat)),
            "messages": ("/v1/messages", orjson.dumps(messages)),
            "responses": ("/v1/responses", orjson.dumps(responses))}


async def _timed(session: aiohttp.ClientSession, url: str, body: bytes, first: bytes | None) -> float:
    """Seconds to the whole answer, or (streaming) to the first chunk containing `first`."""
    started = time.perf_counter()
    async with session.post(url, data=body, headers={"Content-Type": "application/json",
                                                     "x-api-key": API_KEY}) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} answered HTTP {response.status}: {await response.text()}")
        if first is None:
            await response.read()
            return time.perf_counter() - started
        seen = b""
        async for chunk in response.content.iter_any():
            seen = seen[-64:] + chunk
            if first in seen:
                elapsed = time.perf_counter() - started
                await response.read()
                return elapsed
    raise RuntimeError(f"{url}: the stream ended without a content event")


async def measure(router_url: str, model: str, requests: int = 150, streams: int = 40,
                  warmup: int = 10) -> dict[str, dict[str, float]]:
    """Median seconds per API: {"whole": {api: s}, "ttft": {api: s}}."""
    out: dict[str, dict[str, float]] = {}
    connector = aiohttp.TCPConnector(limit=1, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        for kind, count, stream in (("whole", requests, False), ("ttft", streams, True)):
            samples: dict[str, list[float]] = {api: [] for api in FIRST_CONTENT}
            shapes = bodies(model, stream)
            for i in range(warmup + count):
                for api, (path, body) in shapes.items():
                    seconds = await _timed(session, router_url + path, body,
                                           FIRST_CONTENT[api] if stream else None)
                    if i >= warmup:
                        samples[api].append(seconds)
            out[kind] = {api: median(values) for api, values in samples.items()}
    return out


def run(router_url: str, model: str, quick: bool = False) -> dict[str, dict[str, float]]:
    return asyncio.run(measure(router_url, model, *((40, 12) if quick else (150, 40))))


def rows(runs: list[dict[str, dict[str, float]]]) -> list[Row]:
    """Table rows: the added p50 and TTFT of each agent API over chat (median over runs)."""
    out: list[Row] = []
    for api, label in (("messages", "/v1/messages"), ("responses", "/v1/responses")):
        whole = median([(r["whole"][api] - r["whole"]["chat"]) * 1000 for r in runs])
        ttft = median([(r["ttft"][api] - r["ttft"]["chat"]) * 1000 for r in runs])
        out.append(Row(f"Agent API {label}: added latency p50, non-streaming, 2k-token prompt "
                       "(minus /v1/chat/completions through the same router)", ms(whole, 3),
                       "≤ 0.3 ms", check(whole, whole <= 0.3)))
        out.append(Row(f"Agent API {label}: added time to first token (minus chat)", ms(ttft, 3),
                       "≤ 1 ms", check(ttft, ttft <= 1.0)))
    return out
