"""Helpers for the inference agent tests: configs whose "vLLM" is tests/fakes/fake_vllm.py.

A uniquely named module (not `conftest`) so test files can import it unambiguously."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from inference.app import MANAGER
from inference.config import HostConfig, parse_config
from inference.manager import ModelManager

FAKE_VLLM = Path(__file__).resolve().parents[1] / "fakes" / "fake_vllm.py"


def fake_command(*flags: str) -> list[str]:
    """The argv of the fake vLLM with extra `flags` (placeholders are filled by the agent)."""
    return [sys.executable, str(FAKE_VLLM), "--model", "{model}", *flags]


def fake_model(model_id: str = "fake", *flags: str, **extra: Any) -> dict[str, Any]:
    """One `[[models]]` table using the fake server."""
    return {
        "id": model_id, "model": f"org/{model_id}", "served_name": f"{model_id}-served",
        "max_model_len": 2048, "command": fake_command(*flags), **extra,
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


class Agent:
    """A running agent app on a free loopback port, with a client session to talk to it."""

    def __init__(self, server: TestServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def manager(self) -> ModelManager:
        return self.server.app[MANAGER]

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
