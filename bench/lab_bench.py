"""Benchmark rows for the home-lab file and cold starts.

- `decide_cost()`: the pure policy on 10 rules and 6 backends, µs per call (target <= 20 µs).
- `cold_starts()`: time to the first content event through the router and a real agent
  (`local-ai-inference serve`) whose engine is the stand-in (tests/fakes/stand_in_engine.py), for
  a cold model (a START_DELAY-second load), a sleeping one (vLLM's sleep mode, WAKE_DELAY-second
  wake) and a warm one; and the time a hung backend (accepts, never answers, not even a health
  check) costs a client before the router fails over, streamed and not (target: at most
  FIRST_BYTE_TIMEOUT + 1 s).

The stand-in's delays are stated, not measured: the rows show what the router and the agent add
to them (the notes, the polling, the fail-over), which is what a real GPU's minute-long load
would not hide either.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from bench import targets
from bench.report import Row, check
from router.config import Rule, When
from router.core.policy import BackendView, Features, RuleSet, decide

STAND_IN = targets.ROOT / "tests" / "fakes" / "stand_in_engine.py"
START_DELAY = 3.0
WAKE_DELAY = 0.5
FIRST_BYTE_TIMEOUT = 2.0
HELLO = [{"role": "user", "content": "hello"}]


def decide_cost(calls: int = 20_000) -> float:
    """µs per `decide()` on a 10-rule, 6-backend lab where the 7th rule decides."""
    names = ("a", "b", "c", "d", "e", "f")
    rules = tuple(Rule(When(tokens_at_least=1000 * i, tokens_below=1000 * (i + 1),
                            gaming_mode=False), (names[i % 6], names[(i + 1) % 6]), f"rule{i}")
                  for i in range(10))
    ruleset = RuleSet(rules, names, frozenset({"b"}))
    views = {n: BackendView(n, healthy=n != "c", context_window=32768) for n in names}
    features = Features(None, 6500, max_tokens=32000, tools=True, client="alice")
    for _ in range(1000):
        decide(features, views, ruleset)
    started = time.perf_counter()
    for _ in range(calls):
        decide(features, views, ruleset)
    return (time.perf_counter() - started) / calls * 1e6


def _agent(workdir: Path) -> targets.Proc:
    port = targets.free_port()
    engines = [targets.free_port() for _ in range(3)]
    stand_in = [sys.executable, str(STAND_IN)]
    models = [("cold", [*stand_in, "--startup-delay", str(START_DELAY)], ""),
              ("sleepy", [*stand_in, "--enable-sleep-mode", "--wake-delay", str(WAKE_DELAY)],
               'idle_action = "sleep"\nkeep_warm = true\n'),
              ("warm", stand_in, "keep_warm = true\n")]
    config = "[host]\ndefault_model = \"warm\"\nmax_loaded_models = 3\n"
    for (name, argv, extra), engine in zip(models, engines):
        command = ", ".join(f'"{a}"' for a in argv)
        config += (f'\n[[models]]\nid = "{name}"\nmodel = "org/{name}"\nserved_name = "{name}"\n'
                   f"port = {engine}\nmax_model_len = 4096\ncommand = [{command}]\n{extra}")
    (workdir / "agent.toml").write_text(config)
    env = {**os.environ, "INFERENCE_CONFIG": str(workdir / "agent.toml"),
           "INFERENCE_PORT": str(port), "INFERENCE_HOST": "127.0.0.1",
           "INFERENCE_STATE_DIR": str(workdir / "agent-state"), "STREAM_KEEPALIVE": "1",
           "IDLE_SHUTDOWN_MINUTES": "0.05", "PYTHONPATH": str(targets.ROOT)}
    proc = targets._spawn("agent", [sys.executable, "-m", "inference.cli", "serve"], env, workdir,
                          f"http://127.0.0.1:{port}")
    targets._wait_ready(proc, "/health", 60)
    return proc


class HungServer:
    """An OpenAI-ish server that answers its health check until `hang` is set, then accepts
    connections and answers nothing at all (a wedged process behind a live socket)."""

    def __init__(self) -> None:
        self.hang = False
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        port = targets.free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def _any(self, request: web.Request) -> web.Response:
        if self.hang:
            await asyncio.sleep(3600)
        return web.json_response({"object": "list", "data": [{"id": "hung-model"}]})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _router(workdir: Path, agent_url: str, hung_url: str, spare_url: str) -> targets.Proc:
    port = targets.free_port()
    (workdir / "lab.toml").write_text(f"""
[backends.pc]
kind = "agent"
url = "{agent_url}"

[backends.hung]
kind = "openai"
url = "{hung_url}"

[backends.spare]
kind = "openai"
url = "{spare_url}"

[aliases]
"hung-first" = "hung"

[[rules]]
to = ["pc"]
reason = "main"
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "MATTERMOST_"))}
    env.update(ROUTER_CONFIG=str(workdir / "lab.toml"), ROUTER_PORT=str(port),
               DATABASE_URL=f"sqlite:///{workdir}/lab.db", LOG_LEVEL="WARNING",
               FIRST_BYTE_TIMEOUT=str(FIRST_BYTE_TIMEOUT), STREAM_KEEPALIVE="1",
               BACKEND_READ_TIMEOUT="600", HEALTH_CHECK_INTERVAL="3600",
               PYTHONPATH=str(targets.ROOT))
    proc = targets._spawn("lab-router", targets.router_command(), env, workdir,
                          f"http://127.0.0.1:{port}")
    targets._wait_ready(proc, "/health", 60)
    return proc


async def _first_content(session: aiohttp.ClientSession, url: str, model: str,
                         stream: bool = True) -> float:
    """Seconds until the first content (streams) or the whole answer."""
    started = time.perf_counter()
    async with session.post(url + "/v1/chat/completions", json={
            "model": model, "messages": HELLO, "stream": stream}) as response:
        assert response.status == 200, await response.text()
        if not stream:
            await response.read()
            return time.perf_counter() - started
        async for line in response.content:
            if line.startswith(b"data:") and b'"content"' in line:
                return time.perf_counter() - started
    raise AssertionError("the stream ended without content")


async def _state(session: aiohttp.ClientSession, agent: str, model: str) -> str:
    async with session.get(agent + "/status") as response:
        status = await response.json()
    return next(m["state"] for m in status["models"] if m["id"] == model)


async def _wait_state(session: aiohttp.ClientSession, agent: str, model: str, state: str,
                      timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while await _state(session, agent, model) != state:
        if time.monotonic() > deadline:
            raise AssertionError(f"{model} never became {state}")
        await asyncio.sleep(0.1)


async def _measure(workdir: Path, procs: list[targets.Proc]) -> dict[str, float]:
    hung = HungServer()
    await hung.start()
    try:
        upstream = await asyncio.to_thread(targets.start_upstream, workdir)
        procs.append(upstream)
        agent = (await asyncio.to_thread(_agent, workdir)).url
        procs.append(await asyncio.to_thread(_router, workdir, agent, hung.url, upstream.url))
        router = procs[-1].url
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await _wait_state(session, agent, "warm", "ready")
            await _wait_state(session, agent, "sleepy", "ready")
            out = {"warm": await _first_content(session, router, "pc:warm")}
            await _wait_state(session, agent, "sleepy", "sleeping")  # idle for 3 s
            out["sleeping"] = await _first_content(session, router, "pc:sleepy")
            out["cold"] = await _first_content(session, router, "pc:cold")
            hung.hang = True
            out["hung_stream"] = await _first_content(session, router, "hung-first")
            out["hung_whole"] = await _first_content(session, router, "hung-first", stream=False)
        return out
    finally:
        await hung.stop()


def cold_starts() -> dict[str, float]:
    """Seconds to first content for a cold, a sleeping and a warm model, and fail-over times."""
    workdir = targets.make_workdir()
    procs: list[targets.Proc] = []
    try:
        return asyncio.run(_measure(workdir, procs))
    finally:
        for proc in reversed(procs):
            proc.stop()


def rows(decide_us: float, starts: dict[str, float] | None) -> list[Row]:
    out = [Row("`decide()`, 10 rules and 6 backends, µs per call", f"{decide_us:.1f} µs",
               "≤ 20 µs", check(decide_us, decide_us <= 20))]
    if starts is None:
        return out
    limit = FIRST_BYTE_TIMEOUT + 1
    out += [
        Row("Time to first token through router and agent: warm model", f"{starts['warm'] * 1000:.0f} ms",
            "—", None),
        Row(f"… sleeping model (stand-in wakes in {WAKE_DELAY:g} s)",
            f"{starts['sleeping']:.2f} s", "—", None),
        Row(f"… cold model (stand-in loads in {START_DELAY:g} s)", f"{starts['cold']:.2f} s",
            "—", None),
        Row(f"Fail-over from a hung backend, streamed (FIRST_BYTE_TIMEOUT={FIRST_BYTE_TIMEOUT:g} s)",
            f"{starts['hung_stream']:.2f} s", f"≤ {limit:g} s",
            check(starts["hung_stream"], starts["hung_stream"] <= limit)),
        Row("Fail-over from a hung backend, non-streaming", f"{starts['hung_whole']:.2f} s",
            f"≤ {limit:g} s", check(starts["hung_whole"], starts["hung_whole"] <= limit)),
    ]
    return out


if __name__ == "__main__":
    from bench.report import table

    print(table(rows(decide_cost(), cold_starts())))
