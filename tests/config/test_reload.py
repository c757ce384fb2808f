"""Reloading the home-lab file: new requests use the new file, streams in flight finish on the
old one, a bad file changes nothing, and requests racing reloads never see a mix of the two."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import decision_rows
from tests.e2e.agent_process import stop_process, wait_http
from tests.fakes.upstream import FakeUpstream
from tests.helpers import eventually, free_port

ADMIN = {"Authorization": "Bearer admin-token"}
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def fakes():
    pair = {name: await FakeUpstream(f"model-{name}", 32768).start() for name in ("a", "b")}
    yield pair
    for fake in pair.values():
        await fake.stop()


def write_lab(path: Path, fakes: dict[str, FakeUpstream], name: str) -> None:
    """A lab with the one backend `name`, chosen by a rule whose reason names the config."""
    path.write_text(f'[backends.{name}]\nkind = "openai"\nurl = "{fakes[name].url}"\n\n'
                    f'[[rules]]\nto = ["{name}"]\nreason = "config_{name}"\n')


async def test_a_stream_in_flight_survives_a_reload(make_router, tmp_path, fakes):
    path = tmp_path / "lab.toml"
    write_lab(path, fakes, "a")
    router = await make_router({"ROUTER_CONFIG": str(path), "ROUTER_ADMIN_TOKEN": "admin-token"})
    fakes["a"].pause_after = 2
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        async with http.stream("POST", "/v1/chat/completions",
                               json={"messages": HELLO, "stream": True}) as stream:
            assert stream.headers["x-routed-backend"] == "a"
            lines = stream.aiter_lines()
            seen = [await anext(lines) for _ in range(4)]  # two events and their blank lines
            assert "tok1" in seen[2]
            write_lab(path, fakes, "b")
            reloaded = await http.post("/admin/reload", headers=ADMIN)
            assert reloaded.status_code == 200, reloaded.text
            assert reloaded.json()["backends"] == ["b"] and reloaded.json()["removed"] == ["a"]
            after = await http.post("/v1/chat/completions", json={"messages": HELLO})
            assert after.headers["x-routed-backend"] == "b"
            fakes["a"].resume.set()
            rest = [line async for line in lines]
    assert "data: [DONE]" in rest and "tok4" in "".join(rest)
    rows = await decision_rows(router)
    assert sorted((r.backend, r.reason, r.status_code) for r in rows) == [
        ("a", "config_a", 200), ("b", "config_b", 200)]


async def test_a_bad_file_changes_nothing_and_says_why(make_router, tmp_path, fakes):
    path = tmp_path / "lab.toml"
    write_lab(path, fakes, "a")
    router = await make_router({"ROUTER_CONFIG": str(path), "ROUTER_ADMIN_TOKEN": "admin-token"})
    path.write_text(path.read_text().replace('kind = "openai"', 'kind = "openai"\nurll = "x"'))
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
        refused = await http.post("/admin/reload", headers=ADMIN)
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "invalid_config"
        assert f"{path}: [backends.a] key 'urll'" in error["message"]
        assert (await http.post("/admin/reload")).status_code == 401  # admins only
        still = await http.post("/v1/chat/completions", json={"messages": HELLO})
        assert (still.status_code, still.headers["x-route-reason"]) == (200, "config_a")


async def test_requests_racing_reloads_use_one_config_or_the_other(make_router, tmp_path, fakes):
    path = tmp_path / "lab.toml"
    write_lab(path, fakes, "a")
    router = await make_router({"ROUTER_CONFIG": str(path), "ROUTER_ADMIN_TOKEN": "admin-token"})
    async with httpx.AsyncClient(base_url=router.url, timeout=60,
                                 limits=httpx.Limits(max_connections=20)) as http:
        async def one(index: int) -> httpx.Response:
            return await http.post("/v1/chat/completions",
                                   json={"messages": HELLO, "stream": index % 2 == 0})

        async def reloads() -> int:
            count = 0
            while not requests.done():
                write_lab(path, fakes, "b" if count % 2 == 0 else "a")
                response = await http.post("/admin/reload", headers=ADMIN)
                assert response.status_code == 200, response.text
                count += 1
                await asyncio.sleep(0)
            return count

        requests = asyncio.ensure_future(asyncio.gather(*(one(i) for i in range(200))))
        count = await reloads()
        answers = await requests
    assert count >= 2
    assert [r.text for r in answers if r.status_code != 200] == []
    routed = [(r.headers["x-routed-backend"], r.headers["x-route-reason"]) for r in answers]
    assert set(routed) <= {("a", "config_a"), ("b", "config_b")}
    rows = await decision_rows(router)
    assert len(rows) == 200
    for row in rows:  # candidates, reason and backend all from one generation
        assert row.status_code == 200 and row.candidates == row.backend
        assert row.reason == f"config_{row.backend}"


async def test_sighup_reloads_a_running_serve(tmp_path: Path, fakes) -> None:
    path = tmp_path / "lab.toml"
    write_lab(path, fakes, "a")
    port = free_port()
    env = {**os.environ, "ROUTER_CONFIG": str(path), "ROUTER_PORT": str(port),
           "DATABASE_URL": f"sqlite:///{tmp_path}/router.db", "HEALTH_CHECK_INTERVAL": "3600"}
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "local_ai_router", "serve"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(wait_http, url + "/health", 60, proc)
        async with httpx.AsyncClient(base_url=url) as http:
            async def backends() -> list[str]:
                return [b["name"] for b in (await http.get("/status")).json()["backends"]]

            assert await backends() == ["a"]
            write_lab(path, fakes, "b")
            proc.send_signal(signal.SIGHUP)
            async def swapped() -> bool:
                return await backends() == ["b"]

            await eventually(swapped, timeout=30)
            path.write_text("[backends.b]\nkind = 'nope'\n")
            proc.send_signal(signal.SIGHUP)
            await eventually(lambda: b"not reloaded" in log_path.read_bytes(), timeout=30)
            assert await backends() == ["b"] and proc.poll() is None
    finally:
        await asyncio.to_thread(stop_process, proc)
    text = log_path.read_text()
    assert "SIGHUP: configuration not reloaded, nothing changed" in text and "[backends.b]" in text
    assert proc.returncode == 0
