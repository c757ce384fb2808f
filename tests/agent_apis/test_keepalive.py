"""A slow first token: Messages and Responses streams carry SSE comments while they wait (every
client ignores them), then the answer; if no backend answers, the stream ends with that API's
error event."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from tests.conftest import backend_env, decision_rows


async def test_slow_first_token_keeps_the_stream_alive(make_router, upstreams):
    router = await make_router(backend_env(upstreams, "3070"), stream_keepalive=0.05)
    upstreams["3070"].delay = 0.4
    async with httpx.AsyncClient() as http:
        raw = await http.post(router.url + "/v1/messages", json={
            "model": "auto", "max_tokens": 10, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]})
    text = raw.text
    assert text.startswith(": ") and text.index(": ") < text.index("event: message_start")
    assert text.rstrip().endswith('data: {"type":"message_stop"}')
    async with anthropic.AsyncAnthropic(base_url=router.url, api_key="x", max_retries=0) as sdk:
        async with sdk.messages.stream(model="auto", max_tokens=10,
                                       messages=[{"role": "user", "content": "hi"}]) as stream:
            answer = "".join([t async for t in stream.text_stream])
    assert answer == "tok0 tok1 tok2 tok3 tok4 "


@pytest.mark.parametrize(("path", "body", "ending"), [
    ("/v1/messages", {"model": "auto", "max_tokens": 10, "stream": True,
                      "messages": [{"role": "user", "content": "hi"}]},
     'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"'),
    ("/v1/responses", {"model": "auto", "input": "hi", "stream": True}, "event: response.failed"),
])
async def test_no_backend_after_keepalives_ends_with_the_apis_error_event(
        make_router, upstreams, path, body, ending):
    router = await make_router(backend_env(upstreams, "3070"), stream_keepalive=0.05,
                               first_byte_timeout=0.3)
    upstreams["3070"].mode = "hang"
    async with httpx.AsyncClient() as http:
        raw = await http.post(router.url + path, json=body)
    assert raw.status_code == 200 and raw.text.startswith(": ")
    assert ending in raw.text
    rows = await decision_rows(router)
    assert rows[-1].endpoint == path and rows[-1].status_code == 503
