"""Every routed request gets exactly one decision row, even when the request ends in an
unexpected way before the first byte (a backend raising something other than UpstreamError, the
request being cancelled while it waits for a backend)."""

from __future__ import annotations

import asyncio

import aiohttp

from router.backends.base import StreamBroken
from tests.conftest import backend_env, decision_rows

HELLO = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}


async def test_stream_broken_before_first_byte_falls_back_with_a_row(make_router, upstreams):
    # The OpenCode backend raises StreamBroken from send() when its event stream ends before
    # the first output; that is a failure before the first byte, so the next candidate serves.
    router = await make_router(backend_env(upstreams, "3070", "3090"))

    async def broken_send(*_args, **_kwargs):
        raise StreamBroken("backend 3070 closed its event stream before the answer finished")

    router.service.registry.get("3070").client.send = broken_send  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http, \
            http.post(router.url + "/v1/chat/completions", json=HELLO) as response:
        assert response.status == 200, await response.text()
        assert response.headers["X-Routed-Backend"] == "3090"
    [row] = await decision_rows(router)
    assert (row.backend, row.status_code, row.fallback_attempts) == ("3090", 200, 1)


async def test_unexpected_backend_exception_still_records_a_row(make_router, upstreams):
    router = await make_router(backend_env(upstreams, "3070"))

    async def buggy_send(*_args, **_kwargs):
        raise KeyError("id")  # e.g. a backend answering JSON without the expected field

    router.service.registry.get("3070").client.send = buggy_send  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http, \
            http.post(router.url + "/v1/chat/completions", json=HELLO) as response:
        body = await response.json()
        assert response.status >= 500
        assert set(body["error"]) == {"message", "type", "param", "code"}
    rows = await decision_rows(router)
    assert len(rows) == 1 and rows[0].status_code >= 500 and rows[0].backend == "3070"


async def test_cancel_while_waiting_for_first_byte_records_a_499_row(make_router, upstreams):
    # Cancellation happens on a clean shutdown past SHUTDOWN_GRACE and when the bot abandons
    # a chat; the SPEC wants a row for every routed request and nothing lost on shutdown.
    router = await make_router(backend_env(upstreams, "3070"))
    upstreams["3070"].mode = "hang"
    service = router.service
    body = dict(HELLO)
    row = service.new_row(request_id="r-cancel", source="api", client=None,
                          endpoint="/v1/chat/completions", body=body)
    task = asyncio.create_task(service.open("/v1/chat/completions", body, row))
    await asyncio.wait_for(upstreams["3070"].received.wait(), 30)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    rows = await decision_rows(router)
    assert [(r.request_id, r.status_code) for r in rows] == [("r-cancel", 499)]
