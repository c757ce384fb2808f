"""The processes the benchmark runs: the fake upstream, the router and LiteLLM's proxy.

Each is a subprocess bound to 127.0.0.1 on a free port, started with `start_*` and stopped with
`Proc.stop()` (SIGTERM, a grace period, then SIGKILL). Start-up waits on a health URL with a
deadline and gives up early when the process dies, showing the tail of its log.
LiteLLM lives in its own virtualenv under the cache directory (created on first use, from PyPI);
at run time it gets no network beyond the loopback upstream.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LITELLM_KEY = "sk-bench-master-key"
LITELLM_MODEL = "bench"


class StartError(RuntimeError):
    """A benchmark process did not come up."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cache_dir() -> Path:
    return Path(os.environ.get("LOCAL_AI_CACHE") or Path.home() / ".cache" / "local-ai-router")


@dataclass
class Proc:
    """One running benchmark process with its base URL and log file."""

    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def vm_hwm_kb(self) -> int | None:
        """Peak resident set size (VmHWM) of the process, in kB."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (all threads)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def _wait_ready(proc: Proc, path: str, timeout: float, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise StartError(f"{proc.name} exited with {proc.popen.returncode} during start-up:\n"
                             f"{proc.tail()}")
        try:
            request = urllib.request.Request(proc.url + path, headers=headers or {})
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    proc.stop()
    raise StartError(f"{proc.name} did not answer {path} within {timeout:g}s:\n{proc.tail()}")


def _spawn(name: str, args: list[str], env: dict[str, str], workdir: Path, url: str) -> Proc:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=workdir)
    return Proc(name, popen, url, log)


def start_upstream(workdir: Path, chunks: int = 16, interval_ms: float = 2.0) -> Proc:
    port = free_port()
    proc = _spawn("upstream", [sys.executable, "-m", "bench.upstream", "--port", str(port),
                               "--chunks", str(chunks), "--interval-ms", str(interval_ms)],
                  {**os.environ, "PYTHONPATH": str(ROOT)}, workdir, f"http://127.0.0.1:{port}")
    _wait_ready(proc, "/health", 30)
    return proc


def router_command() -> list[str]:
    exe = Path(sys.executable).parent / "local-ai-router"
    return [str(exe), "serve"]


def start_router(workdir: Path, upstream_url: str, name: str = "router",
                 event_loop: str = "auto") -> Proc:
    port = free_port()
    db = workdir / f"{name}.db"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MATTERMOST_", "ROUTER_", "GAMING_", "OPENCODE_"))}
    env.update(LOCAL_3070_URL=upstream_url, DATABASE_URL=f"sqlite:///{db}", ROUTER_PORT=str(port),
               ROUTER_HOST="127.0.0.1", LOG_LEVEL="WARNING", HEALTH_CHECK_INTERVAL="30",
               EVENT_LOOP=event_loop,
               PYTHONPATH=str(ROOT))
    proc = _spawn(name, router_command(), env, workdir, f"http://127.0.0.1:{port}")
    proc.extra["db"] = str(db)
    _wait_ready(proc, "/health", 60)
    # Ready means the first health check found the upstream, so "small" routes to it.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with urllib.request.urlopen(proc.url + "/status", timeout=2) as response:
            if b'"healthy":true' in response.read().replace(b" ", b""):
                return proc
        time.sleep(0.1)
    proc.stop()
    raise StartError(f"router never saw the upstream as healthy:\n{proc.tail()}")


def litellm_venv() -> Path:
    return cache_dir() / "litellm-venv"


def ensure_litellm(echo: bool = True) -> Path:
    """The `litellm` executable, installing `litellm[proxy]` into its own venv when missing."""
    venv = litellm_venv()
    exe = venv / "bin" / "litellm"
    if exe.exists():
        return exe
    if echo:
        print(f"bench: installing litellm[proxy] into {venv} (one time)", file=sys.stderr, flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    if not exe.exists():
        raise StartError(f"installing litellm[proxy] did not produce {exe}")
    return exe


def start_litellm(workdir: Path, upstream_url: str) -> Proc:
    exe = ensure_litellm()
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {LITELLM_MODEL}\n"
        "    litellm_params:\n"
        "      model: openai/bench-model\n"
        f"      api_base: {upstream_url}/v1\n"
        "      api_key: sk-upstream-unused\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH")}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False",
               NO_PROXY="*", HOME=str(workdir))
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(key, None)
    proc = _spawn("litellm", [str(exe), "--config", str(config), "--host", "127.0.0.1",
                              "--port", str(port), "--num_workers", "1"],
                  env, workdir, f"http://127.0.0.1:{port}")
    _wait_ready(proc, "/health/liveliness", 120)
    return proc


def make_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="local-ai-router-bench-"))
