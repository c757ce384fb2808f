"""Waiting for a model that is not ready yet: never a silent wait, never an abandoned request.

The starting-stream protocol (what the router relies on; see docs/agent.md):

- A streaming request (`"stream": true`) for a model that is not ready (stopped, starting,
  sleeping) is answered at once with status 200, `Content-Type: text/event-stream`,
  `X-Model-State: starting` and `X-Model-Start-Timeout: <seconds>` (the agent's start timeout).
- The body starts with SSE comment lines, one at once and then one every `STREAM_KEEPALIVE`
  seconds while the model starts:

      : model <id> <phase> (<elapsed> s)

  `<id>` is the agent's model id, `<phase>` is `starting` (cold start) or `waking` (from sleep),
  `<elapsed>` the seconds since that start began, one decimal. Each comment is followed by a
  blank line. Everything that begins with `: model ` belongs to this protocol.
- Once the model serves, vLLM's own stream follows unchanged (`data: ...` events, `[DONE]`).
- If the start fails (the process exits, the start timeout passes, the model is stopped, gaming
  mode turns on) the stream ends at once with one OpenAI-style error event and no `[DONE]`:
  `data: {"error": {"message": ..., "type": "server_error", "param": null,
  "code": "model_start_failed"}}` (`gaming_mode` when gaming mode refused it). An error answer
  from vLLM after the start (e.g. a 400) also becomes an error event, since the 200 is sent.

Non-streaming requests wait without a body (the caller may watch `/status`) and fail with 503
`model_start_failed` as soon as the start fails. A client that leaves while it waits cancels its
wait (the shared start goes on for others) and its request never reaches vLLM; that is logged as
one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from aiohttp import web

from inference.config import ModelProfile
from inference.errors import AgentError, error_body
from inference.manager import ModelManager
from inference.process import ModelState

log = logging.getLogger(__name__)

MODEL_STATE_HEADER = "X-Model-State"
START_TIMEOUT_HEADER = "X-Model-Start-Timeout"
COMMENT_PREFIX = ": model "


def keepalive_comment(model_id: str, phase: str, elapsed: float) -> bytes:
    """One protocol comment, with the blank line that ends it."""
    return f"{COMMENT_PREFIX}{model_id} {phase} ({elapsed:.1f} s)\n\n".encode()


def error_event(message: str, code: str | None) -> bytes:
    """An OpenAI-style SSE error event (type `server_error`)."""
    return f"data: {json.dumps(error_body(message, 'server_error', code))}\n\n".encode()


def client_gone(request: web.Request) -> bool:
    """Whether the client's connection is closed or closing (no I/O, never blocks)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def log_abandoned(request: web.Request, model_id: str) -> None:
    log.info("client left while %s %s waited for model %s to start; request dropped",
             request.method, request.path, model_id)


async def wait_until_ready(
    request: web.Request, manager: ModelManager, profile: ModelProfile, force_big: bool
) -> str | None:
    """The non-streaming wait: the model's base URL, or None when the client has left.

    Raises what `ModelManager.ready` raises. A cancelled handler (the server cancels it when the
    client disconnects) logs one line and re-raises.
    """
    try:
        url = await manager.ready(profile, force_big)
    except asyncio.CancelledError:
        log_abandoned(request, profile.id)
        raise
    if client_gone(request):
        log_abandoned(request, profile.id)
        return None
    return url


async def stream_while_starting(
    request: web.Request,
    manager: ModelManager,
    profile: ModelProfile,
    force_big: bool,
    interval: float,
) -> tuple[web.StreamResponse, str | None]:
    """Open the starting stream and keep it alive until the model serves.

    Returns the prepared response and the model's base URL, or None as the URL when the stream
    is already finished (the start failed and the error event was sent, or the client left).
    Never raises for a client that left; re-raises cancellation after logging it.
    """
    process = manager.processes[profile.id]
    response = web.StreamResponse(status=200, headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # reverse proxies must pass each comment on at once
        MODEL_STATE_HEADER: "starting",
        START_TIMEOUT_HEADER: f"{process.start_timeout:g}",
    })
    waited_since = time.monotonic()
    waiter = asyncio.create_task(manager.ready(profile, force_big),
                                 name=f"wait-{profile.id}")
    try:
        await response.prepare(request)
        while True:
            elapsed = process.starting_seconds()
            if elapsed is None:
                elapsed = time.monotonic() - waited_since
            waking = process.start_kind == "wake" or process.state is ModelState.SLEEPING
            phase = "waking" if waking else "starting"
            await response.write(keepalive_comment(profile.id, phase, elapsed))
            done, _ = await asyncio.wait({waiter}, timeout=interval)
            if done:
                break
        try:
            url = waiter.result()
        except AgentError as exc:
            log.warning("stream for model %s ends with an error: %s", profile.id, exc.message)
            await response.write(error_event(exc.message, exc.code))
            await response.write_eof()
            return response, None
        if client_gone(request):
            log_abandoned(request, profile.id)
            return response, None
        return response, url
    except ConnectionResetError:
        log_abandoned(request, profile.id)
        return response, None
    except asyncio.CancelledError:
        log_abandoned(request, profile.id)
        raise
    finally:
        # Our own wait only: the shared start is shielded and goes on for other requests.
        if not waiter.done():
            waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError, AgentError):
            await waiter
