"""The `local-ai-inference` command: check, profiles, bad settings, and no orphans on exit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from inference.cli import main
from tests.conftest import free_port as _free_port
from tests.inference.inference_helpers import fake_command, stand_in_model

AGENT = Path(sys.executable).parent / "local-ai-inference"


def test_profiles_lists_the_bundled_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    assert {"rtx3070-8gb", "rtx3090-24gb"} <= set(capsys.readouterr().out.split())


def test_check_passes_and_warns(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", "rtx3070-8gb"]) == 0
    assert "every profile fits" in capsys.readouterr().out
    assert main(["check", "--config", "rtx3090-24gb", "--gpu-memory-gb", "8"]) == 1
    assert "WARNING: Model 'qwen2.5-14b'" in capsys.readouterr().out


def test_bad_settings_exit_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INFERENCE_PORT", "not-a-port")
    assert main(["serve"]) == 2
    assert "INFERENCE_PORT" in capsys.readouterr().err


def test_bad_config_exits_2(monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("INFERENCE_CONFIG", "no-such-profile")
    assert main(["serve"]) == 2
    assert "INFERENCE_CONFIG 'no-such-profile'" in capsys.readouterr().err




def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


@pytest.mark.parametrize("agent_signal", [signal.SIGTERM, signal.SIGKILL])
def test_no_orphans_after_the_agent_exits(tmp_path: Path, agent_signal: signal.Signals) -> None:
    command = ", ".join(f'"{part}"' for part in fake_command("--spawn-child"))
    config = tmp_path / "models.toml"
    config.write_text(f'[[models]]\nid = "fake"\nmodel = "org/fake"\ncommand = [{command}]\n')
    port = _free_port()
    env = {**os.environ, "INFERENCE_CONFIG": str(config), "INFERENCE_PORT": str(port),
           "INFERENCE_STATE_DIR": str(tmp_path / "state"), "STOP_GRACE": "2"}
    agent = subprocess.Popen([str(AGENT), "serve"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(url + "/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(up, 20)
        reply = httpx.post(url + "/models/fake/load", timeout=30)
        assert reply.status_code == 200, reply.text
        server_pid = reply.json()["pid"]
        log = (tmp_path / "state" / "logs" / "fake.log").read_text()
        match = re.search(r"child pid (\d+)", log)
        assert match
        child_pid = int(match.group(1))
        assert _alive(server_pid) and _alive(child_pid)
        agent.send_signal(agent_signal)
        agent.wait(timeout=20)
        # SIGTERM: the agent stops the group. SIGKILL: PR_SET_PDEATHSIG kills the server, and
        # the next agent's start reaps what the server left behind.
        _wait(lambda: not _alive(server_pid), 10)
        if agent_signal is signal.SIGKILL:
            assert _alive(child_pid)
            agent = subprocess.Popen([str(AGENT), "serve"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait(up, 20)
        _wait(lambda: not _alive(child_pid), 10)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        if "child_pid" in locals() and _alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)


def test_served_agent_drops_a_request_whose_client_left_during_the_start(tmp_path: Path) -> None:
    """The real `serve` command (handler cancellation on): a client that gives up while the
    model starts stops counting at once, and its request never reaches the engine."""
    command = ", ".join(f'"{part}"' for part in stand_in_model("m", "--startup-delay", "5")
                        ["command"])
    config = tmp_path / "models.toml"
    config.write_text(f'[[models]]\nid = "m"\nmodel = "org/m"\ncommand = [{command}]\n')
    port = _free_port()
    env = {**os.environ, "INFERENCE_CONFIG": str(config), "INFERENCE_PORT": str(port),
           "INFERENCE_STATE_DIR": str(tmp_path / "state"), "STOP_GRACE": "2",
           "STREAM_KEEPALIVE": "0.5"}
    agent = subprocess.Popen([str(AGENT), "serve"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def status() -> Any:
        return httpx.get(url + "/status", timeout=2).json()

    def up() -> bool:
        try:
            return httpx.get(url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait(up, 20)
        body = {"model": "m", "messages": [{"role": "user", "content": "abandoned"}]}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/chat/completions", json=body, timeout=1.0)
        _wait(lambda: status()["active_requests"] == 0, 2)
        assert status()["models"][0]["state"] == "starting"
        with httpx.stream("POST", url + "/v1/chat/completions", timeout=4.0,  # between bytes
                          json={**body, "stream": True,
                                "messages": [{"role": "user", "content": "kept"}]}) as resp:
            assert resp.headers["X-Model-State"] == "starting"
            lines = [line for line in resp.iter_lines() if line]
        assert lines[0].startswith(": model m starting (")
        assert lines[-1] == "data: [DONE]"
        log = (tmp_path / "state" / "logs" / "m.log").read_text()
        assert "received /v1/chat/completions kept" in log and "abandoned" not in log
    finally:
        agent.terminate()
        agent.wait(timeout=20)
