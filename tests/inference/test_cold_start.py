"""Cold starts through the real agent: keep-alive comments, start failures, abandoned requests.

The engine is tests/fakes/stand_in_engine.py, which takes `--startup-delay` seconds before its
port answers (like vLLM loading weights) and can crash during that start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re

import aiohttp
import openai
import pytest

from tests.inference.inference_helpers import (
    AgentFactory,
    eventually,
    make_config,
    model_view,
    stand_in_model,
)

COMMENT = re.compile(r"^: model (\S+) (starting|waking) \((\d+\.\d) s\)$")
KEEPALIVE = 0.5


def _chat(content: str, stream: bool) -> dict[str, object]:
    return {"model": "any", "stream": stream, "messages": [{"role": "user", "content": content}]}


async def _read_sse(resp: aiohttp.ClientResponse) -> tuple[list[str], list[str]]:
    """All comment lines and all `data:` payloads of a stream, in order."""
    comments: list[str] = []
    data: list[str] = []
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith(":"):
            comments.append(line)
        elif line.startswith("data: "):
            data.append(line[6:])
    return comments, data


async def test_stream_with_a_4s_read_timeout_survives_an_8s_start(
        start_agent: AgentFactory) -> None:
    config = make_config(stand_in_model("slow", "--startup-delay", "8"))
    agent = await start_agent(config, stream_keepalive=KEEPALIVE, start_timeout=60.0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=4)
    sdk = openai.AsyncOpenAI(base_url=agent.url + "/v1", api_key="unused", max_retries=0,
                             timeout=4.0)  # read timeout between bytes, among others

    async def raw_client() -> tuple[aiohttp.ClientResponse, list[str], list[str]]:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
                agent.url + "/v1/chat/completions", json=_chat("raw hello", True)) as resp:
            comments, data = await _read_sse(resp)
            return resp, comments, data

    async def sdk_client() -> str:
        stream = await sdk.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "sdk hello"}], stream=True)
        parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
        return "".join(parts).strip()

    try:
        raw_task = asyncio.create_task(raw_client())
        sdk_task = asyncio.create_task(sdk_client())
        during = await eventually(agent, lambda s: s["models"][0]["state"] == "starting")
        view = model_view(during, "slow")
        assert view["started_at"] is not None and view["start_kind"] == "cold"
        assert view["start_timeout"] == 60.0
        (resp, comments, data), sdk_text = await asyncio.gather(raw_task, sdk_task)
    finally:
        await sdk.close()
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["X-Model-State"] == "starting"
    assert resp.headers["X-Model-Start-Timeout"] == "60"
    matches = [COMMENT.match(line) for line in comments]
    assert all(matches), comments
    elapsed = [float(m.group(3)) for m in matches if m]
    assert {m.group(1) for m in matches if m} == {"slow"}
    assert elapsed == sorted(elapsed)
    # The engine slept 8 s before answering: the stream outlived twice the read timeout.
    assert elapsed[-1] >= 5.0 and len(comments) >= 8
    text = "".join(json.loads(d)["choices"][0]["delta"].get("content", "")
                   for d in data if d != "[DONE]")
    assert text.strip() == "echo[slow-served]: raw hello"
    assert data[-1] == "[DONE]"
    assert sdk_text == "echo[slow-served]: sdk hello"
    after = model_view(await agent.get_json("/status"), "slow")
    assert after["state"] == "ready" and after["started_at"] is None
    assert after["last_start_seconds"] >= 7.0 and after["last_start_kind"] == "cold"


async def test_ready_model_streams_without_comments(start_agent: AgentFactory) -> None:
    agent = await start_agent(make_config(stand_in_model("m")), stream_keepalive=KEEPALIVE)
    await agent.post("/models/m/load")
    async with agent.session.post(agent.url + "/v1/chat/completions",
                                  json=_chat("hi", True)) as resp:
        assert resp.headers["X-Model-State"] == "ready"
        comments, data = await _read_sse(resp)
    assert comments == [] and data[-1] == "[DONE]"


async def test_crash_during_start_fails_stream_and_plain_waiters_at_once(
        start_agent: AgentFactory) -> None:
    config = make_config(stand_in_model("boom", "--startup-delay", "2", "--crash-during-start"))
    # A start timeout far beyond the test's own bound: only the crash can end these waits.
    agent = await start_agent(config, stream_keepalive=KEEPALIVE, start_timeout=600.0)

    async def stream() -> tuple[int, str, list[str], list[str]]:
        async with agent.session.post(agent.url + "/v1/chat/completions",
                                      json=_chat("s", True)) as resp:
            comments, data = await _read_sse(resp)
            return resp.status, resp.headers["X-Model-State"], comments, data

    (status, state, comments, data), (plain_status, plain) = await asyncio.wait_for(
        asyncio.gather(stream(), agent.post("/v1/chat/completions", _chat("p", False))), 60)
    assert status == 200 and state == "starting" and comments
    assert len(data) == 1, data  # one error event, no [DONE]
    error = json.loads(data[0])["error"]
    assert error["code"] == "model_start_failed" and error["type"] == "server_error"
    assert "exited with code 1 before it became ready" in error["message"]
    assert "CUDA out of memory" in error["message"]
    assert plain_status == 503
    assert plain["error"]["code"] == "model_start_failed"
    assert "exited with code 1" in plain["error"]["message"]
    view = model_view(await agent.get_json("/status"), "boom")
    assert view["state"] == "stopped" and view["exit_code"] == 1
    assert any("CUDA out of memory" in line for line in view["log_tail"])
    assert view["last_start_seconds"] is None


async def test_start_timeout_ends_the_stream_with_an_error_event(
        start_agent: AgentFactory) -> None:
    config = make_config(stand_in_model("stuck", "--startup-delay", "30"))
    agent = await start_agent(config, stream_keepalive=KEEPALIVE, start_timeout=1.5)
    async with agent.session.post(agent.url + "/v1/chat/completions",
                                  json=_chat("s", True)) as resp:
        comments, data = await _read_sse(resp)
    assert comments and len(data) == 1
    error = json.loads(data[0])["error"]
    assert error["code"] == "model_start_failed"
    assert "did not become healthy within 1.5 seconds" in error["message"]


@pytest.mark.parametrize("cancellation", [True, False], ids=["cancelling", "not-cancelling"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
async def test_client_leaving_while_waiting_never_reaches_the_engine(
        start_agent: AgentFactory, caplog: pytest.LogCaptureFixture, stream: bool,
        cancellation: bool) -> None:
    """With handler cancellation (the CLI's setting) and without it (aiohttp's default)."""
    caplog.set_level(logging.INFO)
    config = make_config(stand_in_model("late", "--startup-delay", "5"))
    agent = await start_agent(config, handler_cancellation=cancellation,
                              stream_keepalive=KEEPALIVE, start_timeout=60.0)
    session = aiohttp.ClientSession()
    try:
        if stream:
            resp = await session.post(agent.url + "/v1/chat/completions",
                                      json=_chat("abandoned", True))
            first = await resp.content.readline()
            assert first.startswith(b": model late starting")
            resp.close()  # the client leaves while the model starts
        else:
            leaver = asyncio.create_task(
                session.post(agent.url + "/v1/chat/completions", json=_chat("abandoned", False)))
            await eventually(agent, lambda s: s["active_requests"] == 1)
            leaver.cancel()
            with pytest.raises(asyncio.CancelledError):
                await leaver
        await session.close()
        if stream or cancellation:
            # The agent notices at once (a cancelled handler, or the next keep-alive write):
            # the request no longer counts as active, and the start goes on for others.
            status = await eventually(agent, lambda s: s["active_requests"] == 0, timeout=2.0)
            assert model_view(status, "late")["state"] == "starting"
    finally:
        await session.close()
    await eventually(agent, lambda s: s["models"][0]["state"] == "ready")
    status_code, body = await agent.chat("after", model="late")
    assert status_code == 200, body
    log = agent.engine_log("late")
    assert "stand_in: received /v1/chat/completions after" in log
    assert "abandoned" not in log
    lines = [r for r in caplog.records if "client left while" in r.getMessage()]
    assert len(lines) == 1 and "late" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
