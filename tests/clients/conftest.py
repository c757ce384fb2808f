"""Fixtures for the client tier: the pinned, cached real agents (installed on first use)."""

from __future__ import annotations

import time

import pytest

from tests.clients.clients_env import Clients, ensure_clients


@pytest.fixture(scope="session")
def clients() -> Clients:
    started = time.monotonic()
    found = ensure_clients()
    print(f"\n[clients] agents ready in {time.monotonic() - started:.0f}s")
    return found
