"""Other labs' rule sets as tables over the pure policy (the seed's table is tests/router/test_policy.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config import load_topology
from router.core.policy import GATED, NO_TOOLS, BackendView, Decision, Features, RuleSet, decide
from router.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
KEYS = {"ZAI_API_KEY": "z", "ANTHROPIC_API_KEY": "a", "OPENROUTER_API_KEY": "o"}


def rules_of(name: str) -> RuleSet:
    path = str(EXAMPLES / name)
    environ = {"ROUTER_CONFIG": path, **KEYS}
    settings = Settings.from_env(environ)
    topology = load_topology(path, settings, environ)
    return RuleSet(topology.rules, topology.fallback, frozenset(topology.gaming_backends),
                   settings.min_answer_tokens)


def views(*down: str, windows: dict[str, int] | None = None, **extra: BackendView) -> dict[str, BackendView]:
    names = ("pc", "small", "zai", "claude", "cheap", "big", "openrouter")
    out = {n: BackendView(n, healthy=n not in down, context_window=(windows or {}).get(n),
                          explicit_only=n in ("small", "claude")) for n in names}
    out.update(extra)
    return out


BIG_PC = rules_of("big-gaming-pc.toml")
TWO_HOSTS = rules_of("two-hosts-openrouter.toml")

CASES = [
    # id, rules, features, views, backend, reason
    ("pc is the main backend", BIG_PC, Features(None, 500), views(), "pc", "main"),
    ("gaming mode sends everything to z.ai", BIG_PC, Features(None, 500, gaming_mode=True),
     views(), "zai", "gaming_mode"),
    ("gaming mode, force-big keeps the pc", BIG_PC, Features(None, 500, gaming_mode=True, force_big=True),
     views(), "pc", "main"),
    ("long prompts go to z.ai", BIG_PC, Features(None, 70_000), views(), "zai", "long_context"),
    ("pc down -> the rule's next candidate", BIG_PC, Features(None, 500), views("pc"), "zai", "main"),
    ("explicit-only card when asked", BIG_PC, Features("small", 500), views(), "small", "explicit_model"),
    ("explicit pc in gaming mode -> the gaming rule", BIG_PC, Features("pc", 500, gaming_mode=True),
     views(), "zai", "gaming_mode"),
    ("small request -> cheap host", TWO_HOSTS, Features(None, 1000), views(), "cheap", "small_request"),
    ("small, cheap down -> big", TWO_HOSTS, Features(None, 1000), views("cheap"), "big", "small_request"),
    ("agent work with tools -> openrouter", TWO_HOSTS, Features(None, 9000, tools=True), views(),
     "openrouter", "agent_work"),
    ("medium without tools -> big", TWO_HOSTS, Features(None, 9000), views(), "big", "medium_request"),
    ("medium in gaming mode -> fallback", TWO_HOSTS, Features(None, 9000, gaming_mode=True), views(),
     "cheap", "fallback"),
    ("long -> openrouter", TWO_HOSTS, Features(None, 30_000), views(), "openrouter", "long_context"),
]


@pytest.mark.parametrize("rules,features,backends,backend,reason", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_rule_sets(rules: RuleSet, features: Features, backends: dict[str, BackendView],
                   backend: str, reason: str) -> None:
    decision = decide(features, backends, rules)
    assert (decision.backend, decision.reason) == (backend, reason)
    assert len(set(decision.candidates)) == len(decision.candidates)


def test_explicit_only_backends_never_join_automatic_fallback() -> None:
    decision = decide(Features(None, 500), views("pc", "zai"), BIG_PC)
    assert decision.backend is None and "small" not in decision.candidates
    assert decision.skipped == {"pc": "down", "zai": "down"}


def test_a_gated_backend_is_never_a_candidate() -> None:
    decision = decide(Features(None, 9000, gaming_mode=True), views(), TWO_HOSTS)
    assert "big" not in decision.candidates and decision.skipped["big"] == GATED


def test_per_backend_gaming_gates_only_that_host() -> None:
    rules = RuleSet(TWO_HOSTS.rules, TWO_HOSTS.fallback, frozenset({"cheap", "big"}))
    decision = decide(Features(None, 1000, gaming_mode=True, gamed=frozenset({"cheap"})), views(), rules)
    assert (decision.backend, decision.skipped.get("cheap")) == ("big", GATED)


def test_tools_never_go_to_an_opencode_session() -> None:
    rules = RuleSet.seed(2000, 16000)
    seed = {"3070": BackendView("3070", context_window=8192),
            "opencode": BackendView("opencode", context_window=200_000, client_tools=False)}
    decision = decide(Features(None, 20_000, tools=True), seed, rules)
    assert decision.backend is None and decision.skipped["opencode"] == NO_TOOLS


@pytest.mark.parametrize("max_tokens,tokens,expected", [
    (32000, 30000, "3070"),   # 30000 + min(32000, 1024) fits 32768: taken (max_tokens is lowered)
    (0, 31000, "3070"),       # no max_tokens: the prompt plus 1024 fits
    (32000, 32000, None),     # 32000 + 1024 does not fit
])
def test_only_the_prompt_plus_a_minimum_answer_must_fit(max_tokens: int, tokens: int,
                                                        expected: str | None) -> None:
    backends = {"3070": BackendView("3070", context_window=32768)}
    decision = decide(Features("3070", tokens, max_tokens=max_tokens), backends,
                      RuleSet.seed(2000, 16000))
    assert decision.backend == expected


def test_a_prompt_no_window_could_hold_is_too_long_not_unavailable() -> None:
    rules = RuleSet.seed(2000, 16000)
    small = {"3070": BackendView("3070", context_window=8192),
             "3090": BackendView("3090", healthy=False, context_window=32768)}
    too_long: Decision = decide(Features(None, 40_000), small, rules)
    assert too_long.backend is None and too_long.too_long
    only_down_fits = decide(Features(None, 20_000), small, rules)
    assert only_down_fits.backend is None and not only_down_fits.too_long
