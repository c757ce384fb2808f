"""A tiny OpenAI-speaking server that stands in for vLLM in tests (standalone aiohttp script).

    python tests/fakes/fake_vllm.py --port P [--model M] [--served-model-name N]
        [--max-model-len L] [--startup-delay S] [--fail-early] [--never-healthy]
        [--crash-after N] [--ignore-sigterm] [--stream-delay S] [--spawn-child]

Serves `/health`, `/v1/models` (with `max_model_len`), `/v1/chat/completions` (streaming and
not), `/v1/completions` and `/v1/embeddings`. Replies echo the model name and the last user
message so tests can see what arrived. Unknown vLLM flags are accepted and ignored.
`--crash-after N` exits with code 3 after answering N completion requests; `--spawn-child`
starts a sleeping grandchild (its pid is printed) to test process-group cleanup.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from aiohttp import web


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--startup-delay", type=float, default=0.0)
    parser.add_argument("--fail-early", action="store_true")
    parser.add_argument("--never-healthy", action="store_true")
    parser.add_argument("--crash-after", type=int, default=0)
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--stream-delay", type=float, default=0.0)
    parser.add_argument("--spawn-child", action="store_true")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        print(f"fake_vllm: ignoring {unknown}", flush=True)
    return args


class Fake:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.name = args.served_model_name or args.model
        self.answered = 0

    def _maybe_crash(self) -> None:
        self.answered += 1
        if self.args.crash_after and self.answered >= self.args.crash_after:
            print("fake_vllm: crashing on purpose", flush=True)
            asyncio.get_running_loop().call_later(0.05, os._exit, 3)

    async def health(self, request: web.Request) -> web.Response:
        if self.args.never_healthy:
            return web.Response(status=503, text="loading")
        return web.Response(text="")

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{
            "id": self.name, "object": "model", "created": int(time.time()),
            "owned_by": "vllm", "root": self.args.model, "max_model_len": self.args.max_model_len,
        }]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        messages = body.get("messages") or [{}]
        text = f"echo[{body.get('model')}]: {messages[-1].get('content', '')}"
        self._maybe_crash()
        return await self._reply(request, body, text, "chat.completion")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        text = f"echo[{body.get('model')}]: {body.get('prompt', '')}"
        self._maybe_crash()
        return await self._reply(request, body, text, "text_completion")

    async def _reply(self, request: web.Request, body: dict[str, Any], text: str,
                     kind: str) -> web.StreamResponse:
        created = int(time.time())
        usage = {"prompt_tokens": 5, "completion_tokens": len(text.split()),
                 "total_tokens": 5 + len(text.split())}
        if not body.get("stream"):
            choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
            if kind == "chat.completion":
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            return web.json_response({"id": "fake-1", "object": kind, "created": created,
                                      "model": body.get("model"), "choices": [choice],
                                      "usage": usage})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in text.split(" "):
            if kind == "chat.completion":
                delta: dict[str, Any] = {"index": 0, "delta": {"content": word + " "},
                                         "finish_reason": None}
            else:
                delta = {"index": 0, "text": word + " ", "finish_reason": None}
            chunk = {"id": "fake-1", "object": f"{kind}.chunk", "created": created,
                     "model": body.get("model"), "choices": [delta]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if self.args.stream_delay:
                await asyncio.sleep(self.args.stream_delay)
        if (body.get("stream_options") or {}).get("include_usage"):
            last = {"id": "fake-1", "object": f"{kind}.chunk", "created": created,
                    "model": body.get("model"), "choices": [], "usage": usage}
            await response.write(f"data: {json.dumps(last)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        return web.json_response({"object": "list", "model": body.get("model"), "data": [
            {"object": "embedding", "index": i, "embedding": [0.1, 0.2, float(len(str(x)))]}
            for i, x in enumerate(items)
        ], "usage": {"prompt_tokens": len(items), "total_tokens": len(items)}})


def main(argv: list[str]) -> None:
    args = _args(argv)
    print(f"fake_vllm: pid {os.getpid()} model {args.model} port {args.port}", flush=True)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.spawn_child:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(f"fake_vllm: child pid {child.pid}", flush=True)
    if args.startup_delay:
        time.sleep(args.startup_delay)
    if args.fail_early:
        print("fake_vllm: failing early on purpose (CUDA out of memory)", flush=True)
        sys.exit(1)
    fake = Fake(args)
    app = web.Application()
    app.router.add_get("/health", fake.health)
    app.router.add_get("/v1/models", fake.models)
    app.router.add_post("/v1/chat/completions", fake.chat)
    app.router.add_post("/v1/completions", fake.completions)
    app.router.add_post("/v1/embeddings", fake.embeddings)
    web.run_app(app, host=args.host, port=args.port, print=None,
                handle_signals=not args.ignore_sigterm)


if __name__ == "__main__":
    main(sys.argv[1:])
