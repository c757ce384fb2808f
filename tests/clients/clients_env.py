"""Install the real coding agents the client tier drives, pinned and cached, fully offline at run time.

Contract:
- ``ensure_clients()`` returns a ``Clients`` with runnable binaries of Claude Code
  (npm ``@anthropic-ai/claude-code``), Codex CLI (npm ``@openai/codex``), Continue's CLI ``cn``
  (npm ``@continuedev/cli``, with npm ``undici`` beside it for the proxy preload in
  tests/clients/agents.py), opencode (npm ``opencode-ai``, the e2e tier's install, see
  tests/e2e/opencode_env.py) and aider (PyPI ``aider-chat`` in its own venv). Each is installed into
  ``${LOCAL_AI_CACHE:-~/.cache/local-ai-router}/clients`` when missing or at another version.
  Blocking: about 20 s for the npm packages (~800 MB, native binaries inside the packages, no
  other download) and about 50 s for aider's venv on first use; well under a second when cached.
  Safe across processes: an flock serialises installers; idempotent.
- Run ``python3 -m tests.clients.clients_env`` (or scripts/setup_clients.sh) to install ahead.

The versions are the ones this tier was verified against; move them together with the tier.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.opencode_env import cache_dir, ensure_opencode

CLAUDE_CODE_VERSION = "2.1.332"
CODEX_VERSION = "0.171.0"
AIDER_VERSION = "0.86.2"
CONTINUE_CLI_VERSION = "1.5.47"
# Major 6 = the undici inside Node 20 and 22, whose built-in fetch takes its dispatcher.
UNDICI_VERSION = "6.24.1"
NPM_PACKAGES = (f"@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}", f"@openai/codex@{CODEX_VERSION}",
                f"@continuedev/cli@{CONTINUE_CLI_VERSION}", f"undici@{UNDICI_VERSION}")


@dataclass(frozen=True)
class Clients:
    claude: Path
    codex: Path
    continue_cli: Path
    undici: Path  # the package directory, for `require()`
    opencode: Path
    aider: Path


def clients_dir() -> Path:
    return cache_dir() / "clients"


def _version_of(binary: Path, args: tuple[str, ...] = ("--version",)) -> str:
    if not binary.is_file():
        return ""
    try:
        out = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120,
                             check=False, env={**os.environ, "HOME": str(clients_dir())})
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def _claude_binary(modules: Path) -> Path | None:
    # The postinstall copies the platform binary over bin/claude.exe; when npm skipped install
    # scripts, the platform package still holds the same native binary.
    candidates = [modules / "@anthropic-ai" / "claude-code" / "bin" / "claude.exe",
                  *sorted(modules.glob("@anthropic-ai/claude-code-linux-*/claude"))]
    for path in candidates:
        if _is_elf(path) and _version_of(path).startswith(f"{CLAUDE_CODE_VERSION} "):
            return path
    return None


def _codex_binary(modules: Path) -> Path | None:
    # The JS launcher (what `npm i -g` puts on PATH) picks the platform binary and its bundled rg.
    path = modules / ".bin" / "codex"
    return path if _version_of(path) == f"codex-cli {CODEX_VERSION}" else None


def _package_version(package: Path) -> str:
    try:
        value = json.loads((package / "package.json").read_text()).get("version")
    except (OSError, ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def _continue_binary(modules: Path) -> Path | None:
    # The version is read from package.json, not `cn --version`: every start of cn (even
    # --version) pings api.continue.dev, which a cache check must not do.
    path = modules / ".bin" / "cn"
    found = path.is_file() and _package_version(modules / "@continuedev" / "cli") == \
        CONTINUE_CLI_VERSION
    return path if found else None


def _undici_package(modules: Path) -> Path | None:
    path = modules / "undici"
    return path if _package_version(path) == UNDICI_VERSION else None


@dataclass(frozen=True)
class _Npm:
    claude: Path
    codex: Path
    continue_cli: Path
    undici: Path


def _npm_binaries() -> _Npm | None:
    modules = clients_dir() / "npm" / "node_modules"
    claude, codex = _claude_binary(modules), _codex_binary(modules)
    continue_cli, undici = _continue_binary(modules), _undici_package(modules)
    if claude is None or codex is None or continue_cli is None or undici is None:
        return None
    return _Npm(claude, codex, continue_cli, undici)


def _aider_binary() -> Path | None:
    path = clients_dir() / "aider-venv" / "bin" / "aider"
    return path if _version_of(path) == f"aider {AIDER_VERSION}" else None


def _run(cmd: list[str], what: str, timeout: float = 1200) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-2000:]}")


def _install_npm() -> _Npm:
    prefix = clients_dir() / "npm"
    prefix.mkdir(parents=True, exist_ok=True)
    _run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
          "--no-update-notifier", *NPM_PACKAGES], "npm install of the coding agents")
    found = _npm_binaries()
    if found is None:
        raise RuntimeError(f"npm installed {' '.join(NPM_PACKAGES)} into {prefix} but no runnable "
                           "claude/codex/cn binary (or undici) of those versions was found")
    return found


def _install_aider() -> Path:
    venv = clients_dir() / "aider-venv"
    if not (venv / "bin" / "python").exists():
        _run([sys.executable, "-m", "venv", str(venv)], "creating aider's venv")
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
          f"aider-chat=={AIDER_VERSION}"], "pip install aider-chat")
    found = _aider_binary()
    if found is None:
        raise RuntimeError(f"pip installed aider-chat=={AIDER_VERSION} into {venv} but "
                           "`aider --version` does not report it")
    return found


def ensure_clients() -> Clients:
    """Every client at its pinned version, installed into the cache if needed (see the docstring)."""
    root = clients_dir()
    root.mkdir(parents=True, exist_ok=True)
    opencode = ensure_opencode()
    with (root.parent / "clients.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        npm = _npm_binaries() or _install_npm()
        aider = _aider_binary() or _install_aider()
    return Clients(claude=npm.claude, codex=npm.codex, continue_cli=npm.continue_cli,
                   undici=npm.undici, opencode=opencode, aider=aider)


if __name__ == "__main__":
    started = time.monotonic()
    found = ensure_clients()
    for name, path in vars(found).items():
        print(f"{name}: {path}")
    print(f"clients ready in {time.monotonic() - started:.1f}s")
