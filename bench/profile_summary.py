"""Summarise a py-spy `raw` profile: where the router's samples go, grouped by owner.

`python -m bench.profile_summary bench/results/profile-<date>.txt` prints a Markdown table of the
share of samples by inclusive function (router code, aiohttp, asyncio, the decision-log thread,
the garbage collector) so the README can say what stands in the way with numbers.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

# (label, substrings of a frame): a sample counts once per label when any frame matches any of
# them. The loop's own frames differ between asyncio's loop and uvloop's, so both are named.
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("event loop thread (all work on the loop)", ("BaseEventLoop._run_once", "uv_run (")),
    ("HTTP server side: aiohttp request handling", ("RequestHandler._handle_request",)),
    ("router handler `Api.proxy` (inclusive)", ("Api.proxy",)),
    ("upstream client: `OpenAIBackend.send`", ("OpenAIBackend.send",)),
    ("routing: `RouterService.plan` (incl. token estimate)", ("RouterService.plan",)),
    ("token estimate on the loop", ("estimate (router/core/tokens.py",)),
    ("decision row + metrics: `finish_row`", ("RouterService.finish_row",)),
    ("socket writes (send syscalls)", ("_SelectorSocketTransport.write", "UVStream__exec_write")),
    ("socket reads", ("_SelectorSocketTransport._read_ready", "uv__read (")),
    ("garbage collector", ("gc_collect_main",)),
    ("decision-log writer thread (SQLite insert)", ("DecisionLog._write",)),
    ("thread hand-off (`to_thread`)", ("to_thread",)),
]

# With --native, py-spy also samples threads parked in the kernel: the loop waiting in epoll, idle
# pool threads waiting for work, and a thread waiting for the GIL. None of that is CPU.
_PARKED = ("epoll_wait", "epoll_pwait", "EpollSelector.select", "pthread_cond_timedwait",
           "pthread_cond_wait")


def _parked(frames: list[str]) -> bool:
    """Whether the sample's innermost frames (past libc's unnamed ones) are a wait."""
    named = [frame for frame in frames if not frame.startswith("0x")]
    return bool(named) and named[-1].startswith(_PARKED)


def summarise(path: Path) -> tuple[int, list[tuple[str, float]]]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        samples = int(n)
        if _parked(stack.split(";")):
            continue
        if "_worker (concurrent/futures/thread.py" in stack and "_WorkItem.run" not in stack:
            continue
        total += samples
        for label, needles in GROUPS:
            if any(needle in stack for needle in needles):
                counts[label] += samples
    return total, [(label, 100 * counts[label] / total if total else 0.0) for label, _ in GROUPS]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_summary", description=__doc__)
    parser.add_argument("profile", type=Path, help="a py-spy profile in raw (collapsed) format")
    args = parser.parse_args(argv)
    total, rows = summarise(args.profile)
    print(f"| where ({total} busy samples) | share |\n| --- | ---: |")
    for label, share in rows:
        print(f"| {label} | {share:.1f}% |")


if __name__ == "__main__":
    main()
