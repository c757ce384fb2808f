"""Test helpers shared by every tier: wait on a condition, serve an aiohttp app, pick a free port.

- `eventually(check, timeout=..., interval=...)` polls a condition instead of sleeping for a
  guessed time: `check` is a plain function or a coroutine function; the first truthy result is
  returned. When `timeout` passes first, it fails with an AssertionError naming the condition
  (the timeouts are generous on purpose: they bound a hang on a busy 2-core machine, they are
  not a speed requirement).
- `serve_app(app)` runs an aiohttp application on a loopback port for the `async with` block and
  yields its base URL ("http://127.0.0.1:PORT"); the app's cleanup runs on exit.
- `free_port()` is a port for servers the test cannot bind itself (subprocesses).
"""

from __future__ import annotations

import asyncio
import inspect
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiohttp import web

__all__ = ["eventually", "free_port", "serve_app"]

T = TypeVar("T")


def free_port() -> int:
    """A free port on 127.0.0.1 below the ephemeral range, so no outgoing connection can take it
    between this check and the server's bind."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free port in 20000-32000 on 127.0.0.1")


async def eventually(check: Callable[[], T | Awaitable[T]], *, timeout: float = 10.0,
                     interval: float = 0.02, what: str | None = None) -> T:
    """The first truthy result of `check()`, polled every `interval` seconds.

    Raises AssertionError when `timeout` seconds pass first (with `what`, or the check's name,
    and its last result). Exceptions raised by `check` propagate at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if loop.time() >= deadline:
            name = what or getattr(check, "__qualname__", repr(check))
            raise AssertionError(f"{name} did not become true within {timeout:g}s "
                                 f"(last result: {result!r})")
        await asyncio.sleep(interval)


@asynccontextmanager
async def serve_app(app: web.Application, *, port: int = 0,
                    shutdown_timeout: float = 2.0, **runner_kwargs: Any) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 (`port` 0: any free port) and yield its base URL."""
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, **runner_kwargs)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        bound = runner.addresses[0][1]
        yield f"http://127.0.0.1:{bound}"
    finally:
        await runner.cleanup()
