"""Fixtures for the e2e tier: a real CPU vLLM (its own cached venv) on a tiny local Llama.

Nothing here skips: a missing venv is built (minutes), the model is built locally (seconds).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.agent_process import BIN, RunningAgent, stop_process, wait_http
from tests.e2e.vllm_env import build_tiny_llama, ensure_vllm_venv


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    started = time.monotonic()
    python = ensure_vllm_venv()
    print(f"\n[e2e] vLLM venv ready in {time.monotonic() - started:.0f}s: {python}")
    return python


@pytest.fixture(scope="session")
def tiny_llama(vllm_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), vllm_python)


def e2e_config(vllm_python: Path, model: Path) -> str:
    command = [str(vllm_python), "-m", "vllm.entrypoints.openai.api_server", "--model", "{model}"]
    quoted = ", ".join(f'"{part}"' for part in command)
    return f"""
[host]
max_loaded_models = 1

[[models]]
id = "tiny-llama"
model = "{model}"
served_name = "tiny-llama"
max_model_len = 512
dtype = "float32"
command = [{quoted}]
# Eager mode skips torch.compile: a much faster start on CPU.
extra_args = ["--enforce-eager", "--max-num-seqs", "4"]
env = {{ HF_HUB_OFFLINE = "1", TRANSFORMERS_OFFLINE = "1", VLLM_CPU_KVCACHE_SPACE = "1" }}
"""


@pytest.fixture(scope="module")
def agent(vllm_python: Path, tiny_llama: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAgent]:
    """`local-ai-inference serve` as a real process, serving the tiny Llama through vLLM."""
    root = tmp_path_factory.mktemp("agent")
    config = root / "models.toml"
    config.write_text(e2e_config(vllm_python, tiny_llama))
    port = free_port()
    env = {
        **os.environ, "INFERENCE_CONFIG": str(config), "INFERENCE_PORT": str(port),
        "INFERENCE_STATE_DIR": str(root / "state"), "IDLE_SHUTDOWN_MINUTES": "0.25",
        "START_TIMEOUT": "600", "STOP_GRACE": "20", "HF_HUB_OFFLINE": "1",
    }
    log = root / "agent.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([str(BIN / "local-ai-inference"), "serve"], env=env,
                                stdout=sink, stderr=subprocess.STDOUT)
    running = RunningAgent(f"http://127.0.0.1:{port}", proc, log, root / "state")
    try:
        wait_http(running.url + "/health", 30, proc)
        yield running
    finally:
        stop_process(proc)
        print(f"\n[e2e] agent log tail:\n{log.read_text()[-3000:]}")
