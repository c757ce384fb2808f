"""A real inference agent process (fake vLLM as its engine) for the `agent` kind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.agent_process import stop_process, wait_http
from tests.helpers import free_port

FAKE_VLLM = Path(__file__).resolve().parents[1] / "fakes" / "fake_vllm.py"


@pytest.fixture
def agent_url(tmp_path: Path) -> Iterator[str]:
    """`local-ai-inference serve` on loopback, serving one model `pc-model` (started on demand)."""
    port, engine_port = free_port(), free_port()
    config = tmp_path / "agent.toml"
    config.write_text(f"""
[host]
default_model = "pc-model"

[[models]]
id = "pc-model"
model = "org/pc-model"
served_name = "pc-model"
port = {engine_port}
max_model_len = 4096
command = ["{sys.executable}", "{FAKE_VLLM}", "--model", "{{model}}"]
""")
    env = {**os.environ, "INFERENCE_CONFIG": str(config), "INFERENCE_PORT": str(port),
           "INFERENCE_HOST": "127.0.0.1", "INFERENCE_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen([sys.executable, "-m", "inference.cli", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 60, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc, grace=20)
