"""A real `local-ai-inference serve` whose model is the stand-in engine (slow start, crash)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.e2e.agent_process import stop_process, wait_http
from tests.helpers import free_port

STAND_IN = Path(__file__).resolve().parents[1] / "fakes" / "stand_in_engine.py"
AgentFactory = Callable[..., Awaitable[str]]
LOGS: dict[str, Path] = {}  # agent URL -> its log file (the stand-in engine logs what reaches it)


@pytest.fixture
async def start_agent(tmp_path: Path) -> AsyncIterator[AgentFactory]:
    """`await start_agent(*engine_flags, start_timeout=600)` -> the agent's base URL."""
    procs: list[subprocess.Popen[bytes]] = []

    async def start(*flags: str, start_timeout: float = 600, keepalive: float = 1) -> str:
        port, engine_port = free_port(), free_port()
        root = tmp_path / f"agent-{port}"
        root.mkdir()
        argv = ", ".join(f'"{a}"' for a in (sys.executable, str(STAND_IN), *flags))
        (root / "agent.toml").write_text(f"""
[host]
default_model = "cold"

[[models]]
id = "cold"
model = "org/cold"
served_name = "cold"
port = {engine_port}
max_model_len = 4096
command = [{argv}]
""")
        env = {**os.environ, "INFERENCE_CONFIG": str(root / "agent.toml"),
               "INFERENCE_PORT": str(port), "INFERENCE_HOST": "127.0.0.1",
               "INFERENCE_STATE_DIR": str(root / "state"), "START_TIMEOUT": str(start_timeout),
               "STREAM_KEEPALIVE": str(keepalive)}
        log = (root / "agent.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "inference.cli", "serve"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        LOGS[url] = root / "agent.log"
        await asyncio.to_thread(wait_http, url + "/health", 60, proc)
        return url

    yield start
    for proc in procs:
        await asyncio.to_thread(stop_process, proc, 20)
