"""The routing policy: a pure function from request features and backend state to a decision.

No I/O happens here. Health, gaming mode, context windows and the token estimate come in as
values, and the rules come from the topology (`router.config`), so every rule set can be checked
with a table. Order of evaluation:

1. An explicit model (alias, `backend:model`, a backend's name or a model it serves) goes to that
   backend (`explicit_model`), unless gaming mode gates it: then the request is routed
   automatically, as if no model had been named (the seed's gaming rule answers `gaming_mode`).
2. Automatic: the first rule whose conditions all hold and that has a usable candidate wins, with
   the rule's reason.
3. No rule yields a usable backend: the first usable backend of `fallback` (`fallback`).

A backend is skipped (with the reason in `Decision.skipped`) when it is absent, down, gated
(a gaming backend in gaming mode without a force-big signal), cannot run the client's tools, or
its context window cannot hold the prompt plus `min(max_tokens, min_answer_tokens)`. The
candidates after the chosen one (the rule's others, then `fallback`'s) are the order tried when
the chosen backend fails before the first byte. `explicit_only` backends join that order only
when named.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from router.config import SEED_FALLBACK, Rule, When, seed_rules

# Complex-task heuristic (deterministic): the request asks for structured tool use, or its last
# user message asks for deep work in so many words, or the conversation is long.
COMPLEX_KEYWORDS = re.compile(
    r"\b(refactor|architect(?:ure)?|design (?:a|an|the)|step[- ]by[- ]step|prove|proof|"
    r"analy[sz]e|debug|root cause|implement|migrat(?:e|ion)|optimi[sz]e|security review)\b",
    re.IGNORECASE,
)
COMPLEX_MIN_MESSAGES = 16
MIN_ANSWER_TOKENS = 1024
_Usable = Callable[[str], bool]
GATED = "gated by gaming mode (force-big only)"
NO_TOOLS = "cannot run the client's tools (an OpenCode session)"


@dataclass(frozen=True)
class BackendView:
    """What the policy knows about one backend at decision time."""

    name: str
    present: bool = True
    healthy: bool = True
    context_window: int | None = None  # None = unknown, assume it fits
    models: tuple[str, ...] = ()
    client_tools: bool = True
    explicit_only: bool = False


class Features(NamedTuple):
    """What the policy knows about one request. (A NamedTuple: one is built per request, and
    a frozen dataclass's __init__ costs a microsecond more.)"""

    target: str | None  # None = automatic; else a backend name
    estimated_tokens: int
    max_tokens: int = 0  # 0 = the client did not say
    force_big: bool = False
    complex_task: bool = False
    gaming_mode: bool = False  # some gaming backend is in gaming mode
    tools: bool = False
    client: str | None = None
    source: str = "api"
    gamed: frozenset[str] | None = None  # gaming backends in gaming mode; None = all of them


@dataclass(frozen=True)
class RuleSet:
    """The policy's program: rules, fallback order, and which backends gaming mode gates."""

    rules: tuple[Rule, ...]
    fallback: tuple[str, ...]
    gaming: frozenset[str]
    min_answer_tokens: int = MIN_ANSWER_TOKENS

    @classmethod
    def seed(cls, small: int, medium: int, min_answer_tokens: int = MIN_ANSWER_TOKENS) -> RuleSet:
        return cls(seed_rules(small, medium), SEED_FALLBACK, frozenset({"3090"}), min_answer_tokens)


@dataclass(frozen=True)
class Decision:
    backend: str | None
    reason: str
    candidates: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    too_long: bool = False  # no configured backend's window could ever hold the prompt

    def why_none(self) -> str:
        parts = [f"{name}: {why}" for name, why in self.skipped.items()]
        return "no backend can serve this request (" + "; ".join(parts) + ")"


def is_complex(last_user_text: str, message_count: int, has_tools: bool) -> bool:
    """The documented complex-task heuristic; pure and deterministic."""
    return has_tools or message_count >= COMPLEX_MIN_MESSAGES or bool(
        COMPLEX_KEYWORDS.search(last_user_text[:20_000]))


def holds(when: When, f: Features) -> bool:
    """Whether every condition of `when` holds for the request."""
    return ((when.tokens_below is None or f.estimated_tokens < when.tokens_below)
            and (when.tokens_at_least is None or f.estimated_tokens >= when.tokens_at_least)
            and (when.gaming_mode is None or when.gaming_mode == f.gaming_mode)
            and (when.force_big is None or when.force_big == f.force_big)
            and (when.tools is None or when.tools == f.tools)
            and (when.complex is None or when.complex == f.complex_task)
            and (when.source is None or when.source == f.source)
            and (when.client is None or fnmatch.fnmatchcase(f.client or "", when.client)))


def decide(features: Features, backends: dict[str, BackendView], rules: RuleSet | int,
           medium_threshold: int | None = None) -> Decision:
    """Apply the rules in order. Pure: same inputs, same decision.

    `rules` is a RuleSet; for the seed's rules, pass the small and medium thresholds instead.
    """
    if not isinstance(rules, RuleSet):
        assert medium_threshold is not None
        rules = RuleSet.seed(rules, medium_threshold)
    f = features
    answer = min(f.max_tokens, rules.min_answer_tokens) if f.max_tokens else rules.min_answer_tokens
    needed = f.estimated_tokens + answer
    skipped: dict[str, str] = {}
    verdicts: dict[str, bool] = {}

    def gated(name: str) -> bool:
        return (name in rules.gaming and f.gaming_mode and not f.force_big
                and (f.gamed is None or name in f.gamed))

    def usable(name: str) -> bool:
        verdict = verdicts.get(name)
        if verdict is None:
            why = _unusable(backends.get(name), name, f, needed, gated(name))
            if why:
                skipped.setdefault(name, why)
            verdict = verdicts[name] = why is None
        return verdict

    primary, reason, rest = _choose(f, backends, rules, usable, gated)
    if primary is None:
        fits = any(v.present and (v.context_window is None or needed <= v.context_window)
                   for v in backends.values())
        return Decision(None, reason, (), skipped, too_long=bool(backends) and not fits)
    order: list[str] = [primary]
    for name in (*rest, *rules.fallback):
        view = backends.get(name)
        if name not in order and view is not None and not view.explicit_only and usable(name):
            order.append(name)
    return Decision(primary, reason, tuple(order), skipped)


def _choose(f: Features, backends: dict[str, BackendView], rules: RuleSet,
            usable: _Usable, gated: _Usable) -> tuple[str | None, str, tuple[str, ...]]:
    """The chosen backend, the reason, and the rule's other candidates."""
    if f.target is not None and not gated(f.target):
        if usable(f.target):
            return f.target, "explicit_model", ()
        return _fallback(rules, backends, usable)
    for rule in rules.rules:
        if not holds(rule.when, f):
            continue
        for index, name in enumerate(rule.to):
            if usable(name):
                return name, rule.reason, rule.to[index + 1:]
    return _fallback(rules, backends, usable)


def _fallback(rules: RuleSet, backends: dict[str, BackendView],
              usable: _Usable) -> tuple[str | None, str, tuple[str, ...]]:
    for name in rules.fallback:
        view = backends.get(name)
        if (view is None or not view.explicit_only) and usable(name):
            return name, "fallback", ()
    return None, "fallback", ()


def _unusable(view: BackendView | None, name: str, f: Features, needed: int,
              gated: bool) -> str | None:
    if view is None or not view.present:
        return "not configured"
    if not view.healthy:
        return "down"
    if gated:
        return GATED
    if f.tools and not view.client_tools:
        return NO_TOOLS
    if view.context_window is not None and needed > view.context_window:
        return f"context window {view.context_window} < {needed} tokens needed"
    return None

