"""The per-model state machine against the fake vLLM: start, share, fail, crash, stop."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from inference.config import ModelProfile
from inference.errors import ModelStartFailed
from inference.process import ModelProcess, ModelState
from tests.inference.inference_helpers import fake_command, make_config, wait_until


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); look at its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _profile(*flags: str) -> ModelProfile:
    config = make_config({"id": "fake", "model": "org/fake", "served_name": "fake-served",
                          "command": fake_command(*flags)})
    return config.models[0]


MakeProcess = Callable[..., ModelProcess]


@pytest.fixture
async def make_process(tmp_path: Path) -> AsyncIterator[MakeProcess]:
    made: list[ModelProcess] = []
    async with aiohttp.ClientSession() as session:

        def make(*flags: str, start_timeout: float = 15.0, stop_grace: float = 2.0) -> ModelProcess:
            process = ModelProcess(_profile(*flags), start_timeout=start_timeout,
                                   stop_grace=stop_grace, log_dir=tmp_path / "logs",
                                   session=session)
            made.append(process)
            return process

        yield make
        for process in made:
            await process.stop()


async def test_start_reaches_ready_and_stop_returns_to_stopped(make_process: MakeProcess) -> None:
    process = make_process()
    assert process.state is ModelState.STOPPED
    url = await process.ensure_ready()
    assert process.state is ModelState.READY
    pid = process.pid
    assert pid is not None and _alive(pid)
    async with aiohttp.ClientSession() as session, session.get(url + "/v1/models") as resp:
        assert (await resp.json())["data"][0]["id"] == "fake-served"
    await process.stop()
    assert process.state is ModelState.STOPPED
    assert process.pid is None
    assert not _alive(pid)


async def test_concurrent_callers_share_one_start(make_process: MakeProcess) -> None:
    process = make_process("--startup-delay", "0.5")
    urls = await asyncio.gather(*(process.ensure_ready() for _ in range(5)))
    assert len(set(urls)) == 1
    log = process.log_path.read_text()
    assert len(re.findall(r"fake_vllm: pid \d+", log)) == 1


async def test_state_is_starting_while_waiting(make_process: MakeProcess) -> None:
    process = make_process("--startup-delay", "0.5")
    task = asyncio.create_task(process.ensure_ready())
    await wait_until(lambda: process.state is ModelState.STARTING)
    await task
    assert process.state is ModelState.READY


async def test_early_exit_fails_waiters_with_log_tail(make_process: MakeProcess) -> None:
    process = make_process("--fail-early")
    results = await asyncio.gather(*(process.ensure_ready() for _ in range(3)),
                                   return_exceptions=True)
    for result in results:
        assert isinstance(result, ModelStartFailed)
        assert "exited with code 1 before it became ready" in result.message
        assert "CUDA out of memory" in result.message
    assert process.state is ModelState.STOPPED
    assert process.exit_code == 1
    assert process.last_error and "CUDA out of memory" in process.last_error
    assert any("CUDA out of memory" in line for line in process.snapshot()["log_tail"])


async def test_never_healthy_gives_up_at_the_deadline(make_process: MakeProcess) -> None:
    process = make_process("--never-healthy", start_timeout=1.5)
    with pytest.raises(ModelStartFailed, match="did not become healthy within 1.5 seconds"):
        await process.ensure_ready()
    assert process.state is ModelState.STOPPED
    assert process.pid is None


async def test_missing_command_is_a_clear_start_failure(tmp_path: Path) -> None:
    config = make_config({"id": "x", "model": "m", "command": [str(tmp_path / "no-such-vllm")]})
    async with aiohttp.ClientSession() as session:
        process = ModelProcess(config.models[0], start_timeout=5, stop_grace=1,
                               log_dir=tmp_path, session=session)
        with pytest.raises(ModelStartFailed, match="could not be started"):
            await process.ensure_ready()
    assert process.state is ModelState.STOPPED


async def test_crash_after_ready_is_recorded(make_process: MakeProcess) -> None:
    process = make_process("--crash-after", "1")
    url = await process.ensure_ready()
    async with aiohttp.ClientSession() as session:
        body = {"model": "fake-served", "messages": [{"role": "user", "content": "x"}]}
        async with session.post(url + "/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
    await wait_until(lambda: process.state is ModelState.STOPPED)
    assert process.exit_code == 3
    assert process.last_error and "exited unexpectedly with code 3" in process.last_error
    assert "crashing on purpose" in process.last_error
    # It starts again on the next demand.
    await process.ensure_ready()
    assert process.state is ModelState.READY
    assert process.last_error is None


async def test_stop_while_starting_fails_the_waiters(make_process: MakeProcess) -> None:
    process = make_process("--startup-delay", "5")
    waiter = asyncio.create_task(process.ensure_ready())
    await wait_until(lambda: process.pid is not None)
    pid = process.pid
    assert pid is not None
    await process.stop()
    with pytest.raises(ModelStartFailed, match="stopped while it was starting"):
        await waiter
    assert process.state is ModelState.STOPPED
    assert not _alive(pid)


async def test_sigterm_ignored_leads_to_sigkill_after_grace(make_process: MakeProcess) -> None:
    process = make_process("--ignore-sigterm", stop_grace=0.5)
    await process.ensure_ready()
    pid = process.pid
    assert pid is not None
    loop = asyncio.get_running_loop()
    started = loop.time()
    await process.stop()
    assert loop.time() - started >= 0.5
    assert not _alive(pid)


async def test_stop_kills_the_whole_process_group(make_process: MakeProcess) -> None:
    process = make_process("--spawn-child")
    await process.ensure_ready()
    match = re.search(r"child pid (\d+)", process.log_path.read_text())
    assert match
    child = int(match.group(1))
    assert _alive(child)
    await process.stop()
    await wait_until(lambda: not _alive(child), timeout=5)


async def test_stop_when_stopped_is_a_no_op(make_process: MakeProcess) -> None:
    process = make_process()
    await process.stop()
    assert process.state is ModelState.STOPPED
