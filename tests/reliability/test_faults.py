"""Misbehaving backends: garbage, malformed SSE, stalls and connect timeouts.

In every case the client gets a prompt answer (a fallback, or an OpenAI-shaped error), the router
stays up, and the decision row says what happened.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import openai
import pytest

from router.backends.base import HealthReport, ModelInfo
from tests.conftest import backend_env, decision_rows
from tests.reliability.conftest import HELLO


def _client(router) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0)


async def _still_serving(router) -> None:
    async with aiohttp.ClientSession() as http, http.get(router.url + "/health") as r:
        assert r.status == 200
    async with _client(router) as client:
        reply = await client.chat.completions.create(model="3090", messages=HELLO)
    assert reply.choices[0].message.content


async def _stream_text(router, model: str = "auto") -> tuple[list[str], openai.APIError | None]:
    seen: list[str] = []
    async with _client(router) as client:
        stream = await client.chat.completions.create(model=model, messages=HELLO, stream=True)
        try:
            async for chunk in stream:
                if chunk.choices:
                    seen.append(chunk.choices[0].delta.content or "")
        except openai.APIError as exc:
            return seen, exc
    return seen, None


@pytest.mark.parametrize("mode", ["garbage", "malformed_first"])
async def test_bad_answer_to_a_stream_before_the_first_byte_falls_back(make_router, tricky, mode):
    router = await make_router(backend_env(tricky))
    tricky["3070"].mode = mode
    seen, error = await _stream_text(router)
    assert error is None and "".join(seen) == "tok0 tok1 tok2 tok3 tok4 "
    [row] = await decision_rows(router)
    assert (row.backend, row.fallback_attempts, row.status_code, row.stream) == ("3090", 1, 200, True)
    assert tricky["3070"].requests and tricky["3090"].requests
    await _still_serving(router)


@pytest.mark.parametrize("mode,words,status", [
    ("garbage", "'text/html; charset=utf-8', not an event stream ('<html>this is not json", 502),
    ("malformed_first", "not JSON", 503)])
async def test_bad_stream_from_the_only_backend_is_a_prompt_error(make_router, tricky, mode, words,
                                                                  status):
    # Timeouts far beyond the test's bound: the 503 must come from what the backend sent,
    # not from waiting for a timeout.
    router = await make_router({**backend_env(tricky, "3070"), "FIRST_BYTE_TIMEOUT": "600",
                                "BACKEND_READ_TIMEOUT": "600"})
    tricky["3070"].mode = mode
    async with _client(router) as client, asyncio.timeout(60):
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="auto", messages=HELLO, stream=True)
    assert info.value.status_code == status
    assert info.value.body["code"] == "upstream_error" and words in info.value.body["message"]
    [row] = await decision_rows(router)
    assert row.status_code == status and row.backend == "3070" and words in row.error


async def test_malformed_event_mid_stream_ends_with_error_event_and_502_row(make_router, tricky):
    router = await make_router(backend_env(tricky))
    tricky["3070"].mode = "malformed_sse"  # good event, then `data: {not json at all`
    seen, error = await _stream_text(router)
    assert seen == ["tok0 "]  # the good event before it, then never the malformed line
    assert error is not None and "not JSON" in error.message and "mid-stream" in error.message
    assert tricky["3090"].requests == []  # after the first byte there is no fallback
    [row] = await decision_rows(router)
    assert row.status_code == 502 and row.backend == "3070"
    assert "backend 3070 sent a data line that is not JSON" in row.error
    await _still_serving(router)


async def test_malformed_event_raw_bytes_end_on_a_clean_line(make_router, tricky):
    """The client never receives the torn line: the error event is a well-formed SSE event."""
    router = await make_router(backend_env(tricky, "3070"))
    tricky["3070"].mode = "malformed_sse"
    async with aiohttp.ClientSession() as http, http.post(router.url + "/v1/chat/completions",
                         json={"messages": HELLO, "stream": True}) as r:
        raw = await r.read()
    events = [e for e in raw.split(b"\n\n") if e]
    assert b"data: {not json" not in raw  # only quoted inside the error message
    assert all(e.startswith(b"data: {") for e in events)
    assert events[-1].startswith(b'data: {"error":')


async def test_backend_stalling_mid_stream_hits_the_read_timeout(make_router, tricky):
    router = await make_router({**backend_env(tricky), "BACKEND_READ_TIMEOUT": "0.5"})
    tricky["3070"].mode, tricky["3070"].die_after = "stall_mid_stream", 2
    started = time.perf_counter()
    seen, error = await _stream_text(router)
    assert time.perf_counter() - started >= 0.5  # a lower bound no busy machine can break
    assert seen == ["tok0 ", "tok1 "]
    assert error is not None and "read timeout" in error.message
    [row] = await decision_rows(router)
    assert row.status_code == 502 and "stopped sending (read timeout)" in row.error
    await _still_serving(router)


async def test_connect_timeout_is_configurable_and_falls_back(make_router, tricky, blackhole):
    env = {**backend_env(tricky, "3090", "opencode"), "LOCAL_3070_URL": blackhole,
           "BACKEND_CONNECT_TIMEOUT": "0.3", "FIRST_BYTE_TIMEOUT": "600",
           "BACKEND_READ_TIMEOUT": "600"}
    router = await make_router(env)
    # As if it had answered its last check and then its host stopped completing handshakes.
    router.service.registry.apply("3070", HealthReport(True, models=(ModelInfo("m", 32768),)))
    # Bounded far below FIRST_BYTE_TIMEOUT / BACKEND_READ_TIMEOUT (600 s): only the 0.3 s
    # connect timeout can end the attempt at the blackhole within it.
    async with _client(router) as client, asyncio.timeout(60):
        raw = await client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    assert raw.headers["x-routed-backend"] == "3090"
    [row] = await decision_rows(router)
    assert (row.backend, row.fallback_attempts, row.status_code) == ("3090", 1, 200)
