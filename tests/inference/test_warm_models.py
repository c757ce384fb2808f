"""Keep-warm models, idle sleep and wake, engines without sleep mode, and `safe_to_game`.

Through the real agent with tests/fakes/stand_in_engine.py as the engine; state changes are
watched in `/status` with `eventually`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from inference.gaming import GamingModeStore
from inference.gpu import GpuReader
from inference.manager import ModelManager
from inference.settings import Settings
from tests.inference.inference_helpers import (
    AgentFactory,
    eventually,
    fake_model,
    make_config,
    model_view,
    stand_in_model,
    wait_until,
)

IDLE_MINUTES = 0.005  # 0.3 s


def _state(model_id: str, state: str) -> Callable[[Any], bool]:
    return lambda status: model_view(status, model_id)["state"] == state


def _starts(log: str) -> list[str]:
    """The `sleep flag ...` value of every launch of the stand-in, in order."""
    return re.findall(r"stand_in: pid \d+ loading for \S+, sleep flag (\w+)", log)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


async def test_status_fields_of_a_stopped_model(start_agent: AgentFactory) -> None:
    config = make_config(stand_in_model("m", idle_action="sleep", keep_warm=False))
    agent = await start_agent(config, start_timeout=42.0, stream_keepalive=0.5)
    status = await agent.get_json("/status")
    assert status["safe_to_game"] is None  # no NVML here
    assert status["stream_keepalive_seconds"] == 0.5
    view = model_view(status, "m")
    assert view["state"] == "stopped"
    assert view["started_at"] is None and view["starting_seconds"] is None
    assert view["start_timeout"] == 42.0
    assert view["last_start_seconds"] is None
    assert view["keep_warm"] is False
    assert view["idle_action"] == "sleep" and view["idle_action_effective"] == "sleep"
    assert view["sleep_note"] is None and view["log_tail"] == []


async def test_keep_warm_starts_with_the_agent_and_after_gaming(start_agent: AgentFactory) -> None:
    config = make_config(stand_in_model("warm", keep_warm=True), stand_in_model("cold"),
                         max_loaded_models=2)
    agent = await start_agent(config, idle_shutdown_minutes=IDLE_MINUTES)
    status = await eventually(agent, _state("warm", "ready"))
    assert model_view(status, "cold")["state"] == "stopped"  # only keep-warm models start
    # The cold model is idle-stopped after use; the keep-warm one, idle just as long, is not.
    assert (await agent.chat(model="cold"))[0] == 200
    await eventually(agent, _state("cold", "ready"))
    status = await eventually(agent, _state("cold", "stopped"))
    warm = model_view(status, "warm")
    assert warm["state"] == "ready" and warm["idle_seconds"] >= IDLE_MINUTES * 60
    # Gaming mode stops it; gaming mode off starts it again (and only it).
    code, body = await agent.post("/gaming-mode", {"enabled": True})
    assert code == 200 and {m["state"] for m in body["models"]} == {"stopped"}
    code, body = await agent.post("/gaming-mode", {"enabled": False})
    assert code == 200
    status = await eventually(agent, _state("warm", "ready"))
    assert model_view(status, "cold")["state"] == "stopped"
    assert len(_starts(agent.engine_log("warm"))) == 2


async def test_switched_out_keep_warm_model_returns_when_the_gpu_is_free(
        start_agent: AgentFactory) -> None:
    config = make_config(stand_in_model("warm", keep_warm=True), stand_in_model("other"))
    agent = await start_agent(config, idle_shutdown_minutes=IDLE_MINUTES)
    await eventually(agent, _state("warm", "ready"))
    assert (await agent.chat(model="other"))[0] == 200  # one model per GPU: warm is evicted
    await eventually(agent, lambda s: model_view(s, "other")["state"] == "stopped"
                     and model_view(s, "warm")["state"] == "ready")
    assert len(_starts(agent.engine_log("warm"))) == 2


async def test_keep_warm_is_not_started_in_gaming_mode(start_agent: AgentFactory) -> None:
    config = make_config(stand_in_model("warm", keep_warm=True))
    first = await start_agent(config)
    await eventually(first, _state("warm", "ready"))
    await first.post("/gaming-mode", {"enabled": True})
    await first.server.close()
    second = await start_agent(config)
    assert await second.manager.warm_up() == []
    assert model_view(await second.get_json("/status"), "warm")["state"] == "stopped"


async def test_idle_model_sleeps_and_wakes_on_the_next_request(start_agent: AgentFactory) -> None:
    config = make_config(stand_in_model("nap", "--wake-delay", "1", idle_action="sleep"))
    agent = await start_agent(config, idle_shutdown_minutes=IDLE_MINUTES, stream_keepalive=0.2)
    assert (await agent.chat("one", model="nap"))[0] == 200
    status = await eventually(agent, _state("nap", "sleeping"))
    view = model_view(status, "nap")
    pid = view["pid"]
    assert pid is not None and view["idle_action_effective"] == "sleep"
    # The state says sleeping from the moment the agent asks; the engine logs the call.
    await wait_until(lambda: "stand_in: sleep level=1" in agent.engine_log("nap"))
    # A stream for the sleeping model says it is waking, then answers from the same process
    # (the stand-in refuses chats while asleep, as vLLM does).
    body = {"model": "nap", "stream": True, "messages": [{"role": "user", "content": "two"}]}
    async with agent.session.post(agent.url + "/v1/chat/completions", json=body) as resp:
        assert resp.headers["X-Model-State"] == "starting"
        lines = [raw.decode().rstrip("\n") async for raw in resp.content]
    assert lines[0].startswith(": model nap waking (")
    events = [line[6:] for line in lines if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and "error" not in events[0]
    view = model_view(await agent.get_json("/status"), "nap")
    assert view["last_start_kind"] == "wake" and view["last_start_seconds"] >= 1.0
    assert view["pid"] == pid
    log = agent.engine_log("nap")
    assert "stand_in: wake_up" in log and "stand_in: received /v1/chat/completions two" in log
    assert _starts(log) == ["True"]  # one launch, with --enable-sleep-mode
    # Asleep again, then a plain request wakes it too.
    await eventually(agent, _state("nap", "sleeping"))
    code, answer = await agent.chat("three", model="nap")
    assert code == 200 and answer["choices"][0]["message"]["content"].endswith("three")
    # Gaming mode stops a sleeping process: it still holds a CUDA context.
    await eventually(agent, _state("nap", "sleeping"))
    code, body = await agent.post("/gaming-mode", {"enabled": True})
    assert model_view(body, "nap")["state"] == "stopped"
    assert not _alive(pid)


async def test_a_failed_wake_cold_starts_the_model(start_agent: AgentFactory) -> None:
    config = make_config(stand_in_model("frail", "--crash-on-wake", idle_action="sleep"))
    agent = await start_agent(config, idle_shutdown_minutes=IDLE_MINUTES)
    assert (await agent.chat("one", model="frail"))[0] == 200
    first = model_view(await eventually(agent, _state("frail", "sleeping")), "frail")["pid"]
    code, body = await agent.chat("two", model="frail")
    assert code == 200 and body["choices"][0]["message"]["content"].endswith("two")
    view = model_view(await agent.get_json("/status"), "frail")
    assert view["pid"] != first and view["last_start_kind"] == "cold"
    log = agent.engine_log("frail")
    assert "crashing while waking up" in log and _starts(log) == ["True", "True"]
    assert not _alive(first)


async def test_keep_warm_with_sleep_sleeps_but_is_never_stopped(start_agent: AgentFactory) -> None:
    config = make_config(stand_in_model("both", keep_warm=True, idle_action="sleep"))
    agent = await start_agent(config, idle_shutdown_minutes=IDLE_MINUTES)
    await eventually(agent, _state("both", "sleeping"))
    assert (await agent.chat("hi", model="both"))[0] == 200
    await eventually(agent, _state("both", "sleeping"))
    assert _starts(agent.engine_log("both")) == ["True"]


@pytest.mark.parametrize(("flag", "answer"), [("--no-sleep-support", "404"),
                                              ("--broken-sleep", "500")])
async def test_engine_without_sleep_is_stopped_with_a_note(start_agent: AgentFactory, flag: str,
                                                           answer: str) -> None:
    config = make_config(stand_in_model("cpu", flag, idle_action="sleep"))
    agent = await start_agent(config, idle_shutdown_minutes=IDLE_MINUTES)
    assert (await agent.chat("hi", model="cpu"))[0] == 200
    await eventually(agent, _state("cpu", "ready"))
    status = await eventually(agent, _state("cpu", "stopped"))
    view = model_view(status, "cpu")
    assert view["idle_action"] == "sleep" and view["idle_action_effective"] == "stop"
    assert "no sleep mode" in view["sleep_note"] and answer in view["sleep_note"]
    # The next start leaves the flag off.
    assert (await agent.chat("again", model="cpu"))[0] == 200
    assert _starts(agent.engine_log("cpu")) == ["True", "False"]


async def test_engine_refusing_the_sleep_flag_starts_without_it(start_agent: AgentFactory) -> None:
    config = make_config(stand_in_model("cpu", "--refuse-sleep-mode", idle_action="sleep"))
    agent = await start_agent(config)
    code, body = await agent.chat("hi", model="cpu")
    assert code == 200, body
    view = model_view(await agent.get_json("/status"), "cpu")
    assert view["state"] == "ready" and view["idle_action_effective"] == "stop"
    assert "refused --enable-sleep-mode" in view["sleep_note"]
    assert _starts(agent.engine_log("cpu")) == ["True", "False"]


async def test_a_crash_with_the_sleep_flag_is_not_taken_for_a_refusal(
        start_agent: AgentFactory) -> None:
    config = make_config(stand_in_model("oom", "--crash-during-start", idle_action="sleep"))
    agent = await start_agent(config)
    code, body = await agent.chat("hi", model="oom")
    assert code == 503 and body["error"]["code"] == "model_start_failed"
    view = model_view(await agent.get_json("/status"), "oom")
    assert view["idle_action_effective"] == "sleep" and view["sleep_note"] is None
    assert _starts(agent.engine_log("oom")) == ["True"]


class FakeGpu(GpuReader):
    """NVML's per-process answer, set by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.usage: dict[int, int] | None = None

    def read(self) -> None:
        return None

    def process_memory(self) -> dict[int, int] | None:
        return self.usage


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def test_safe_to_game_follows_nvml_per_process_memory(
        session: aiohttp.ClientSession, tmp_path: Path) -> None:
    gpu = FakeGpu()
    settings = Settings(state_dir=tmp_path, start_timeout=15, stop_grace=2)
    manager = ModelManager(make_config(fake_model("fake", "--spawn-child")), settings, session,
                           GamingModeStore(tmp_path), gpu)
    try:
        status = manager.status()
        assert status["safe_to_game"] is None and status["gpu_processes"] is None  # no NVML
        gpu.usage = {}
        assert manager.status()["safe_to_game"] is True
        await manager.load("fake", force_big=False)
        child = int(re.findall(r"child pid (\d+)",
                               manager.processes["fake"].log_path.read_text())[0])
        # vLLM's engine child holds memory, next to somebody else's process (a game).
        gpu.usage = {child: 300, 999_999: 512}
        status = manager.status()
        assert status["safe_to_game"] is False
        assert status["gpu_processes"] == [{"pid": child, "used_mb": 300, "model": "fake"},
                                           {"pid": 999_999, "used_mb": 512, "model": None}]
        gpu.usage = {999_999: 512}  # alive but not on the GPU (yet): still not safe
        assert manager.status()["safe_to_game"] is False
        await manager.set_gaming(True)
        assert manager.status()["safe_to_game"] is True
    finally:
        await manager.close()
        await manager.stop_all()
    assert json.dumps(manager.status())  # JSON-ready
