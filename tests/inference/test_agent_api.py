"""The agent's HTTP API end to end, with the fake vLLM as the model server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time

import openai
import pytest

from inference.process import ModelState
from tests.inference.inference_helpers import AgentFactory, fake_model, make_config, wait_until


async def test_health_and_status_before_any_request(start_agent: AgentFactory) -> None:
    agent = await start_agent()
    assert await agent.get_json("/health") == {"status": "ok"}
    status = await agent.get_json("/status")
    assert status["gaming_mode"] is False
    assert status["gpu"] is None  # no NVML on CI
    assert status["active_requests"] == 0
    [model] = status["models"]
    assert model["id"] == "fake" and model["state"] == "stopped"
    assert model["idle_seconds"] is None


async def test_first_chat_starts_the_model_and_rewrites_model(start_agent: AgentFactory) -> None:
    agent = await start_agent()
    status, body = await agent.chat("hi there", model="3070")
    assert status == 200, body
    # One configured model takes any model id; vLLM sees its served name.
    assert body["choices"][0]["message"]["content"] == "echo[fake-served]: hi there"
    status_body = await agent.get_json("/status")
    [model] = status_body["models"]
    assert model["state"] == "ready"
    assert model["active_requests"] == 0
    assert model["idle_seconds"] is not None


async def test_openai_sdk_chat_stream_completions_embeddings(start_agent: AgentFactory) -> None:
    agent = await start_agent()
    client = openai.AsyncOpenAI(base_url=agent.url + "/v1", api_key="unused")
    try:
        chat = await client.chat.completions.create(
            model="anything", messages=[{"role": "user", "content": "one two"}])
        assert chat.choices[0].message.content == "echo[fake-served]: one two"
        stream = await client.chat.completions.create(
            model="anything", messages=[{"role": "user", "content": "one two"}], stream=True,
            stream_options={"include_usage": True})
        parts, usage = [], None
        async for chunk in stream:
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
            if chunk.usage:
                usage = chunk.usage
        assert "".join(parts).strip() == "echo[fake-served]: one two"
        assert usage is not None and usage.total_tokens > 0
        completion = await client.completions.create(model="x", prompt="say")
        assert completion.choices[0].text == "echo[fake-served]: say"
        embedding = await client.embeddings.create(model="x", input=["a", "bb"])
        assert [len(e.embedding) for e in embedding.data] == [3, 3]
    finally:
        await client.close()


async def test_stream_chunks_arrive_as_they_are_produced(start_agent: AgentFactory) -> None:
    config = make_config(fake_model("fake", "--stream-delay", "0.4"))
    agent = await start_agent(config)
    await agent.post("/models/fake/load")
    body = {"model": "fake", "stream": True,
            "messages": [{"role": "user", "content": "a b c d"}]}
    started = time.monotonic()
    async with agent.session.post(agent.url + "/v1/chat/completions", json=body) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = await resp.content.readline()
        first_at = time.monotonic() - started
        rest = await resp.read()
    total = time.monotonic() - started
    assert first.startswith(b"data: ")
    # Six words at 0.4 s each: the first event must not wait for the last one.
    assert first_at < total - 1.0
    assert rest.rstrip().endswith(b"data: [DONE]")


async def test_concurrent_first_requests_start_one_copy(start_agent: AgentFactory) -> None:
    agent = await start_agent(make_config(fake_model("fake", "--startup-delay", "0.5")))
    results = await asyncio.gather(*(agent.chat(f"n{i}") for i in range(6)))
    assert all(status == 200 for status, _ in results)
    log = agent.manager.processes["fake"].log_path.read_text()
    assert len(re.findall(r"fake_vllm: pid \d+", log)) == 1


async def test_v1_models_lists_config_without_starting(start_agent: AgentFactory) -> None:
    agent = await start_agent()
    listing = await agent.get_json("/v1/models")
    [entry] = listing["data"]
    assert entry["id"] == "fake-served" and entry["object"] == "model"
    assert entry["max_model_len"] == 2048 and entry["owned_by"]
    assert agent.manager.processes["fake"].state is ModelState.STOPPED


async def test_start_failure_is_a_503_with_the_log_tail(start_agent: AgentFactory) -> None:
    agent = await start_agent(make_config(fake_model("fake", "--fail-early")))
    results = await asyncio.gather(*(agent.chat() for _ in range(3)))
    for status, body in results:
        assert status == 503
        assert body["error"]["code"] == "model_start_failed"
        assert "CUDA out of memory" in body["error"]["message"]
    [model] = (await agent.get_json("/status"))["models"]
    assert model["state"] == "stopped"
    assert any("CUDA out of memory" in line for line in model["log_tail"])


async def test_crash_after_ready_shows_in_status_and_restarts(start_agent: AgentFactory) -> None:
    agent = await start_agent(make_config(fake_model("fake", "--crash-after", "1")))
    status, _ = await agent.chat()
    assert status == 200
    process = agent.manager.processes["fake"]
    await wait_until(lambda: process.state is ModelState.STOPPED)
    [model] = (await agent.get_json("/status"))["models"]
    assert "exited unexpectedly with code 3" in model["last_error"]
    assert model["log_tail"]
    status, _ = await agent.chat()
    assert status == 200


async def test_gaming_mode_refuses_unless_force_big(start_agent: AgentFactory) -> None:
    agent = await start_agent()
    assert (await agent.chat())[0] == 200
    status, body = await agent.post("/gaming-mode", {"enabled": True})
    assert status == 200 and body["gaming_mode"] is True
    assert body["models"][0]["state"] == "stopped"  # VRAM freed
    status, body = await agent.chat()
    assert status == 503
    assert body["error"]["code"] == "gaming_mode"
    assert "X-Force-Big: true" in body["error"]["message"]
    assert agent.manager.processes["fake"].state is ModelState.STOPPED
    status, body = await agent.chat(headers={"X-Force-Big": "true"})
    assert status == 200, body
    status, body = await agent.post("/gaming-mode", {"enabled": False})
    assert body["gaming_mode"] is False
    assert (await agent.chat())[0] == 200


async def test_gaming_mode_survives_a_restart(start_agent: AgentFactory) -> None:
    first = await start_agent()
    await first.post("/gaming-mode", {"enabled": True})
    await first.server.close()
    second = await start_agent()
    status = await second.get_json("/status")
    assert status["gaming_mode"] is True
    assert status["gaming_mode_changed_at"]
    assert (await second.chat())[0] == 503
    assert (await second.get_json("/gaming-mode"))["enabled"] is True


async def test_gaming_mode_body_is_validated(start_agent: AgentFactory) -> None:
    agent = await start_agent()
    status, body = await agent.post("/gaming-mode", {"enabled": "yes"})
    assert status == 400 and body["error"]["param"] == "enabled"


async def test_load_switches_models_one_per_gpu(start_agent: AgentFactory) -> None:
    agent = await start_agent(make_config(fake_model("a"), fake_model("b")))
    status, body = await agent.post("/models/a/load")
    assert status == 200 and body["state"] == "ready"
    status, body = await agent.post("/models/b/load")
    assert status == 200 and body["state"] == "ready"
    states = {m["id"]: m["state"] for m in (await agent.get_json("/status"))["models"]}
    assert states == {"a": "stopped", "b": "ready"}
    # A request naming a's served name switches back.
    status, body = await agent.chat(model="a-served")
    assert body["choices"][0]["message"]["content"].startswith("echo[a-served]")
    states = {m["id"]: m["state"] for m in (await agent.get_json("/status"))["models"]}
    assert states == {"a": "ready", "b": "stopped"}


async def test_two_models_may_share_when_config_allows(start_agent: AgentFactory) -> None:
    config = make_config(fake_model("a"), fake_model("b"), max_loaded_models=2)
    agent = await start_agent(config)
    await agent.post("/models/a/load")
    await agent.post("/models/b/load")
    states = {m["id"]: m["state"] for m in (await agent.get_json("/status"))["models"]}
    assert states == {"a": "ready", "b": "ready"}
    status, body = await agent.post("/stop-all")
    assert status == 200
    assert {m["state"] for m in body["models"]} == {"stopped"}


async def test_several_models_choose_by_name_or_default(start_agent: AgentFactory) -> None:
    config = make_config(fake_model("a"), fake_model("b", aliases=["big"]), default_model="b")
    agent = await start_agent(config)
    _, body = await agent.chat(model="big")
    assert body["choices"][0]["message"]["content"].startswith("echo[b-served]")
    _, body = await agent.chat(model="a")
    assert body["choices"][0]["message"]["content"].startswith("echo[a-served]")
    _, body = await agent.chat(model="unknown-model")  # the default
    assert body["choices"][0]["message"]["content"].startswith("echo[b-served]")


async def test_unknown_model_ids_and_routes_are_openai_errors(start_agent: AgentFactory) -> None:
    agent = await start_agent()
    status, body = await agent.post("/models/nope/load")
    assert status == 404 and body["error"]["code"] == "model_not_found"
    status, body = await agent.post("/models/nope/unload")
    assert status == 404
    async with agent.session.get(agent.url + "/nowhere") as resp:
        assert resp.status == 404
        assert set((await resp.json())["error"]) == {"message", "type", "param", "code"}


async def test_bad_json_is_a_400(start_agent: AgentFactory) -> None:
    agent = await start_agent()
    async with agent.session.post(agent.url + "/v1/chat/completions", data=b"{nope") as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_request_error"
    status, body = await agent.post("/v1/chat/completions", {"model": 7, "messages": []})
    assert status == 400 and body["error"]["param"] == "model"


async def test_unload_and_stop_all(start_agent: AgentFactory) -> None:
    agent = await start_agent()
    await agent.post("/models/fake/load")
    status, body = await agent.post("/models/fake/unload")
    assert status == 200 and body["state"] == "stopped"
    await agent.chat()
    status, body = await agent.post("/stop-all")
    assert body["models"][0]["state"] == "stopped"


async def test_idle_model_is_stopped_by_the_scheduler(start_agent: AgentFactory) -> None:
    agent = await start_agent(idle_shutdown_minutes=0.01)  # 0.6 s
    assert (await agent.chat())[0] == 200
    process = agent.manager.processes["fake"]
    assert process.state is ModelState.READY
    await wait_until(lambda: process.state is ModelState.STOPPED, timeout=10)


async def test_busy_model_is_not_idle_stopped(start_agent: AgentFactory) -> None:
    config = make_config(fake_model("fake", "--stream-delay", "0.3"))
    agent = await start_agent(config, idle_shutdown_minutes=0.005)  # 0.3 s
    body = {"model": "fake", "stream": True,
            "messages": [{"role": "user", "content": "a b c d e f"}]}
    async with agent.session.post(agent.url + "/v1/chat/completions", json=body) as resp:
        data = await resp.read()
    assert data.rstrip().endswith(b"data: [DONE]")
    assert b'"error"' not in data


async def test_crash_mid_stream_ends_with_an_error_event(start_agent: AgentFactory) -> None:
    config = make_config(fake_model("fake", "--stream-delay", "0.3"))
    agent = await start_agent(config)
    await agent.post("/models/fake/load")
    process = agent.manager.processes["fake"]
    body = {"model": "fake", "stream": True,
            "messages": [{"role": "user", "content": "a b c d e f g h"}]}
    async with agent.session.post(agent.url + "/v1/chat/completions", json=body) as resp:
        await resp.content.readline()
        pid = process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        rest = await resp.read()
    events = [line[6:] for line in rest.decode().splitlines() if line.startswith("data: ")]
    assert "error" in json.loads(events[-1])


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE"])
async def test_force_big_header_values(start_agent: AgentFactory, value: str) -> None:
    agent = await start_agent()
    await agent.post("/gaming-mode", {"enabled": True})
    assert (await agent.chat(headers={"X-Force-Big": value}))[0] == 200
