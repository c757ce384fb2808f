"""Forward one OpenAI request to a ready vLLM and stream its answer back as it arrives.

`forward()` sends the (already rewritten) body upstream and copies status, content type and the
body through chunk by chunk — SSE events reach the client as vLLM emits them, nothing is buffered.
Direct answers carry `X-Model-State: ready`. A failure before the response starts raises
`ModelUnavailable` (the middleware turns it into a 503); a failure after the first byte ends an
SSE stream with an OpenAI-style error event, never a silent truncation. Given an already
prepared starting stream (`starting.stream_while_starting`), vLLM's stream is appended to it and
any failure or non-stream error answer from vLLM becomes an error event there. A client that
disconnects closes the upstream request, which makes vLLM abort the generation.
"""

from __future__ import annotations

import json
import logging

import aiohttp
from aiohttp import web

from inference.errors import ModelUnavailable, error_body

log = logging.getLogger(__name__)

UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=600)
# Request headers worth passing on; vLLM runs without an API key, so Authorization stays here.
_FORWARD_REQUEST_HEADERS = ("Content-Type", "Accept", "X-Request-ID", "User-Agent")
_FORWARD_RESPONSE_HEADERS = ("Content-Type", "Cache-Control", "X-Request-ID")


async def forward(
    request: web.Request,
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    model_id: str,
    started: web.StreamResponse | None = None,
) -> web.StreamResponse:
    """POST `body` to `url` and stream the reply to `request`'s client (see module docstring).

    `started` is a starting stream already sent to the client (status 200, SSE).
    """
    headers = {h: request.headers[h] for h in _FORWARD_REQUEST_HEADERS if h in request.headers}
    headers["Content-Type"] = "application/json"
    try:
        upstream = await session.post(url, data=body, headers=headers, timeout=UPSTREAM_TIMEOUT)
    except (TimeoutError, aiohttp.ClientError) as exc:
        failure = ModelUnavailable(
            f"Model {model_id!r} did not accept the request: {exc.__class__.__name__}: {exc}."
        )
        if started is None:
            raise failure from None
        await _end_with_error(started, failure.message, failure.code)
        return started
    async with upstream:
        is_sse = upstream.content_type == "text/event-stream"
        if started is not None:
            response = started
            if upstream.status != 200 or not is_sse:
                payload = await upstream.read()
                message = _upstream_message(upstream.status, payload, model_id)
                await _end_with_error(response, message, "upstream_error")
                return response
        else:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name in _FORWARD_RESPONSE_HEADERS:
                if name in upstream.headers:
                    response.headers[name] = upstream.headers[name]
            response.headers["X-Model-State"] = "ready"
            if is_sse:
                # Tell reverse proxies in front of us not to buffer the event stream either.
                response.headers["X-Accel-Buffering"] = "no"
            await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("model %s failed mid-response: %s", model_id, exc)
            if is_sse:
                event = error_body(
                    f"Model {model_id!r} failed while answering: {exc.__class__.__name__}.",
                    "server_error", "upstream_failed",
                )
                await _write_quietly(response, f"data: {json.dumps(event)}\n\n".encode())
        except ConnectionResetError:
            log.info("client went away during a %s response", model_id)
            return response
        await _write_eof_quietly(response)
        return response


def _upstream_message(status: int, payload: bytes, model_id: str) -> str:
    """The message of vLLM's error answer (OpenAI-shaped when it is), as one sentence."""
    try:
        data = json.loads(payload)
        message = data["error"]["message"] if isinstance(data.get("error"), dict) else data
    except (ValueError, TypeError, KeyError, AttributeError):
        message = payload.decode(errors="replace")[:300]
    return f"Model {model_id!r} answered {status}: {message}"


async def _end_with_error(response: web.StreamResponse, message: str, code: str | None) -> None:
    event = error_body(message, "server_error", code)
    await _write_quietly(response, f"data: {json.dumps(event)}\n\n".encode())
    await _write_eof_quietly(response)


async def _write_quietly(response: web.StreamResponse, data: bytes) -> None:
    try:
        await response.write(data)
    except ConnectionResetError:
        pass


async def _write_eof_quietly(response: web.StreamResponse) -> None:
    try:
        await response.write_eof()
    except ConnectionResetError:
        pass
