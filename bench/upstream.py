"""A fast fake OpenAI-compatible upstream for the benchmark: `python -m bench.upstream --port P`.

It answers `/v1/models`, `/v1/chat/completions` (non-streaming, and streaming as many small SSE
events) and `/health`, with no work beyond building the bytes. Every stream event carries its send
time (`"t": time.time_ns()`, and the same number as the delta's content so it survives proxies
that re-serialise events), so a client on the same host can check that each event arrived on its
own and promptly.

Stream shape: `max_tokens` events (default `--chunks`), one every `bench_interval_ms`
milliseconds (default `--interval-ms`), then a usage event when `stream_options.include_usage` is
set, then `data: [DONE]`. It runs in its own process so it never shares a loop with the load
generator; it binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

MODEL_ID = "bench-model"


class Upstream:
    """Handlers of the fake upstream. Loop-only; keeps nothing per request."""

    def __init__(self, chunks: int, interval_ms: float) -> None:
        self.chunks = chunks
        self.interval = interval_ms / 1000
        created = int(time.time())
        self._models = orjson.dumps({"object": "list", "data": [
            {"id": MODEL_ID, "object": "model", "created": created, "owned_by": "bench",
             "max_model_len": 32768}]})
        self._completion = orjson.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": created,
            "model": MODEL_ID,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "Hello from the bench upstream."}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        })
        self._head = b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":' + \
            str(created).encode() + b',"model":"' + MODEL_ID.encode() + b'","t":'
        self._usage = b'data: ' + orjson.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": created,
            "model": MODEL_ID, "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks},
        }) + b"\n\n"

    def _event(self, stamp: int) -> bytes:
        ns = str(stamp).encode()
        return (self._head + ns + b',"choices":[{"index":0,"delta":{"content":"' + ns +
                b' "},"finish_reason":null}]}\n\n')

    async def models(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._models, content_type="application/json")

    async def health(self, _request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = orjson.loads(await request.read())
        if not body.get("stream"):
            return web.Response(body=self._completion, content_type="application/json")
        count = body.get("max_tokens") or body.get("max_completion_tokens") or self.chunks
        interval = float(body.get("bench_interval_ms", self.interval * 1000)) / 1000
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        for i in range(int(count)):
            if i and interval:
                await asyncio.sleep(interval)
            await response.write(self._event(time.time_ns()))
        if usage:
            await response.write(self._usage)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def make_app(chunks: int, interval_ms: float) -> web.Application:
    upstream = Upstream(chunks, interval_ms)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/v1/models", upstream.models)
    app.router.add_get("/health", upstream.health)
    app.router.add_post("/v1/chat/completions", upstream.chat)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=16, help="stream events when max_tokens is unset")
    parser.add_argument("--interval-ms", type=float, default=2.0, help="gap between stream events")
    args = parser.parse_args(argv)
    web.run_app(make_app(args.chunks, args.interval_ms), host="127.0.0.1", port=args.port,
                print=None, access_log=None, backlog=4096)


if __name__ == "__main__":
    main()
