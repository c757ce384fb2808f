"""Texts the bot posts about the router: gaming status, status, models, stats, daily report.

Text builders are pure functions of the values they take (`status()` dicts, stats rows), so they
are tested with tables. `compute_stats` queries the decision log and BLOCKS: run it in a worker
thread (`asyncio.to_thread`), never on the event loop.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from router.store import queries

__all__ = [
    "WINDOWS",
    "BackendStats",
    "compute_stats",
    "daily_report",
    "freed_text",
    "gaming_change_text",
    "gaming_status_text",
    "models_text",
    "stats_table",
    "status_text",
]

WINDOWS: dict[str, timedelta] = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
DISPLAY = {"3070": "3070", "3090": "3090", "opencode": "OpenCode"}

GAMING_ON = "Gaming mode enabled. 3090 will only respond to force-big requests."
GAMING_OFF = "Gaming mode disabled. 3090 is available for routing."


def _backend(status: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    return next((b for b in status.get("backends", ()) if b.get("name") == name), None)


def availability(status: Mapping[str, Any], name: str) -> str:
    """`Available`, `Down` or, for a gaming backend in gaming mode, `Gated (force-big only)`.

    A backend that is not configured counts as `Down` (it cannot answer).
    """
    backend = _backend(status, name)
    if backend is None or not backend.get("healthy"):
        return "Down"
    if backend.get("gated"):
        return "Gated (force-big only)"
    return "Available"


def label(status: Mapping[str, Any], name: str) -> str:
    """The backend's configured display name (the seed's: 3070, 3090, OpenCode)."""
    backend = _backend(status, name)
    return str(backend.get("label") or name) if backend else DISPLAY.get(name, name)


def gaming_status_text(status: Mapping[str, Any]) -> str:
    """`Gaming mode: ON|OFF`, then one `LABEL: Available|Gated (force-big only)|Down` line per
    backend. With the environment's lab, the seed's three lines come first, present or not."""
    lines = [f"Gaming mode: {'ON' if status.get('gaming_mode') else 'OFF'}"]
    names = [str(b.get("name")) for b in status.get("backends", ())]
    if status.get("config", "environment") == "environment":
        names = ["3070", "3090", "opencode", *(n for n in names if n not in DISPLAY)]
    lines += [f"{label(status, n)}: {availability(status, n)}" for n in names]
    return "\n".join(lines)


def gaming_change_text(enabled: bool, labels: list[str]) -> str:
    """The reply to `gaming mode on|off`; with the seed's one gaming PC, the SPEC's texts."""
    if labels in ([], ["3090"]):
        return GAMING_ON if enabled else GAMING_OFF
    who = ", ".join(labels)
    if enabled:
        return f"Gaming mode enabled. {who} will only respond to force-big requests."
    return f"Gaming mode disabled. {who} {'is' if len(labels) == 1 else 'are'} available for routing."


def freed_text(label: str, host: Mapping[str, Any]) -> str | None:
    """"3090 freed: 0.3 GiB in use" from a gaming host's status, when its GPU is known."""
    safe, gpu = host.get("safe_to_game"), host.get("gpu")
    if safe is None:
        return None
    used = f"{gpu['memory_used_mb'] / 1024:.1f} GiB in use" if isinstance(gpu, Mapping) \
        and isinstance(gpu.get("memory_used_mb"), (int, float)) else "GPU memory state unknown"
    if safe:
        return f"{label} freed: {used}."
    return f":warning: {label} still has a model process on the GPU ({used}); not safe to game yet."


def status_text(status: Mapping[str, Any]) -> str:
    """Gaming status plus a Markdown table of every configured backend."""
    lines = [gaming_status_text(status), "",
             (f"Routing thresholds: small < {status.get('small_token_threshold')} tokens, "
              f"medium < {status.get('medium_token_threshold')} tokens."), ""]
    backends = list(status.get("backends", ()))
    if not backends:
        lines.append("No backend is configured.")
    else:
        lines += ["| Backend | State | Models | Latency | Last error |",
                  "| --- | --- | --- | --- | --- |"]
        for b in backends:
            name = str(b.get("name"))
            models = ", ".join(str(m.get("id")) for m in b.get("models", ())) or "-"
            latency = f"{b['latency_ms']:.0f} ms" if b.get("latency_ms") is not None else "-"
            error = _cell(str(b.get("last_error") or "")) or "-"
            lines.append(f"| {label(status, name)} | {availability(status, name)} | "
                         f"{_cell(models)} | {latency} | {error} |")
    log = status.get("decision_log") or {}
    if log:
        lines += ["", (f"Decision log: {log.get('written', 0)} written, "
                       f"{log.get('queued', 0)} queued, {log.get('dropped', 0)} dropped.")]
    return "\n".join(lines)


def models_text(status: Mapping[str, Any], aliases: Mapping[str, str], channel_model: str) -> str:
    """Backend models and aliases as Markdown, and the model this channel's chat uses."""
    lines = ["| Model | Backend | Context | State |", "| --- | --- | --- | --- |"]
    for b in status.get("backends", ()):
        name = str(b.get("name"))
        for m in b.get("models", ()):
            context = str(m.get("max_model_len") or "-")
            lines.append(f"| `{m.get('id')}` | {DISPLAY.get(name, name)} | {context} | "
                         f"{availability(status, name)} |")
    if len(lines) == 2:
        lines = ["No backend reports a model right now."]
    by_target: dict[str, list[str]] = {}
    for alias, target in sorted(aliases.items()):
        by_target.setdefault(target, []).append(f"`{alias}`")
    alias_lines = [f"- {', '.join(names)} → {target}" for target, names in by_target.items()]
    return "\n".join([*lines, "", "Aliases (`auto` routes automatically):", *alias_lines, "",
                      f"This channel's chat model: `{channel_model}`."])


# -- stats ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BackendStats:
    """One row of `stats`: what the decision log says about one backend in a window."""

    backend: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    p50_latency_ms: float | None
    fallbacks: int
    """Requests this backend served after at least one other candidate had failed."""


def compute_stats(engine: Engine, since: datetime) -> list[BackendStats]:
    """Per-backend stats of every decision row created at or after `since`. BLOCKS (SQLite)."""
    return aggregate(queries.decision_stats_rows(engine, since))


def aggregate(rows: Iterable[tuple[Any, ...]]) -> list[BackendStats]:
    """Group (backend, status, prompt, completion, latency, fallbacks) tuples. Pure."""
    groups: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        groups.setdefault(row[0] or "none", []).append(row)
    out: list[BackendStats] = []
    for backend in sorted(groups):
        group = groups[backend]
        latencies = [float(r[4]) for r in group if r[4] is not None and 200 <= (r[1] or 0) < 400]
        out.append(BackendStats(
            backend=backend, requests=len(group),
            errors=sum(1 for r in group if not 200 <= (r[1] or 0) < 400),
            prompt_tokens=sum(int(r[2] or 0) for r in group),
            completion_tokens=sum(int(r[3] or 0) for r in group),
            p50_latency_ms=statistics.median(latencies) if latencies else None,
            fallbacks=sum(1 for r in group if (r[5] or 0) > 0)))
    return out


def stats_table(stats: list[BackendStats], window: str) -> str:
    """A Markdown table of `stats` over `window` (e.g. `24h`), with a total line."""
    if not stats:
        return f"No requests in the last {window}."
    lines = [f"**Requests in the last {window}**", "",
             "| Backend | Requests | Errors | Tokens (prompt / completion) | p50 latency | Fallbacks |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for s in stats:
        p50 = f"{s.p50_latency_ms:.0f} ms" if s.p50_latency_ms is not None else "-"
        lines.append(f"| {DISPLAY.get(s.backend, s.backend)} | {s.requests} | {s.errors} | "
                     f"{s.prompt_tokens} / {s.completion_tokens} | {p50} | {s.fallbacks} |")
    total = sum(s.requests for s in stats)
    tokens = sum(s.prompt_tokens + s.completion_tokens for s in stats)
    lines.append(f"| **Total** | **{total}** | {sum(s.errors for s in stats)} | {tokens} | | "
                 f"{sum(s.fallbacks for s in stats)} |")
    return "\n".join(lines)


def since(window: str, now: datetime | None = None) -> datetime:
    """The start of `window` (`24h` or `7d`) before `now` (UTC)."""
    return (now or datetime.now(UTC)) - WINDOWS[window]


def daily_report(status: Mapping[str, Any], stats: list[BackendStats]) -> str:
    """The scheduled report for the ops channel: status and the last 24 hours."""
    return "\n".join(["#### Daily router report", "", status_text(status), "",
                      stats_table(stats, "24h")])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:120]
