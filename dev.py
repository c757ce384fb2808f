#!/usr/bin/env python3
"""Newcomer entry point: `python3 dev.py run` or `python3 dev.py test` (needs only Python 3.11 + pip).

Creates `.venv/`, installs the project into it (editable, with the dev extra), then runs the
router or the whole test suite. Extra arguments after `test` go to pytest.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".installed"


def ensure_venv() -> None:
    if not PY.exists():
        print("dev.py: creating .venv", flush=True)
        venv.create(VENV, with_pip=True)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    print("dev.py: installing local-ai-router[dev] into .venv", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(digest)


def ensure_test_tools() -> None:
    """System tools the suite drives for real: Debian's docker-compose (to check the compose file)."""
    if shutil.which("docker-compose"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("dev.py: installing docker-compose (Debian package)", flush=True)
        # The lock timeout: .ci/run may be installing Chromium with apt in the background.
        apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
        subprocess.run([*apt, "update", "-qq"], check=True)
        subprocess.run([*apt, "install", "-y", "-qq", "docker-compose"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    else:
        print("dev.py: docker-compose is missing; install it (apt-get install docker-compose)",
              flush=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "bench"}:
        print(__doc__)
        return 2
    ensure_venv()
    cmd, rest = argv[0], argv[1:]
    env = dict(os.environ)
    if cmd == "run":
        (ROOT / "data").mkdir(exist_ok=True)
        args = [str(VENV / "bin" / "local-ai-router"), "serve", *rest]
    elif cmd == "test":
        ensure_test_tools()
        args = [str(PY), "-m", "pytest", "-q", *rest]
    else:
        args = [str(PY), "-m", "bench", *rest]
    return subprocess.call(args, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
