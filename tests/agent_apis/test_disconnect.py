"""A client that goes away mid-stream: the upstream generation is stopped and the decision row
says 499, for Messages and Responses streams as for chat."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.conftest import backend_env, decision_rows
from tests.helpers import eventually


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/messages", {"model": "auto", "max_tokens": 10, "stream": True,
                      "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/responses", {"model": "auto", "input": "hi", "stream": True}),
])
async def test_client_disconnect_mid_stream(make_router, upstreams, path, body):
    router = await make_router(backend_env(upstreams, "3070"))
    upstreams["3070"].chunks = 2000
    async with aiohttp.ClientSession() as http:
        response = await http.post(router.url + path, json=body)
        first = await response.content.readline()
        response.close()
    assert first.startswith(b"event: ")
    await asyncio.wait_for(upstreams["3070"].cancelled.wait(), 30)
    rows = await eventually(lambda: decision_rows(router), what="the decision row is written")
    assert (rows[0].endpoint, rows[0].status_code) == (path, 499)
    assert "disconnected" in rows[0].error
