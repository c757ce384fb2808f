"""`python -m bench` (or `python3 dev.py bench`): the router against a direct upstream and LiteLLM.

Starts the fake upstream (`bench.upstream`), the router (`local-ai-router serve`) and LiteLLM's
proxy as separate processes on free loopback ports; this process is the load generator. Each
figure is the median of `--runs` runs, and comparisons are differences or ratios measured in the
same run, since a 2-core machine is noisy. Prints one Markdown table and writes it to
`bench/results/<date>.md` and `bench/results/latest.md` (raw numbers in `latest.json`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import (
    agent_apis,
    lab_bench,
    loadgen,
    profile_summary,
    service_path,
    targets,
    tokens_bench,
)
from bench.loadgen import Target, median, percentile
from bench.report import Row, check, ms, ratio, table

RESULTS = Path(__file__).resolve().parent / "results"
STREAM_EVENTS = 20
STREAM_INTERVAL_MS = 5.0
WARMUP = 20
HELD_EVENTS = 60
HELD_INTERVAL_MS = 50.0


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def count_rows(db: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])


def settled_rows(db: str, expected: int, timeout: float = 30.0) -> int:
    """Row count once it stops changing (or reaches `expected`), within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        try:
            now = count_rows(db)
        except sqlite3.OperationalError:
            now = last
        if now != last:
            last, stable_since = now, time.monotonic()
        elif now >= expected or time.monotonic() - stable_since > 2.0:
            return now
        time.sleep(0.1)
    return last


def one_run(run: int, tgts: list[Target], procs: dict[str, targets.Proc],
            args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"latency": {}, "throughput": {}, "stream": {}}
    for t in tgts:
        count = args.latency_requests if t.name != "litellm" else max(50, args.latency_requests // 3)
        cpu0 = procs[t.name].cpu_seconds()
        lat = asyncio.run(loadgen.latencies(t, count, warmup=WARMUP))
        cpu_us = (procs[t.name].cpu_seconds() - cpu0) / (len(lat) + WARMUP) * 1e6
        out["latency"][t.name] = {"p50": percentile(lat, 50) * 1000, "p99": percentile(lat, 99) * 1000,
                                  "n": len(lat), "cpu_us_per_request": cpu_us}
    for t in tgts:
        proc = procs[t.name]
        cpu0 = proc.cpu_seconds()
        tp = asyncio.run(loadgen.throughput(t, args.concurrency, args.seconds))
        cpu_us = (proc.cpu_seconds() - cpu0) / max(1, tp.issued) * 1e6
        out["throughput"][t.name] = {"rps": tp.rps, "requests": tp.requests, "errors": tp.errors,
                                     "cpu_us_per_request": cpu_us}
    for t in tgts:
        results = asyncio.run(loadgen.streams(t, args.streams, STREAM_EVENTS, STREAM_INTERVAL_MS))
        out["stream"][t.name] = {
            "ttft_ms": median([r.ttft * 1000 for r in results]),
            "sent": STREAM_EVENTS * len(results),
            "events": sum(r.events for r in results),
            "coalesced": sum(r.coalesced for r in results),
            "late": sum(r.late for r in results),
            "worst_delay_ms": max((r.worst_delay_ns for r in results), default=0) / 1e6,
            "not_done": sum(1 for r in results if not r.done),
            "delay_p50_ms": percentile([d for r in results for d in r.delays_ns], 50) / 1e6,
            "delay_p99_ms": percentile([d for r in results for d in r.delays_ns], 99) / 1e6,
        }
    lat, tp, st = out["latency"], out["throughput"], out["stream"]
    log(f"run {run}: c=1 p50 " + ", ".join(f"{k} {v['p50']:.2f}ms" for k, v in lat.items())
        + "; c=50 " + ", ".join(f"{k} {v['rps']:.0f}/s" for k, v in tp.items())
        + "; ttft " + ", ".join(f"{k} {v['ttft_ms']:.2f}ms" for k, v in st.items()))
    return out


def held_load(workdir: Path, upstream: targets.Proc, args: argparse.Namespace) -> dict[str, Any]:
    router = targets.start_router(workdir, upstream.url, name="router-held",
                                  event_loop=args.event_loop)
    try:
        target = Target("router", router.url, "small")
        cpu0 = router.cpu_seconds()
        result = asyncio.run(loadgen.held(target, args.held, HELD_EVENTS, HELD_INTERVAL_MS))
        cpu = router.cpu_seconds() - cpu0
        rows = settled_rows(router.extra["db"], args.held)
        hwm = router.vm_hwm_kb()
    finally:
        router.stop()
    return {"ok": result.ok, "errors": result.errors, "error_samples": result.error_samples,
            "seconds": result.seconds, "peak_concurrent": result.peak_concurrent,
            "peak_rss_mb": (hwm or 0) / 1024, "rows": rows, "events": result.events,
            "cpu_us_per_event": cpu / max(1, result.events) * 1e6}


def profile_router(router: targets.Proc, target: Target, args: argparse.Namespace,
                   stamp: str) -> list[str]:
    """py-spy the router under the c=50 load; returns the files written."""
    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if pyspy is None:
        log("py-spy not found; install it with .venv/bin/pip install py-spy to profile")
        return []
    files = []
    seconds = max(3, int(args.seconds * 2))
    for fmt, ext in (("flamegraph", "svg"), ("raw", "txt")):
        path = RESULTS / f"profile-{stamp}.{ext}"
        spy = subprocess.Popen([pyspy, "record", "--native", "--rate", "500", "-d", str(seconds),
                                "-f", fmt, "-o", str(path), "-p", str(router.pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        asyncio.run(loadgen.throughput(target, args.concurrency, seconds - 1))
        _, err = spy.communicate(timeout=60)
        if spy.returncode == 0:
            files.append(str(path))
        else:
            log(f"py-spy failed: {err.decode(errors='replace')[-400:]}")
    return files


def summarise(runs: list[dict[str, Any]], held: dict[str, Any] | None,
              est: dict[str, Any], has_litellm: bool) -> list[Row]:
    def per_run(fn: Any) -> float:
        return median([fn(r) for r in runs])

    add50 = per_run(lambda r: r["latency"]["router"]["p50"] - r["latency"]["direct"]["p50"])
    add99 = per_run(lambda r: r["latency"]["router"]["p99"] - r["latency"]["direct"]["p99"])
    rps = {name: per_run(lambda r, n=name: r["throughput"][n]["rps"])
           for name in runs[0]["throughput"]}
    cpu = {name: per_run(lambda r, n=name: r["throughput"][n]["cpu_us_per_request"])
           for name in runs[0]["throughput"]}
    vs_direct = per_run(lambda r: r["throughput"]["router"]["rps"] / r["throughput"]["direct"]["rps"])
    ttft_add = per_run(lambda r: r["stream"]["router"]["ttft_ms"] - r["stream"]["direct"]["ttft_ms"])
    st = {k: sum(r["stream"]["router"][k] for r in runs)
          for k in ("sent", "events", "coalesced", "late", "not_done")}
    worst = max(r["stream"]["router"]["worst_delay_ms"] for r in runs)
    worst_direct = max(r["stream"]["direct"]["worst_delay_ms"] for r in runs)
    late_direct = sum(r["stream"]["direct"]["late"] for r in runs)
    delay = {n: (per_run(lambda r, n=n: r["stream"][n]["delay_p50_ms"]),
                 per_run(lambda r, n=n: r["stream"][n]["delay_p99_ms"])) for n in ("direct", "router")}
    cpu1 = {name: per_run(lambda r, n=name: r["latency"][n]["cpu_us_per_request"])
            for name in runs[0]["latency"]}
    rows = [
        Row("Added latency p50, non-streaming, c=1 (router − direct)", ms(add50), "≤ 1 ms",
            check(add50, add50 <= 1.0)),
        Row("Added latency p99, non-streaming, c=1 (router − direct)", ms(add99), "—", None),
        Row("CPU per request at c=1, µs: upstream alone / router"
            + (" / LiteLLM" if has_litellm else "") + " (its own process only)",
            " / ".join(f"{cpu1[n]:.0f}" for n in cpu1), "—", None),
    ]
    if has_litellm:
        l50 = per_run(lambda r: r["latency"]["litellm"]["p50"] - r["latency"]["direct"]["p50"])
        l99 = per_run(lambda r: r["latency"]["litellm"]["p99"] - r["latency"]["direct"]["p99"])
        rows += [Row("LiteLLM added latency p50 / p99, c=1", f"{ms(l50, 1)} / {ms(l99, 1)}",
                     "reference (~30 ms)", None)]
    rows += [Row("Throughput c=50, req/s: direct / router"
                 + (" / LiteLLM" if has_litellm else ""),
                 " / ".join(f"{rps[n]:.0f}" for n in rps), "—", None),
             Row("Throughput router / direct, c=50", ratio(vs_direct), "≥ 0.50×",
                 check(vs_direct, vs_direct >= 0.5)),
             Row("CPU per request at c=50, µs (less noisy than req/s): upstream alone / router"
                 + (" / LiteLLM" if has_litellm else "") + " (its own process only)",
                 " / ".join(f"{cpu[n]:.0f}" for n in cpu), "—", None)]
    cpu_ratio = per_run(lambda r: r["throughput"]["router"]["cpu_us_per_request"]
                        / r["throughput"]["direct"]["cpu_us_per_request"])
    rows.append(Row("Router CPU per request / the upstream's own, c=50 (the same run's pair)",
                    ratio(cpu_ratio), "≤ 3×", check(cpu_ratio, cpu_ratio <= 3.0)))
    if has_litellm:
        vs_llm = per_run(lambda r: r["throughput"]["router"]["rps"] / r["throughput"]["litellm"]["rps"])
        rows.append(Row("Throughput router / LiteLLM, c=50", ratio(vs_llm), "≥ 20×",
                        check(vs_llm, vs_llm >= 20)))
    rows.append(Row("Streaming: added time to first token (router − direct)", ms(ttft_add),
                    "≤ 2 ms", check(ttft_add, ttft_add <= 2.0)))
    if has_litellm:
        l_ttft = per_run(lambda r: r["stream"]["litellm"]["ttft_ms"] - r["stream"]["direct"]["ttft_ms"])
        rows.append(Row("LiteLLM added time to first token", ms(l_ttft, 1), "reference", None))
    rows.append(Row(
        f"Streaming chunks through the router ({STREAM_EVENTS} events {STREAM_INTERVAL_MS:g} ms "
        "apart per stream): seen / sent; reads carrying > 1 event (coalesced)",
        f"{st['events']} / {st['sent']}; {st['coalesced']} coalesced",
        "all seen, 0 coalesced",
        st["events"] == st["sent"] and st["coalesced"] == 0 and st["not_done"] == 0))
    rows.append(Row(
        "Streaming: events arriving > 1 ms after the upstream sent them, router (direct); "
        "delay p50 / p99 router (direct); worst",
        f"{st['late']} ({late_direct}) of {st['sent']}; {delay['router'][0]:.2f} / "
        f"{delay['router'][1]:.2f} ms ({delay['direct'][0]:.2f} / {delay['direct'][1]:.2f}); "
        f"{worst:.1f} ms ({worst_direct:.1f})", "0 late", st["late"] == 0))
    if held is not None:
        rows += [
            Row(f"Held load: {held['ok'] + held['errors']} concurrent streams through the router "
                f"(peak {held['peak_concurrent']} open), errors", str(held["errors"]), "0",
                held["errors"] == 0),
            Row(f"Held load: router CPU per streamed event ({held['events']} events in "
                f"{held['seconds']:.1f} s; includes opening the streams)",
                f"{held['cpu_us_per_event']:.0f} µs", "—", None),
            Row("Held load: router peak RSS (VmHWM)", f"{held['peak_rss_mb']:.0f} MB", "≤ 250 MB",
                0 < held["peak_rss_mb"] <= 250),
            Row("Held load: decision rows written", str(held["rows"]),
                str(held["ok"] + held["errors"]), held["rows"] == held["ok"] + held["errors"]),
        ]
    for size in ("2k", "16k"):
        e = est[size]
        rows.append(Row(f"Token estimate, {size} prompt ({e['tokens']} tokens): blocking cost / "
                        "`await estimate` wall / the same prompt again (counts remembered)",
                        f"{ms(e['sync_ms'])} / {ms(e['async_ms'])} / {ms(e['cached_ms'])}",
                        "—", None))
    e16 = est["16k"]
    lag = e16["loop_lag_ms"]
    rows.append(Row("Loop lag during `await estimate` on 16k: median over calls of the worst "
                    "1 ms-ticker delay (worst call; idle floor; the same count run inline)",
                    f"{ms(lag)} ({e16['worst_lag_ms']:.2f}; {est['idle_lag_ms']:.2f}; "
                    f"{e16['inline_lag_ms']:.2f} ms)", "≤ 2 ms", check(lag, lag <= 2.0)))
    return rows


def versions() -> str:
    import aiohttp

    parts = [f"Python {platform.python_version()}", f"aiohttp {aiohttp.__version__}",
             f"{os.cpu_count()} CPUs"]
    try:
        out = subprocess.run([str(targets.litellm_venv() / "bin" / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('litellm'))"],
                             capture_output=True, text=True, timeout=30, check=False)
        if out.returncode == 0:
            parts.append(f"LiteLLM {out.stdout.strip()}")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="runs to take the median of (default 5)")
    p.add_argument("--latency-requests", type=int, default=300, help="c=1 requests per target per run")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--seconds", type=float, default=3.0, help="length of each throughput run")
    p.add_argument("--streams", type=int, default=30, help="streams per target per run")
    p.add_argument("--held", type=int, default=1000, help="concurrent streams in the held-load test")
    p.add_argument("--no-litellm", action="store_true", help="skip LiteLLM (no comparison figures)")
    p.add_argument("--no-held", action="store_true", help="skip the held-load test")
    p.add_argument("--profile", action="store_true", help="py-spy the router under c=50 load")
    p.add_argument("--event-loop", choices=["auto", "uvloop", "asyncio"], default="auto",
                   help="the router's EVENT_LOOP (default auto: uvloop when installed)")
    p.add_argument("--quick", action="store_true", help="1 run, small counts (a smoke test)")
    p.add_argument("--no-write", action="store_true", help="print only; write nothing to results/")
    p.add_argument("--strict", action="store_true", help="exit 1 when a figure misses its target")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.latency_requests, args.seconds, args.streams = 1, 100, 1.5, 10
    started = time.monotonic()
    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M")
    RESULTS.mkdir(parents=True, exist_ok=True)

    log("token estimation")
    est = {"2k": asdict(tokens_bench.measure(2000)), "16k": asdict(tokens_bench.measure(16000)),
           "idle_lag_ms": tokens_bench.idle_lag()}

    workdir = targets.make_workdir()
    procs: list[targets.Proc] = []
    profiles: list[str] = []
    try:
        log(f"starting upstream, router{'' if args.no_litellm else ', LiteLLM'} in {workdir}")
        upstream = targets.start_upstream(workdir)
        procs.append(upstream)
        router = targets.start_router(workdir, upstream.url, event_loop=args.event_loop)
        procs.append(router)
        tgts = [Target("direct", upstream.url, "bench-model"), Target("router", router.url, "small")]
        if not args.no_litellm:
            litellm = targets.start_litellm(workdir, upstream.url)
            procs.append(litellm)
            tgts.append(Target("litellm", litellm.url, targets.LITELLM_MODEL,
                               {"Authorization": f"Bearer {targets.LITELLM_KEY}"}))
        by_name = {"direct": upstream, "router": router}
        if not args.no_litellm:
            by_name["litellm"] = litellm
        runs = [one_run(i + 1, tgts, by_name, args) for i in range(args.runs)]
        log("agent APIs: /v1/messages and /v1/responses against chat through the router")
        agent_runs = [agent_apis.run(router.url, "small", args.quick) for _ in range(args.runs)]
        log("the service's own path, in process against a canned upstream")
        service_us = service_path.measure(upstream.url, workdir,
                                          requests=2_000 if args.quick else 10_000)
        if args.profile:
            profiles = profile_router(router, tgts[1], args, stamp)
        for proc in procs[1:]:
            proc.stop()
        held = None
        if not args.no_held:
            log(f"held load: {args.held} concurrent streams through a fresh router")
            held = held_load(workdir, upstream, args)
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    log("home-lab rows: decide() on 10 rules, cold/sleeping/warm starts, hung fail-over")
    decide_us = lab_bench.decide_cost()
    starts = lab_bench.cold_starts()
    rows = (summarise(runs, held, est, not args.no_litellm) + [service_path.row(service_us)]
            + agent_apis.rows(agent_runs) + lab_bench.rows(decide_us, starts))
    elapsed = time.monotonic() - started
    text = "\n".join([
        f"## Benchmark {stamp} ({versions()})", "",
        table(rows), "",
        f"Medians of {args.runs} runs; c=1: {args.latency_requests} sequential requests per target "
        f"per run; c={args.concurrency}: {args.seconds:g} s per target per run; streaming: "
        f"{args.streams} streams per target per run. `python -m bench"
        + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
        + f"` took {elapsed:.0f} s" + (f" (router EVENT_LOOP={args.event_loop})" if args.event_loop != "auto" else "") + ".",
    ]) + "\n"
    raw_profile = next((f for f in profiles if f.endswith(".txt")), None)
    if raw_profile:
        total, shares = profile_summary.summarise(Path(raw_profile))
        text += (f"\nWhere the router's CPU goes under c={args.concurrency} load (py-spy --native, "
                 f"{total} busy samples, `{Path(raw_profile).name}`; groups overlap):\n\n"
                 "| where | share |\n| --- | ---: |\n"
                 + "".join(f"| {label} | {share:.1f}% |\n" for label, share in shares))
    print(text)
    if not args.no_write:
        (RESULTS / f"{stamp}.md").write_text(text)
        (RESULTS / "latest.md").write_text(text)
        raw = {"runs": runs, "held": held, "estimate": est, "profiles": profiles,
               "agent_apis": agent_runs, "service_path_us": service_us, "decide_us": decide_us,
               "cold_starts": starts, "args": vars(args), "seconds": elapsed}
        (RESULTS / "latest.json").write_text(json.dumps(raw, indent=1, default=str))
    failed = [r for r in rows if r.passed is False]
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
