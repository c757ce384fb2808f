"""The report texts are pure functions of status dicts and stats rows."""

from __future__ import annotations

from typing import Any

from bot.reports import (
    GAMING_OFF,
    GAMING_ON,
    aggregate,
    freed_text,
    gaming_change_text,
    gaming_status_text,
    stats_table,
)

LABELS = {"3070": "3070", "3090": "3090", "opencode": "OpenCode"}


def status(gaming: bool, config: str = "environment", labels: dict[str, str] = LABELS,
           gaming_backends: tuple[str, ...] = ("3090",), **healthy: bool) -> dict[str, Any]:
    """A `RouterService.status()` dict (only the keys the texts read)."""
    return {"gaming_mode": gaming, "config": config, "backends": [
        {"name": name, "label": labels.get(name, name), "healthy": up, "models": [],
         "gated": gaming and name in gaming_backends} for name, up in healthy.items()]}


def test_gaming_status_lines() -> None:
    assert gaming_status_text(status(True, **{"3070": True, "3090": False})) == (
        "Gaming mode: ON\n3070: Available\n3090: Down\nOpenCode: Down")
    assert gaming_status_text(status(True, **{"3070": False, "3090": True, "opencode": True})) == (
        "Gaming mode: ON\n3070: Down\n3090: Gated (force-big only)\nOpenCode: Available")


def test_gaming_status_lines_of_a_configured_lab_use_its_labels() -> None:
    lab = status(True, config="lab.toml", labels={"pc": "Gaming PC (48 GB)", "zai": "Z.ai"},
                 gaming_backends=("pc",), pc=True, zai=True, small=False)
    assert gaming_status_text(lab) == ("Gaming mode: ON\nGaming PC (48 GB): Gated (force-big only)"
                                       "\nZ.ai: Available\nsmall: Down")


def test_gaming_replies_name_the_gaming_backends() -> None:
    assert gaming_change_text(True, ["3090"]) == GAMING_ON
    assert gaming_change_text(False, []) == GAMING_OFF
    assert gaming_change_text(True, ["PC", "Workstation"]) == (
        "Gaming mode enabled. PC, Workstation will only respond to force-big requests.")
    assert gaming_change_text(False, ["PC"]) == "Gaming mode disabled. PC is available for routing."


def test_freed_text_from_the_agents_status() -> None:
    assert freed_text("3090", {"safe_to_game": None, "gpu": None}) is None
    assert freed_text("3090", {"safe_to_game": True, "gpu": {"memory_used_mb": 307}}) == (
        "3090 freed: 0.3 GiB in use.")
    assert "not safe to game" in freed_text("3090", {"safe_to_game": False,
                                                     "gpu": {"memory_used_mb": 9000}})


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
