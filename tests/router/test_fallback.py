"""Fallback before the first byte, and honest failure after it."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from tests.conftest import backend_env, decision_rows
from tests.helpers import eventually

HELLO = [{"role": "user", "content": "hello"}]


async def _client(router):
    return openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("failure", ["refuse", "hang", "500", "503", "429"])
async def test_failing_backend_falls_back_to_next_candidate(make_router, upstreams, failure):
    # read_timeout ends the "hang" attempt; it also bounds the healthy 3090's answer, so it is
    # not so short that a busy machine's pause could cut that one too.
    router = await make_router(backend_env(upstreams), first_byte_timeout=0.5, read_timeout=3)
    small = upstreams["3070"]
    if failure == "refuse":
        await small.stop()
    elif failure == "hang":
        small.mode = "hang"
    else:
        small.mode, small.fail_status = "status", int(failure)
    async with await _client(router) as client:
        raw = await client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    assert raw.parse().choices[0].message.content.startswith("tok0")
    assert raw.headers["x-routed-backend"] == "3090"
    [row] = await decision_rows(router)
    assert (row.backend, row.fallback_attempts, row.status_code) == ("3090", 1, 200)
    assert row.reason == "small_request"


async def test_streaming_request_falls_back_before_first_byte(make_router, upstreams):
    router = await make_router(backend_env(upstreams))
    upstreams["3070"].mode, upstreams["3070"].fail_status = "status", 502
    async with await _client(router) as client:
        stream = await client.chat.completions.create(model="auto", messages=HELLO, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "tok0 tok1 tok2 tok3 tok4 "
    [row] = await decision_rows(router)
    assert (row.backend, row.fallback_attempts, row.stream) == ("3090", 1, True)


async def test_all_candidates_failing_gives_503_naming_each(make_router, upstreams):
    router = await make_router(backend_env(upstreams))
    for fake in upstreams.values():
        fake.mode = "status"
    async with await _client(router) as client:
        with pytest.raises(openai.InternalServerError) as info:
            await client.chat.completions.create(model="auto", messages=HELLO)
    assert info.value.status_code == 503
    for name in ("3070", "3090", "opencode"):
        assert name in info.value.message
    [row] = await decision_rows(router)
    assert row.status_code == 503 and row.fallback_attempts == 2 and "3070" in row.error


async def test_all_rate_limited_gives_429_with_retry_after(make_router, upstreams):
    router = await make_router(backend_env(upstreams, "3070"))
    upstreams["3070"].mode, upstreams["3070"].fail_status = "status", 429
    async with await _client(router) as client:
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="auto", messages=HELLO)
    assert info.value.response.headers["retry-after"] == "7"


async def test_client_error_from_backend_passes_through_without_fallback(make_router, upstreams):
    router = await make_router(backend_env(upstreams))
    upstreams["3070"].mode, upstreams["3070"].fail_status = "status", 400
    async with await _client(router) as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="auto", messages=HELLO)
    assert "fake failure 400" in info.value.message
    assert upstreams["3090"].requests == []
    [row] = await decision_rows(router)
    assert row.status_code == 400 and row.backend == "3070"


async def test_backend_dying_mid_stream_ends_with_error_event(make_router, upstreams):
    router = await make_router(backend_env(upstreams))
    upstreams["3070"].mode = "die_mid_stream"
    seen: list[str] = []
    async with await _client(router) as client:
        stream = await client.chat.completions.create(model="auto", messages=HELLO, stream=True)
        with pytest.raises(openai.APIError) as info:
            async for chunk in stream:
                seen.append(chunk.choices[0].delta.content or "")
    assert seen == ["tok0 ", "tok1 "]
    assert "mid-stream" in info.value.message
    assert upstreams["3090"].requests == []  # after the first byte there is no fallback
    [row] = await decision_rows(router)
    assert row.status_code == 502 and "dropped the connection" in row.error


async def test_a_200_that_is_not_json_falls_back(make_router, upstreams):
    """An HTML page from a proxy in front of a backend is a backend failure, not an answer."""
    router = await make_router(backend_env(upstreams))
    upstreams["3070"].mode = "garbage"
    async with await _client(router) as client:
        raw = await client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    assert raw.http_response.status_code == 200
    assert raw.headers["x-routed-backend"] == "3090"
    assert raw.parse().choices[0].message.content
    [row] = await decision_rows(router)
    assert (row.backend, row.fallback_attempts, row.status_code) == ("3090", 1, 200)
    [failure] = json.loads(row.failures)
    assert failure["backend"] == "3070" and "text/html body, not JSON" in failure["error"]
    assert "<html>this is not json" in failure["error"]


async def test_a_200_that_is_not_json_with_no_other_candidate_is_a_502(make_router, upstreams):
    router = await make_router(backend_env(upstreams, "3070"))
    upstreams["3070"].mode = "garbage"
    async with httpx.AsyncClient(base_url=router.url) as client:
        response = await client.post("/v1/chat/completions",
                                     json={"model": "auto", "messages": HELLO})
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "text/html" in message and "<html>this is not json" in message


async def test_live_failures_mark_a_backend_down(make_router, upstreams):
    router = await make_router(backend_env(upstreams), unhealthy_after=2)
    await upstreams["3070"].stop()
    async with await _client(router) as client:
        for _ in range(2):
            await client.chat.completions.create(model="auto", messages=HELLO)
        raw = await client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    assert router.service.registry.get("3070").healthy is False
    assert raw.headers["x-route-reason"] == "fallback"
    rows = await decision_rows(router)
    assert [r.fallback_attempts for r in rows] == [1, 1, 0]


async def test_client_disconnect_mid_stream_cancels_upstream(make_router, upstreams):
    router = await make_router(backend_env(upstreams))
    upstreams["3070"].chunks = 2000
    import aiohttp
    async with aiohttp.ClientSession() as http:
        response = await http.post(router.url + "/v1/chat/completions", json={
            "model": "auto", "messages": HELLO, "stream": True})
        await response.content.readline()
        response.close()
    await asyncio.wait_for(upstreams["3070"].cancelled.wait(), 30)
    rows = await eventually(lambda: decision_rows(router), what="the decision row is written")
    assert rows[0].status_code == 499 and "disconnected" in rows[0].error


async def test_a_long_non_streaming_answer_is_not_mistaken_for_a_hang(make_router, upstreams):
    """A whole answer arrives only when generation ends. Silent past FIRST_BYTE_TIMEOUT, the
    backend is probed: it answers its health check, so it is busy, not hung, and waited for."""
    router = await make_router(backend_env(upstreams), first_byte_timeout=0.3, read_timeout=30)
    upstreams["3070"].delay = 1.2  # several silences in a row
    async with await _client(router) as client:
        raw = await client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    assert raw.headers["x-routed-backend"] == "3070"
    assert raw.parse().choices[0].message.content == "tok0 tok1 tok2 tok3 tok4 "
    [row] = await decision_rows(router)
    assert row.fallback_attempts == 0


async def test_a_hung_backend_fails_over_for_non_streaming_requests_too(make_router, upstreams):
    """Silent for FIRST_BYTE_TIMEOUT: hung, whether the client streams or not (the read
    timeout, meant for a long generation, is far beyond the test's own bound)."""
    router = await make_router(backend_env(upstreams), first_byte_timeout=1, read_timeout=600)
    upstreams["3070"].mode = "hang"
    async with await _client(router) as client, asyncio.timeout(60):
        raw = await client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    assert raw.headers["x-routed-backend"] == "3090"
    [row] = await decision_rows(router)
    assert row.fallback_attempts == 1
    assert "sent nothing for 1s and did not answer a health check (hung)" in row.failures
