"""Summarise a py-spy `raw` profile: where the router's samples go, grouped by owner.

`python -m bench.profile_summary bench/results/profile-<date>.txt` prints a Markdown table of the
share of samples by inclusive function (router code, aiohttp, asyncio, the decision-log thread,
the garbage collector) so the README can say what stands in the way with numbers.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

# (label, substring of a frame) — a sample counts once per label when any frame matches.
GROUPS = [
    ("event loop thread (all work on the loop)", "BaseEventLoop._run_once"),
    ("HTTP server side: aiohttp request handling", "RequestHandler._handle_request"),
    ("router handler `Api.proxy` (inclusive)", "Api.proxy"),
    ("upstream client: `OpenAIBackend.send` (aiohttp client)", "OpenAIBackend.send"),
    ("routing: `RouterService.plan` (incl. token estimate)", "RouterService.plan"),
    ("token estimate on the loop", "estimate (router/tokens.py"),
    ("decision row + metrics: `finish_row`", "RouterService.finish_row"),
    ("socket writes (send syscalls)", "_SelectorSocketTransport.write"),
    ("socket reads", "_SelectorSocketTransport._read_ready"),
    ("garbage collector", "gc_collect_main"),
    ("decision-log writer thread (SQLite insert)", "DecisionLog._write"),
    ("thread hand-off (`to_thread`)", "to_thread"),
]


def summarise(path: Path) -> tuple[int, list[tuple[str, float]]]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        samples = int(n)
        # With --native, py-spy also samples threads parked in the kernel: the loop waiting in
        # epoll and idle pool threads waiting for work. Those are not cost; skip them.
        if "EpollSelector.select" in stack or "epoll_wait" in stack:
            continue
        if "_worker (concurrent/futures/thread.py" in stack and "_WorkItem.run" not in stack:
            continue
        total += samples
        for label, needle in GROUPS:
            if needle in stack:
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
