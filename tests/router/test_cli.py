"""`local-ai-router serve` as a real process, and the operator CLI against it."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import openai

from tests.helpers import eventually, free_port

BIN = Path(sys.executable).parent / "local-ai-router"


async def _wait_healthy(url: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """Poll the router's liveness endpoint (a separate process has no event to wait on)."""
    async def healthy() -> bool:
        assert proc.poll() is None, "router exited early"
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(url + "/health")).status_code == 200
        except httpx.HTTPError:
            return False
    await eventually(healthy, timeout=timeout, interval=0.1)


async def _refusing(url: str) -> bool:
    """True once the router no longer accepts connections (its shutdown has begun)."""
    try:
        async with httpx.AsyncClient() as client:
            await client.get(url + "/health")
    except httpx.ConnectError:
        return True
    return False


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=env, timeout=60,
                          check=False)


async def test_serve_cli_and_graceful_sigterm(tmp_path: Path, upstreams):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/cli.db", "ROUTER_PORT": str(port),
           "LOCAL_3070_URL": upstreams["3070"].url, "GAMING_PC_URL": upstreams["3090"].url,
           "ROUTER_ADMIN_TOKEN": "tok", "ROUTER_URL": f"http://127.0.0.1:{port}", "COLUMNS": "200"}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([str(BIN), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        await _wait_healthy(f"http://127.0.0.1:{port}", proc)
        async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x") as client:
            await asyncio.gather(*(client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(20)))
        status = await asyncio.to_thread(cli, env, "status")
        assert status.returncode == 0, status.stderr
        assert "Gaming mode: OFF" in status.stdout and "qwen2.5-7b-instruct-awq" in status.stdout
        route = await asyncio.to_thread(cli, env, "route", "hello there", "--force-big")
        assert "force_big" in route.stdout and "3090" in route.stdout
        gaming = await asyncio.to_thread(cli, env, "gaming", "on")
        assert gaming.returncode == 0 and "Gaming mode: ON" in gaming.stdout
        assert upstreams["3090"].gaming_posts == [True]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    rows = sqlite3.connect(tmp_path / "cli.db").execute("select count(*) from decisions").fetchone()[0]
    assert rows == 20
    decisions = await asyncio.to_thread(cli, env, "decisions", "--last", "5")
    assert decisions.returncode == 0 and "small_request" in decisions.stdout
    assert "Last 5 routing decisions" in decisions.stdout


async def test_second_sigterm_during_shutdown_keeps_shutting_down_and_exits_0(tmp_path: Path,
                                                                             upstreams):
    held = upstreams["3070"]
    held.mode = "hold"  # a request stays in flight until the test releases it
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/sig.db", "ROUTER_PORT": str(port),
           "LOCAL_3070_URL": held.url, "SHUTDOWN_GRACE": "60", "LOG_LEVEL": "INFO"}
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(BIN), "serve"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, text=True)
    try:
        await _wait_healthy(url, proc)
        async with httpx.AsyncClient(timeout=60) as client:
            in_flight = asyncio.ensure_future(client.post(url + "/v1/chat/completions", json={
                "model": "auto", "messages": [{"role": "user", "content": "hold on"}]}))
            await eventually(lambda: held.requests, what="the request reached the upstream")
            proc.send_signal(signal.SIGTERM)
            await eventually(lambda: _refusing(url), timeout=30, what="shutdown began")
            proc.send_signal(signal.SIGTERM)
            await eventually(lambda: proc.poll() is not None
                             or "SIGTERM received again" in log_path.read_text(),
                             timeout=30, what="the second SIGTERM was handled")
            assert proc.poll() is None, f"exited {proc.returncode} on the second SIGTERM"
            held.release.set()
            response = await in_flight
        assert response.status_code == 200  # the request in flight finished
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_config_fails_at_start_naming_the_variable(tmp_path: Path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "SMALL_TOKEN_THRESHOLD": "many"}
    result = cli(env, "serve")
    assert result.returncode == 2
    assert "SMALL_TOKEN_THRESHOLD" in result.stdout


def test_db_upgrade_command(tmp_path: Path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/db/up.db"}
    result = cli(env, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    tables = {r[0] for r in sqlite3.connect(tmp_path / "db/up.db").execute(
        "select name from sqlite_master where type='table'")}
    assert "decisions" in tables


def test_cli_reports_unreachable_router(tmp_path: Path):
    env = {**os.environ, "ROUTER_URL": f"http://127.0.0.1:{free_port()}"}
    result = cli(env, "status")
    assert result.returncode == 1 and "cannot reach the router" in result.stdout
