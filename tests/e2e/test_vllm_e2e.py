"""E2E tier: the agent in front of a real CPU vLLM serving a tiny random Llama.

The tests run in file order against one agent process (module fixture) to pay for as few vLLM
starts as possible (each takes about a minute on two cores): on-demand start, chat, streaming,
the router in front, stop-all, gaming mode refusal and force-big pass-through, idle stop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import free_port
from tests.e2e.agent_process import BIN, RunningAgent, stop_process, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

MODEL = "tiny-llama"
MESSAGES = [{"role": "user", "content": "hello world"}]


def status(agent: RunningAgent) -> dict[str, Any]:
    return httpx.get(agent.url + "/status", timeout=10).json()


def model_state(agent: RunningAgent) -> str:
    return str(status(agent)["models"][0]["state"])


def wait_state(agent: RunningAgent, state: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while model_state(agent) != state:
        if time.monotonic() > deadline:
            raise AssertionError(f"model not {state} within {timeout}s: {status(agent)}")
        time.sleep(0.5)


def vllm_pids(agent: RunningAgent) -> list[int]:
    """Processes in the agent's children's process groups (vLLM and its engine core)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,pgid="], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    rows = [tuple(int(x) for x in line.split()) for line in out if line.strip()]
    groups = {pid for pid, ppid, _ in rows if ppid == agent.proc.pid}
    return [pid for pid, _, pgid in rows if pgid in groups]


def client(agent: RunningAgent) -> openai.OpenAI:
    return openai.OpenAI(base_url=agent.url + "/v1", api_key="unused", timeout=900,
                         max_retries=0)


def test_on_demand_start_and_chat(agent: RunningAgent) -> None:
    assert model_state(agent) == "stopped"
    started = time.monotonic()
    with client(agent) as sdk:
        reply = sdk.chat.completions.create(model="3070", messages=MESSAGES, max_tokens=8)
    print(f"\n[e2e] first chat (vLLM cold start) took {time.monotonic() - started:.1f}s")
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    state = status(agent)["models"][0]
    assert state["state"] == "ready" and state["pid"]
    assert state["max_model_len"] == 512


def test_streaming_through_the_agent(agent: RunningAgent) -> None:
    with client(agent) as sdk:
        stream = sdk.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=8, stream=True,
            stream_options={"include_usage": True})
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None
    with client(agent) as sdk:
        completion = sdk.completions.create(model=MODEL, prompt="hello", max_tokens=4)
    assert completion.choices[0].text


def test_v1_models_reports_vllm_context(agent: RunningAgent) -> None:
    listing = httpx.get(agent.url + "/v1/models", timeout=10).json()
    [entry] = listing["data"]
    assert entry["id"] == MODEL and entry["max_model_len"] == 512


def test_stop_all_stops_vllm_and_its_children(agent: RunningAgent) -> None:
    assert model_state(agent) == "ready"
    assert vllm_pids(agent)
    body = httpx.post(agent.url + "/stop-all", timeout=120).json()
    assert body["models"][0]["state"] == "stopped"
    assert vllm_pids(agent) == []


def test_gaming_mode_refuses_then_force_big_passes(agent: RunningAgent) -> None:
    body = httpx.post(agent.url + "/gaming-mode", json={"enabled": True}, timeout=120).json()
    assert body["gaming_mode"] is True
    refused = httpx.post(agent.url + "/v1/chat/completions", timeout=30,
                         json={"model": MODEL, "messages": MESSAGES, "max_tokens": 4})
    assert refused.status_code == 503
    assert "X-Force-Big: true" in refused.json()["error"]["message"]
    assert model_state(agent) == "stopped"
    started = time.monotonic()
    forced = httpx.post(agent.url + "/v1/chat/completions", timeout=900,
                        headers={"X-Force-Big": "true"},
                        json={"model": MODEL, "messages": MESSAGES, "max_tokens": 4})
    print(f"\n[e2e] force-big chat (second cold start) took {time.monotonic() - started:.1f}s")
    assert forced.status_code == 200, forced.text
    assert forced.json()["choices"][0]["message"]["content"]


def test_idle_model_stops_by_itself(agent: RunningAgent) -> None:
    # IDLE_SHUTDOWN_MINUTES=0.25 for this agent: 15 s idle, checked every ~4 s.
    assert model_state(agent) == "ready"
    wait_state(agent, "stopped", timeout=90)
    assert vllm_pids(agent) == []
    body = httpx.post(agent.url + "/gaming-mode", json={"enabled": False}, timeout=30).json()
    assert body["gaming_mode"] is False


def test_router_routes_auto_to_the_agent_as_3070(agent: RunningAgent, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ, "LOCAL_3070_URL": agent.url, "DATABASE_URL": f"sqlite:///{tmp_path}/r.db",
        "ROUTER_ADMIN_TOKEN": "e2e-admin", "HEALTH_CHECK_INTERVAL": "2", "STREAM_KEEPALIVE": "2",
    }
    for name in ("GAMING_PC_URL", "OPENCODE_URL", "MATTERMOST_URL", "MATTERMOST_TOKEN",
                 "ROUTER_API_KEYS", "ROUTER_CONFIG"):
        env.pop(name, None)
    log = tmp_path / "router.log"
    with log.open("wb") as sink:
        router = subprocess.Popen(
            [str(BIN / "local-ai-router"), "serve", "--port", str(port)], env=env,
            stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 60, router)
        # vLLM is stopped (idle): a stream through the router waits for a real cold start and
        # is kept alive meanwhile, with the agent's state in the router's notes.
        assert model_state(agent) == "stopped"
        lines: list[str] = []
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions",
                          json={"model": "auto", "messages": MESSAGES, "max_tokens": 8,
                                "stream": True},
                          timeout=httpx.Timeout(10, read=5)) as response:  # 5 s between bytes
            assert response.status_code == 200
            lines = list(response.iter_lines())
        notes = [line for line in lines if line.startswith(": 3070: model ")]
        print(f"\n[e2e] {len(notes)} keep-alive notes during the cold start, e.g. {notes[:1]}")
        assert notes and "starting" in notes[0]
        assert any(line.startswith("data: {") and '"content"' in line for line in lines)
        assert "data: [DONE]" in lines
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused",
                           timeout=900, max_retries=0) as sdk:
            raw = sdk.chat.completions.with_raw_response.create(
                model="auto", messages=MESSAGES, max_tokens=8)
        assert raw.headers["X-Routed-Backend"] == "3070"
        assert raw.parse().choices[0].message.content
    finally:
        stop_process(router)
        sys.stdout.write(f"\n[e2e] router log tail:\n{log.read_text()[-2000:]}\n")
