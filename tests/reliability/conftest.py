"""Helpers for the reliability tier: misbehaving upstreams, a blackholed port, a real `serve`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.fakes.upstream import FakeUpstream
from tests.helpers import eventually, free_port

CLI = Path(sys.executable).with_name("local-ai-router")
HELLO = [{"role": "user", "content": "hello"}]


class TrickyUpstream(FakeUpstream):
    """FakeUpstream plus what this tier needs, for streaming chat requests only:

    "stall_mid_stream" (send `die_after` events, then go silent with the connection open),
    "pause_mid_stream" (send `die_after` events, then wait for `resume` and send the rest),
    "malformed_first" (the first event is not JSON), and `delay` seconds between events.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delay = 0.0
        self.sent = 0
        self.resume = asyncio.Event()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream") or (
                self.mode not in ("stall_mid_stream", "pause_mid_stream", "malformed_first")
                and not self.delay):
            return await super()._chat(request)
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.received.set()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if self.mode == "malformed_first":
            await response.write(b"data: {\"choices\": [oops\n\n")
        for index in range(self.chunks):
            if self.mode == "stall_mid_stream" and index == self.die_after:
                await asyncio.sleep(3600)
            if self.mode == "pause_mid_stream" and index == self.die_after:
                await self.resume.wait()
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0,
                     "model": body["model"],
                     "choices": [{"index": 0, "delta": {"content": f"tok{index} "},
                                  "finish_reason": None}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.sent += 1
            if self.delay:
                await asyncio.sleep(self.delay)
        await response.write(b"data: [DONE]\n\n")
        return response


@pytest.fixture
async def tricky() -> AsyncIterator[dict[str, TrickyUpstream]]:
    """Like `upstreams`, but each fake can also stall, send a malformed first event, or pace."""
    fakes = {
        "3070": await TrickyUpstream("qwen2.5-7b-instruct-awq", 32768).start(),
        "3090": await TrickyUpstream("qwen2.5-14b-instruct-awq", 32768, gaming_mode=False).start(),
        "opencode": await TrickyUpstream("glm-4.6", None).start(),
    }
    yield fakes
    for fake in fakes.values():
        await fake.stop()


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A loopback URL whose TCP handshake never completes (its listen queue is full).

    Real connect timeouts without leaving loopback: Linux drops SYNs to a full accept queue.
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    # One completed handshake fills the accept queue of backlog 0 (the connect returns once it
    # is queued, so no waiting is needed); later SYNs are dropped, as the extra fillers show.
    first = socket.create_connection(("127.0.0.1", port), timeout=10)
    fillers = [first]
    for _ in range(2):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    yield f"http://127.0.0.1:{port}"
    for sock in (*fillers, server):
        sock.close()


class Served:
    """A `local-ai-router serve` subprocess; `stderr` is its whole log after `stop()`."""

    def __init__(self, url: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.url = url
        self.proc = proc
        self.log_path = log_path
        self.signalled = False

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_healthy(self, timeout: float = 30) -> None:
        """Poll /health (a separate process has no event to wait on)."""
        async def healthy() -> bool:
            assert self.proc.returncode is None, f"serve exited early:\n{self.log}"
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(self.url + "/health")).status_code == 200
            except httpx.TransportError:
                return False
        await eventually(healthy, timeout=timeout, interval=0.05, what="serve is healthy")

    async def refusing(self) -> bool:
        """True once `serve` no longer accepts connections (its shutdown has begun)."""
        try:
            async with httpx.AsyncClient() as client:
                await client.get(self.url + "/health")
        except httpx.ConnectError:
            return True
        return False

    def sigterm(self) -> None:
        """Send SIGTERM once (tests/router/test_cli.py covers a second one during shutdown)."""
        if not self.signalled:
            self.signalled = True
            self.proc.send_signal(signal.SIGTERM)

    async def terminate(self, timeout: float = 30) -> int:
        self.sigterm()
        return await asyncio.wait_for(self.proc.wait(), timeout)


@asynccontextmanager
async def serve(tmp_path: Path, env: dict[str, str]) -> AsyncIterator[Served]:
    """Start `local-ai-router serve` on a free loopback port with `env` over a clean environment."""
    port = free_port()
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("MATTERMOST_", "ROUTER_", "OPENCODE_", "GAMING_", "LOCAL_3070"))}
    base.update({"DATABASE_URL": f"sqlite:///{tmp_path}/serve.db", "ROUTER_PORT": str(port),
                 "ROUTER_HOST": "127.0.0.1", "HEALTH_CHECK_INTERVAL": "3600",
                 "LOCAL_3070_URL": ""})
    base.update(env)
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(str(CLI), "serve", env=base, stdout=log,
                                                    stderr=log)
    served = Served(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        await served.wait_healthy()
        yield served
    finally:
        if proc.returncode is None:
            served.sigterm()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
