"""A stand-in vLLM for the cold-start tests: slow to start, able to crash, with vLLM's sleep mode.

    python tests/fakes/stand_in_engine.py --port P [--served-model-name N]
        [--startup-delay S] [--crash-during-start] [--enable-sleep-mode] [--no-sleep-support]
        [--wake-delay S] [--refuse-sleep-mode] [--broken-sleep] [--crash-on-wake]

- `--startup-delay S`: load for S seconds before the port answers (like vLLM, which binds only
  after the engine is built). With `--crash-during-start` it prints a CUDA-style error after the
  delay and exits with code 1 instead.
- Sleep mode follows vLLM: `POST /sleep?level=1`, `POST /wake_up` and `GET /is_sleeping` exist
  only when `VLLM_SERVER_DEV_MODE=1` is set and `--enable-sleep-mode` was passed; while asleep,
  `/v1/chat/completions` answers 503 as vLLM's protected endpoints do. `--no-sleep-support` acts
  like an engine without sleep: the flag is accepted but the endpoints do not exist (404);
  `--refuse-sleep-mode` acts like vLLM's CPU build, which exits at start when given
  `--enable-sleep-mode` ("Sleep mode is not supported on current platform.").
  `--broken-sleep` serves the endpoints but `/sleep` answers 500, as an engine whose platform
  cannot sleep does. `--crash-on-wake` exits with code 5 when asked to wake up.
- The first line printed says whether `--enable-sleep-mode` was given (`sleep flag True`).
- Every completion request is logged to stdout as `stand_in: received <path> <last message>`,
  so a test can read the agent's log file to see what reached the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from aiohttp import web


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", default="stand-in")
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--startup-delay", type=float, default=0.0)
    parser.add_argument("--crash-during-start", action="store_true")
    parser.add_argument("--enable-sleep-mode", action="store_true")
    parser.add_argument("--no-sleep-support", action="store_true")
    parser.add_argument("--wake-delay", type=float, default=0.0)
    parser.add_argument("--refuse-sleep-mode", action="store_true")
    parser.add_argument("--broken-sleep", action="store_true")
    parser.add_argument("--crash-on-wake", action="store_true")
    args, _ = parser.parse_known_args(argv)
    return args


class Engine:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.name = args.served_model_name or args.model
        self.sleeping = False

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="")

    async def sleep(self, request: web.Request) -> web.Response:
        print(f"stand_in: sleep level={request.query.get('level', '1')}", flush=True)
        if self.args.broken_sleep:
            return web.Response(status=500, text="NotImplementedError: sleep on this platform")
        self.sleeping = True
        return web.Response(text="")

    async def wake_up(self, request: web.Request) -> web.Response:
        print("stand_in: wake_up", flush=True)
        if self.args.crash_on_wake:
            print("stand_in: crashing while waking up", flush=True)
            os._exit(5)
        # vLLM answers /wake_up only once the weights are back; /is_sleeping is the truth.
        if self.args.wake_delay:
            await asyncio.sleep(self.args.wake_delay)
        self.sleeping = False
        return web.Response(text="")

    async def is_sleeping(self, request: web.Request) -> web.Response:
        return web.json_response({"is_sleeping": self.sleeping})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = await request.json()
        messages = body.get("messages") or [{}]
        last = str(messages[-1].get("content", ""))
        print(f"stand_in: received {request.path} {last}", flush=True)
        if self.sleeping:
            return web.json_response({"error": {
                "message": "The model is sleeping.", "type": "ServiceUnavailable",
                "param": None, "code": 503}}, status=503)
        text = f"echo[{body.get('model')}]: {last}"
        if not body.get("stream"):
            return web.json_response({
                "id": "stand-in-1", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
            })
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in text.split(" "):
            chunk = {"id": "stand-in-1", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": body.get("model"),
                     "choices": [{"index": 0, "delta": {"content": word + " "},
                                  "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def main(argv: list[str]) -> None:
    args = _args(argv)
    print(f"stand_in: pid {os.getpid()} loading for {args.startup_delay:g}s, "
          f"sleep flag {args.enable_sleep_mode}", flush=True)
    if args.refuse_sleep_mode and args.enable_sleep_mode:
        print("ValueError: Sleep mode is not supported on current platform.", flush=True)
        sys.exit(1)
    if args.startup_delay:
        time.sleep(args.startup_delay)
    if args.crash_during_start:
        print("stand_in: torch.OutOfMemoryError: CUDA out of memory while loading weights",
              flush=True)
        sys.exit(1)
    engine = Engine(args)
    app = web.Application()
    app.router.add_get("/health", engine.health)
    app.router.add_post("/v1/chat/completions", engine.chat)
    dev_mode = os.environ.get("VLLM_SERVER_DEV_MODE") == "1"
    sleep_endpoints = dev_mode and args.enable_sleep_mode and not args.no_sleep_support
    if sleep_endpoints:
        app.router.add_post("/sleep", engine.sleep)
        app.router.add_post("/wake_up", engine.wake_up)
        app.router.add_get("/is_sleeping", engine.is_sleeping)
    print(f"stand_in: serving on port {args.port} "
          f"(sleep endpoints: {'yes' if sleep_endpoints else 'no'})", flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main(sys.argv[1:])
