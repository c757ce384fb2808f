"""Remember the session of every vLLM we launch, and kill leftovers of an agent that was killed.

PR_SET_PDEATHSIG kills the process the agent started when the agent dies, but not that process's
own children (vLLM's engine core). Each launch therefore records its session id (the leader's pid:
we start it with `start_new_session`) in `<state_dir>/sessions/<model>.sid`; a clean stop removes
the file. At start, `reap_stale_sessions()` SIGKILLs every process still in a recorded session and
removes the records. Matching on the session id (not just a pid) keeps a reused pid safe: only a
process whose session leader had exactly that pid belongs to it. Linux /proc only; blocking but
quick (one scan of /proc at agent start).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

log = logging.getLogger(__name__)


def _sessions_dir(state_dir: Path) -> Path:
    return state_dir / "sessions"


def record_session(state_dir: Path, model_id: str, sid: int) -> None:
    """Note that `model_id` runs in session `sid` (blocking file write)."""
    folder = _sessions_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{model_id}.sid").write_text(f"{sid}\n")


def forget_session(state_dir: Path, model_id: str) -> None:
    """Drop the record once the session's processes are gone."""
    with contextlib.suppress(FileNotFoundError):
        (_sessions_dir(state_dir) / f"{model_id}.sid").unlink()


def session_members(sid: int) -> list[int]:
    """Pids of the live (non-zombie) processes in session `sid` (one scan of /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def reap_stale_sessions(state_dir: Path) -> list[int]:
    """SIGKILL processes left in recorded sessions; returns the pids killed."""
    folder = _sessions_dir(state_dir)
    if not folder.is_dir():
        return []
    killed: list[int] = []
    for record in folder.glob("*.sid"):
        try:
            sid = int(record.read_text().strip())
        except (OSError, ValueError):
            sid = 0
        for pid in session_members(sid) if sid > 1 else []:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        record.unlink(missing_ok=True)
    if killed:
        log.warning("killed %d processes left behind by a previous agent: %s", len(killed), killed)
    return killed
