"""Install and run a real OpenCode server (npm `opencode-ai`) for the e2e tier, fully offline.

Contract:
- ``ensure_opencode()`` returns the path of a runnable ``opencode`` binary, installing
  ``opencode-ai@OPENCODE_VERSION`` with ``npm install --prefix`` into
  ``${LOCAL_AI_CACHE:-~/.cache/local-ai-router}/opencode`` when missing. Blocking (about 20 s on
  first use, it downloads ~180 MB); safe across processes (an flock serialises installers).
- ``relay_config(provider_url, **agents)`` is the opencode.json the tests use: two providers
  pointing at the fake LLM (OpenAI-compatible and Anthropic) and everything that would reach the
  network turned off. Nothing in it is for the router (no relay agent): the router installs what
  it needs through OpenCode's API, as it must against a user's unedited config. ``agents`` adds
  agent entries (e.g. one that disables the relay agent, for the refusal test).
- ``OpenCodeServer(binary, root, config).start(port)`` runs ``opencode serve`` on 127.0.0.1 with
  a private HOME and XDG dirs under ``root``; ``start`` waits for ``/global/health`` (and gives
  up early if the process dies); ``stop`` sends SIGTERM, waits, then SIGKILL.

Offline switches (checked against opencode 1.18): ``OPENCODE_DISABLE_AUTOUPDATE``,
``OPENCODE_DISABLE_MODELS_FETCH`` (no models.dev download; the bundled snapshot is used),
``OPENCODE_DISABLE_SHARE``, ``OPENCODE_DISABLE_LSP_DOWNLOAD``, ``OPENCODE_DISABLE_DEFAULT_PLUGINS``,
``OPENCODE_DISABLE_CLAUDE_CODE`` (no ~/.claude prompt/skills) and config ``autoupdate: false``,
``share: "disabled"``.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

OPENCODE_VERSION = "1.18.33"

OFFLINE_ENV = {
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_SHARE": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "OPENCODE_DISABLE_CLAUDE_CODE": "1",
}


def cache_dir() -> Path:
    root = os.environ.get("LOCAL_AI_CACHE") or str(Path.home() / ".cache" / "local-ai-router")
    return Path(root).expanduser()


def _runnable(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=60,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == OPENCODE_VERSION


def _find_binary(prefix: Path) -> Path | None:
    modules = prefix / "node_modules"
    # The platform package holds the real binary; npm may skip opencode-ai's postinstall.
    candidates = sorted(modules.glob("opencode-*/bin/opencode")) + [modules / ".bin" / "opencode"]
    for path in candidates:
        if _runnable(path):
            return path
    return None


def ensure_opencode() -> Path:
    """A runnable opencode binary of OPENCODE_VERSION, installed into the cache if needed."""
    prefix = cache_dir() / "opencode"
    prefix.mkdir(parents=True, exist_ok=True)
    with (prefix.parent / "opencode.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _find_binary(prefix)
        if found is not None:
            return found
        proc = subprocess.run(
            ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
             f"opencode-ai@{OPENCODE_VERSION}"],
            capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"npm install opencode-ai failed ({proc.returncode}):\n"
                               f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        found = _find_binary(prefix)
        if found is None:
            raise RuntimeError(f"npm installed opencode-ai into {prefix} but no runnable "
                               "opencode binary was found")
        return found


def relay_config(provider_url: str, **agents: dict[str, Any]) -> dict[str, Any]:
    base = provider_url.rstrip("/") + "/v1"
    return {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        **({"agent": agents} if agents else {}),
        "provider": {
            "fakezai": {"npm": "@ai-sdk/openai-compatible", "name": "Fake GLM",
                        "options": {"baseURL": base, "apiKey": "sk-fake"},
                        "models": {"glm-fake": {"name": "GLM fake",
                                                "limit": {"context": 128000, "output": 4096}}}},
            "fakeanthropic": {"npm": "@ai-sdk/anthropic", "name": "Fake Anthropic",
                              "options": {"baseURL": base, "apiKey": "sk-ant-fake"},
                              "models": {"claude-fake": {"name": "Claude fake",
                                                         "limit": {"context": 200000,
                                                                   "output": 4096}}}},
        },
    }


class OpenCodeServer:
    """One `opencode serve` process with a private home. Not thread-safe."""

    def __init__(self, binary: Path, root: Path, config: dict[str, Any]) -> None:
        self.binary = binary
        self.root = root
        self.config = config
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "opencode.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        home = self.root / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCODE")}
        env.update(OFFLINE_ENV)
        env.update({
            "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"), "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "OPENCODE_CONFIG": str(self.root / "opencode.json"),
        })
        # Provider keys from the developer's environment must not leak into the test server.
        for key in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ZHIPU_API_KEY", "OPENROUTER_API_KEY"):
            env.pop(key, None)
        return env

    def start(self, port: int, deadline: float = 90.0) -> OpenCodeServer:
        self.port = port
        (self.root / "home").mkdir(parents=True, exist_ok=True)
        (self.root / "work").mkdir(parents=True, exist_ok=True)
        (self.root / "opencode.json").write_text(json.dumps(self.config, indent=2))
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--port", str(port), "--hostname", "127.0.0.1",
             "--print-logs", "--log-level", "WARN"],
            cwd=self.root / "work", env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            if self.proc.poll() is not None:
                raise RuntimeError(f"opencode serve exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/global/health", timeout=2) as resp:
                    if json.loads(resp.read()).get("healthy") is True:
                        return self
            except OSError:
                pass
            time.sleep(0.2)  # a poll interval against a separate process, not a test wait
        self.stop()
        raise RuntimeError(f"opencode serve was not healthy within {deadline:g}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
