"""Every routing rule of SPEC.md, as a table over the pure policy function."""

from __future__ import annotations

import pytest

from router.core.policy import BackendView, Features, decide, is_complex

SMALL, MEDIUM = 2000, 16000


def views(down: tuple[str, ...] = (), absent: tuple[str, ...] = (),
          window_3090: int | None = 32768) -> dict[str, BackendView]:
    out = {
        "3070": BackendView("3070", healthy="3070" not in down, context_window=32768),
        "3090": BackendView("3090", healthy="3090" not in down, context_window=window_3090),
        "opencode": BackendView("opencode", healthy="opencode" not in down, context_window=200_000),
    }
    return {name: view for name, view in out.items() if name not in absent}


CASES = [
    # id, features, backends, expected backend, expected reason
    ("tiny auto", Features(None, 10), views(), "3070", "small_request"),
    ("1999 tokens is small", Features(None, 1999), views(), "3070", "small_request"),
    ("2000 tokens is medium", Features(None, 2000), views(), "3090", "medium_request"),
    ("15999 tokens is medium", Features(None, 15999), views(), "3090", "medium_request"),
    ("16000 tokens is long", Features(None, 16000), views(), "opencode", "long_context"),
    ("medium with 3090 down -> fallback 3070", Features(None, 5000), views(down=("3090",)), "3070", "fallback"),
    ("medium, 3090 down, complex -> opencode", Features(None, 8000, complex_task=True),
     views(down=("3090",)), "opencode", "complex_task"),
    ("medium, gaming on -> 3070", Features(None, 5000, gaming_mode=True), views(), "3070", "gaming_mode"),
    ("long, gaming on -> 3070 gaming_mode", Features(None, 20000, gaming_mode=True), views(), "3070", "gaming_mode"),
    ("long, opencode absent -> 3090 fallback", Features(None, 20000), views(absent=("opencode",)), "3070", "fallback"),
    ("3090 context too small for medium", Features(None, 9000, max_tokens=1000), views(window_3090=8192),
     "3070", "fallback"),
    ("3090 context fits exactly", Features(None, 7000, max_tokens=1192), views(window_3090=8192),
     "3090", "medium_request"),
    # aliases
    ("alias 3070", Features("3070", 20000), views(), "3070", "explicit_model"),
    ("alias 3090", Features("3090", 10), views(), "3090", "explicit_model"),
    ("alias 3090 gaming on -> 3070", Features("3090", 10, gaming_mode=True), views(), "3070", "gaming_mode"),
    ("alias 3090 gaming on force-big -> 3090", Features("3090", 10, gaming_mode=True, force_big=True),
     views(), "3090", "explicit_model"),
    ("alias opencode", Features("opencode", 10), views(), "opencode", "explicit_model"),
    ("alias opencode absent -> fallback", Features("opencode", 10), views(absent=("opencode",)), "3070", "fallback"),
    ("alias 3090 down -> fallback", Features("3090", 10), views(down=("3090",)), "3070", "fallback"),
    # force big
    ("force-big gaming off", Features(None, 10, force_big=True), views(), "3090", "force_big"),
    ("force-big gaming on", Features(None, 10, force_big=True, gaming_mode=True), views(), "3090", "force_big"),
    ("force-big 3090 down -> small", Features(None, 10, force_big=True), views(down=("3090",)), "3070", "small_request"),
    ("force-big, long, 3090 context too small", Features(None, 40000, force_big=True), views(), "opencode", "long_context"),
    # everything down
    ("small, 3070 down -> 3090", Features(None, 10), views(down=("3070",)), "3090", "fallback"),
    ("small, 3070 down, gaming on -> opencode", Features(None, 10, gaming_mode=True), views(down=("3070",)),
     "opencode", "fallback"),
]


@pytest.mark.parametrize("features,backends,backend,reason", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(features: Features, backends: dict[str, BackendView], backend: str, reason: str) -> None:
    decision = decide(features, backends, SMALL, MEDIUM)
    assert (decision.backend, decision.reason) == (backend, reason)
    assert decision.candidates[0] == backend
    assert len(set(decision.candidates)) == len(decision.candidates)


def test_gated_3090_is_never_a_candidate() -> None:
    decision = decide(Features(None, 5000, gaming_mode=True), views(), SMALL, MEDIUM)
    assert "3090" not in decision.candidates
    assert "gaming mode" in decision.skipped["3090"]


def test_candidates_follow_fallback_order() -> None:
    decision = decide(Features(None, 20000), views(), SMALL, MEDIUM)
    assert decision.candidates == ("opencode", "3070", "3090")


def test_nothing_usable_explains_why() -> None:
    decision = decide(Features(None, 10, gaming_mode=True), views(down=("3070", "opencode")), SMALL, MEDIUM)
    assert decision.backend is None
    message = decision.why_none()
    assert "3070: down" in message and "opencode: down" in message and "gaming mode" in message


@pytest.mark.parametrize("text,messages,tools,expected", [
    ("please refactor this module", 1, False, True),
    ("what is the capital of France", 1, False, False),
    ("hello", 1, True, True),
    ("hello", 16, False, True),
    ("Design a schema for invoices", 2, False, True),
])
def test_complex_heuristic(text: str, messages: int, tools: bool, expected: bool) -> None:
    assert is_complex(text, messages, tools) is expected
