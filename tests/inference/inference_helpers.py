"""Helpers for the inference agent tests: configs whose "vLLM" is tests/fakes/fake_vllm.py or
tests/fakes/stand_in_engine.py (slow starts, crashes, sleep mode), and `eventually` for /status.

A uniquely named module (not `conftest`) so test files can import it unambiguously."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from inference.app import MANAGER
from inference.config import HostConfig, parse_config
from inference.manager import ModelManager
from inference.oslaunch import free_port

FAKE_VLLM = Path(__file__).resolve().parents[1] / "fakes" / "fake_vllm.py"
STAND_IN = Path(__file__).resolve().parents[1] / "fakes" / "stand_in_engine.py"


def fake_command(*flags: str) -> list[str]:
    """The argv of the fake vLLM with extra `flags` (placeholders are filled by the agent)."""
    return [sys.executable, str(FAKE_VLLM), "--model", "{model}", *flags]


def fake_model(model_id: str = "fake", *flags: str, **extra: Any) -> dict[str, Any]:
    """One `[[models]]` table using the fake server."""
    return {
        "id": model_id, "model": f"org/{model_id}", "served_name": f"{model_id}-served",
        "max_model_len": 2048, "command": fake_command(*flags), **extra,
    }


def stand_in_model(model_id: str, *flags: str, **extra: Any) -> dict[str, Any]:
    """One `[[models]]` table whose engine is the stand-in (see tests/fakes/stand_in_engine.py)."""
    return {
        "id": model_id, "model": f"org/{model_id}", "served_name": f"{model_id}-served",
        "command": [sys.executable, str(STAND_IN), *flags], **extra,
    }


def make_config(*models: dict[str, Any], **host: Any) -> HostConfig:
    return parse_config({"host": host, "models": list(models) or [fake_model()]}, "test")


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `predicate` until it is true; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


async def eventually(agent: Agent, predicate: Callable[[Any], bool],
                     timeout: float = 30.0) -> Any:
    """Poll the agent's `/status` until `predicate(status)` holds; returns that status."""
    deadline = time.monotonic() + timeout
    while True:
        status = await agent.get_json("/status")
        if predicate(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"/status did not reach the condition within {timeout}s: {status}")
        await asyncio.sleep(0.05)


def model_view(status: Any, model_id: str) -> Any:
    """The `/status` entry of `model_id`."""
    return next(m for m in status["models"] if m["id"] == model_id)


class PlainServer:
    """The app behind `web.AppRunner` without handler cancellation (aiohttp's own default, unlike
    `TestServer`), on a free loopback port; the subset of `TestServer` that `Agent` uses."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.runner = web.AppRunner(app, handler_cancellation=False)
        self.port = 0

    async def start_server(self) -> None:
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def make_url(self, path: str) -> URL:
        return URL(f"http://127.0.0.1:{self.port}{path}")

    async def close(self) -> None:
        await self.runner.cleanup()


class Agent:
    """A running agent app on a free loopback port, with a client session to talk to it."""

    def __init__(self, server: TestServer | PlainServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def manager(self) -> ModelManager:
        return self.server.app[MANAGER]

    def engine_log(self, model_id: str) -> str:
        """Everything the model's engine printed so far (its log file)."""
        path = self.manager.processes[model_id].log_path
        return path.read_text() if path.exists() else ""

    async def get_json(self, path: str) -> Any:
        async with self.session.get(self.url + path) as resp:
            return await resp.json()

    async def post(self, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.session.post(self.url + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def chat(self, content: str = "hello", model: str = "auto",
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        body = {"model": model, "messages": [{"role": "user", "content": content}]}
        return await self.post("/v1/chat/completions", body, headers)


AgentFactory = Callable[..., Awaitable[Agent]]
