"""No silent wait on a cold GPU, through the router and a real agent: keep-alives while the
model starts, a start failure reported at once, a hung backend failed over, notes as reasoning."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.conftest import LOGS, decision_rows
from tests.fakes.upstream import FakeUpstream
from tests.helpers import eventually

HELLO = [{"role": "user", "content": "hello"}]


def lab(agent_url: str, fallback_url: str | None = None) -> dict[str, str]:
    """The seed's env: the agent as the 3090 (so `big` names it), another backend as the 3070."""
    env = {"GAMING_PC_URL": agent_url, "STREAM_KEEPALIVE": "1", "FIRST_BYTE_TIMEOUT": "3",
           "BACKEND_READ_TIMEOUT": "600"}
    if fallback_url:
        env["LOCAL_3070_URL"] = fallback_url
    return env


@pytest.fixture
async def spare():
    fake = await FakeUpstream("spare-model", 32768).start()
    yield fake
    await fake.stop()


async def test_a_client_with_a_4s_read_timeout_survives_a_15s_start(make_router, start_agent):
    agent = await start_agent("--startup-delay", "15", keepalive=1)
    router = await make_router(lab(agent))
    # httpx raises ReadTimeout if 4 s pass without a byte: the keep-alives must prevent it
    timeout = httpx.Timeout(connect=5, read=4, write=5, pool=5)
    async with httpx.AsyncClient(base_url=router.url, timeout=timeout) as http:
        async with http.stream("POST", "/v1/chat/completions", json={
                "model": "big", "messages": HELLO, "stream": True}) as stream:
            assert stream.status_code == 200
            body = "\n".join([line async for line in stream.aiter_lines()])
    assert ": 3090: model cold starting" in body  # the router's note carries the agent's state
    assert "data: [DONE]" in body and '"content"' in body
    [row] = await decision_rows(router)
    assert (row.backend, row.status_code, row.fallback_attempts) == ("3090", 200, 0)
    assert row.ttft_ms > 10_000  # it really waited for the start


async def test_the_openai_sdk_streams_through_a_cold_start(make_router, start_agent):
    agent = await start_agent("--startup-delay", "8", keepalive=1)
    router = await make_router(lab(agent))
    client = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="x", max_retries=0,
                                timeout=4.0)  # also the longest wait between two bytes
    async with client:
        stream = await client.chat.completions.create(model="big", messages=HELLO, stream=True)
        pieces = [c.choices[0].delta.content async for c in stream
                  if c.choices and c.choices[0].delta.content]
    assert "".join(pieces)


async def test_a_silent_non_streaming_start_longer_than_the_read_timeout_is_waited_for(
        make_router, start_agent):
    # A non-streaming request gets nothing at all from the agent until the model is up (no
    # notes: those are SSE). The router waits as long as the agent's /status says a start may
    # take, not BACKEND_READ_TIMEOUT: here 6 s of start against a 2 s read timeout.
    agent = await start_agent("--startup-delay", "6", start_timeout=30)
    router = await make_router({**lab(agent), "FIRST_BYTE_TIMEOUT": "1",
                                "BACKEND_READ_TIMEOUT": "2"})
    assert router.service.registry.states["3090"].start_timeout == 30  # from the agent's /status
    async with httpx.AsyncClient(base_url=router.url, timeout=60) as http, asyncio.timeout(60):
        answer = await http.post("/v1/chat/completions", json={"model": "big", "messages": HELLO})
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]
    [row] = await decision_rows(router)
    assert (row.backend, row.status_code, row.fallback_attempts) == ("3090", 200, 0)
    assert row.ttft_ms > 5_000  # it waited out the start, past the read timeout


async def test_a_start_that_crashes_ends_the_wait_at_once(make_router, start_agent, spare):
    agent = await start_agent("--startup-delay", "1", "--crash-during-start")
    router = await make_router(lab(agent))
    async with httpx.AsyncClient(base_url=router.url, timeout=60) as http, asyncio.timeout(60):
        whole = await http.post("/v1/chat/completions", json={"model": "big", "messages": HELLO})
        stream = await http.post("/v1/chat/completions", json={
            "model": "big", "messages": HELLO, "stream": True})
    # the only candidate failed (the agent's START_TIMEOUT is 600 s: this is not a timeout)
    assert whole.status_code == 503
    assert "exited" in whole.json()["error"]["message"]
    assert stream.status_code in (200, 503)
    assert "exited" in stream.text
    rows = await decision_rows(router)
    assert [r.status_code for r in rows] == [503, 503]


async def test_a_crashed_start_falls_back_to_the_next_candidate(make_router, start_agent, spare):
    agent = await start_agent("--startup-delay", "1", "--crash-during-start")
    router = await make_router(lab(agent, spare.url))
    async with httpx.AsyncClient(base_url=router.url, timeout=60) as http:
        answer = await http.post("/v1/chat/completions", json={
            "model": "big", "messages": HELLO, "stream": True})
    assert answer.status_code == 200 and "data: [DONE]" in answer.text
    [row] = await decision_rows(router)
    assert (row.backend, row.fallback_attempts) == ("3070", 1)
    assert "3090" in row.failures and "exited" in row.failures


@pytest.mark.parametrize("stream", [True, False])
async def test_a_hung_backend_is_failed_over(make_router, spare, stream):
    hung = await FakeUpstream("hung-model", 32768).start()
    try:
        router = await make_router({"GAMING_PC_URL": hung.url, "LOCAL_3070_URL": spare.url,
                                    "FIRST_BYTE_TIMEOUT": "2", "BACKEND_READ_TIMEOUT": "600",
                                    "STREAM_KEEPALIVE": "1"})
        hung.mode = "hang"  # since its last health check: accepts connections, answers nothing
        async with httpx.AsyncClient(base_url=router.url, timeout=60) as http, asyncio.timeout(60):
            answer = await http.post("/v1/chat/completions", json={
                "model": "big", "messages": HELLO, "stream": stream})
        assert answer.status_code == 200
        [row] = await decision_rows(router)
        assert (row.backend, row.fallback_attempts) == ("3070", 1)
        assert "sent nothing for 2s and did not answer a health check (hung)" in row.failures
    finally:
        await hung.stop()


async def test_loading_status_notes_arrive_as_reasoning(make_router, start_agent):
    agent = await start_agent("--startup-delay", "4", keepalive=1)
    router = await make_router(lab(agent))
    async with httpx.AsyncClient(base_url=router.url, timeout=60) as http:
        answer = await http.post("/v1/chat/completions", json={
            "model": "big", "messages": HELLO, "stream": True},
            headers={"X-Loading-Status": "true"})
    assert answer.status_code == 200
    assert '"reasoning_content":"Starting cold on 3090' in answer.text
    assert answer.text.index("reasoning_content") < answer.text.index('"content"')


async def test_a_client_that_leaves_cancels_the_wait_at_router_and_agent(make_router, start_agent):
    agent = await start_agent("--startup-delay", "4", keepalive=1)
    router = await make_router(lab(agent))
    async with httpx.AsyncClient(base_url=router.url, timeout=60) as http:
        with pytest.raises(httpx.ReadTimeout):  # a non-streaming client gives up after 1.5 s
            await http.post("/v1/chat/completions", json={"model": "big", "messages": HELLO},
                            timeout=httpx.Timeout(5, read=1.5))

        async def recorded() -> bool:
            found = await decision_rows(router)
            return bool(found) and found[0].status_code == 499

        await eventually(recorded, timeout=30)

        async def ready() -> bool:  # the start itself goes on for whoever asks next
            status = (await http.get(agent + "/status")).json()
            return any(m["id"] == "cold" and m["state"] == "ready" for m in status["models"])

        await eventually(ready, timeout=60)
    assert "stand_in: received" not in LOGS[agent].read_text()  # never handed to the engine
