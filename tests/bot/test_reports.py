"""The report texts are pure functions of status dicts and stats rows."""

from __future__ import annotations

from typing import Any

from bot.reports import aggregate, gaming_status_text, stats_table


def status(gaming: bool, **healthy: bool) -> dict[str, Any]:
    return {"gaming_mode": gaming, "backends": [
        {"name": name, "healthy": up, "models": []} for name, up in healthy.items()]}


def test_gaming_status_lines() -> None:
    assert gaming_status_text(status(True, **{"3070": True, "3090": False})) == (
        "Gaming mode: ON\n3070: Available\n3090: Down\nOpenCode: Down")
    assert gaming_status_text(status(True, **{"3070": False, "3090": True, "opencode": True})) == (
        "Gaming mode: ON\n3070: Down\n3090: Gated (force-big only)\nOpenCode: Available")


def test_aggregate_and_table() -> None:
    rows = [("3070", 200, 10, 5, 100.0, 0), ("3070", 200, 10, 5, 300.0, 1),
            ("3070", 200, 10, 5, 200.0, 0), ("3070", 502, 10, None, 50.0, 0),
            (None, 503, None, None, 1.0, 0)]
    stats = aggregate(rows)
    assert [(s.backend, s.requests, s.errors, s.prompt_tokens, s.completion_tokens,
             s.p50_latency_ms, s.fallbacks) for s in stats] == [
        ("3070", 4, 1, 40, 15, 200.0, 1), ("none", 1, 1, 0, 0, None, 0)]
    table = stats_table(stats, "7d").splitlines()
    assert table[0] == "**Requests in the last 7d**"
    assert "| 3070 | 4 | 1 | 40 / 15 | 200 ms | 1 |" in table
    assert table[-1] == "| **Total** | **5** | 2 | 55 | | 1 |"
    assert stats_table([], "24h") == "No requests in the last 24h."
