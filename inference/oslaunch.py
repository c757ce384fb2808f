"""OS plumbing for a model process: a free port, dying with the agent, signalling its group.

Linux only (prctl, process groups); every call is quick and blocks only on a syscall.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket

_PR_SET_PDEATHSIG = 1

# Below Linux's ephemeral range (32768-60999): an outgoing connection can never take a port
# from here between our check and vLLM's bind, as it could with a kernel-chosen port.
_PORT_RANGE = (20000, 32000)


def free_port() -> int:
    """A TCP port on 127.0.0.1, outside the ephemeral range, that was free a moment ago."""
    for _ in range(200):
        port = random.randint(*_PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {_PORT_RANGE[0]}-{_PORT_RANGE[1]} on 127.0.0.1")


def die_with_parent() -> None:
    """preexec hook: ask the kernel to SIGKILL the child when the agent dies (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Send `sig` to process group `pid`; a group that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
