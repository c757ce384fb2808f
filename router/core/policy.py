"""The routing policy: a pure function from request features and backend state to a decision.

No I/O happens here. Health, gaming mode, context windows and the token estimate come in as
values, so every rule of SPEC.md can be checked with a table. Rules, in order:

1. explicit 3090 alias: gaming mode on and no force-big -> 3070 (gaming_mode), else 3090
2. explicit opencode / 3070 alias (or a model id a backend serves) -> that backend (explicit_model)
3. automatic, gaming mode on and no force-big -> 3070 (gaming_mode)
4. force-big and 3090 usable -> 3090 (force_big)
5. tokens < SMALL_TOKEN_THRESHOLD -> 3070 (small_request)
6. tokens < MEDIUM_TOKEN_THRESHOLD and 3090 usable -> 3090 (medium_request)
7. tokens >= MEDIUM_TOKEN_THRESHOLD -> opencode (long_context); complex task -> opencode (complex_task)
8. otherwise -> 3070 (fallback)

A backend that is absent, unhealthy, gated (3090 in gaming mode without force-big) or whose
context window cannot hold the prompt plus `max_tokens` is skipped: the next choice is taken and
the reason becomes `fallback`. The candidates after the chosen one are the fallback order used
when the chosen backend fails before the first byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

FALLBACK_ORDER = ("3070", "3090", "opencode")

# Complex-task heuristic (deterministic): the request asks for structured tool use, or its last
# user message asks for deep work in so many words, or the conversation is long.
COMPLEX_KEYWORDS = re.compile(
    r"\b(refactor|architect(?:ure)?|design (?:a|an|the)|step[- ]by[- ]step|prove|proof|"
    r"analy[sz]e|debug|root cause|implement|migrat(?:e|ion)|optimi[sz]e|security review)\b",
    re.IGNORECASE,
)
COMPLEX_MIN_MESSAGES = 16


@dataclass(frozen=True)
class BackendView:
    """What the policy knows about one backend at decision time."""

    name: str
    present: bool = True
    healthy: bool = True
    context_window: int | None = None  # None = unknown, assume it fits
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class Features:
    """What the policy knows about one request."""

    target: str | None  # None = automatic; else a backend name
    estimated_tokens: int
    max_tokens: int = 0
    force_big: bool = False
    complex_task: bool = False
    gaming_mode: bool = False


@dataclass(frozen=True)
class Decision:
    backend: str | None
    reason: str
    candidates: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)

    def why_none(self) -> str:
        parts = [f"{name}: {why}" for name, why in self.skipped.items()]
        return "no backend can serve this request (" + "; ".join(parts) + ")"


def is_complex(last_user_text: str, message_count: int, has_tools: bool) -> bool:
    """The documented complex-task heuristic; pure and deterministic."""
    return has_tools or message_count >= COMPLEX_MIN_MESSAGES or bool(
        COMPLEX_KEYWORDS.search(last_user_text[:20_000]))


def decide(features: Features, backends: dict[str, BackendView],
           small_threshold: int, medium_threshold: int) -> Decision:
    """Apply the rules in order. Pure: same inputs, same decision."""
    gated_3090 = features.gaming_mode and not features.force_big
    skipped: dict[str, str] = {}

    def usable(name: str) -> bool:
        view = backends.get(name)
        if view is None or not view.present:
            skipped.setdefault(name, "not configured")
            return False
        if not view.healthy:
            skipped.setdefault(name, "down")
            return False
        if name == "3090" and gated_3090:
            skipped.setdefault(name, "gated by gaming mode (force-big only)")
            return False
        needed = features.estimated_tokens + max(features.max_tokens, 1)
        if view.context_window is not None and needed > view.context_window:
            skipped.setdefault(
                name, f"context window {view.context_window} < {needed} tokens needed")
            return False
        return True

    primary, reason = _rule(features, small_threshold, medium_threshold, gated_3090, usable)
    if primary is not None and not usable(primary):
        primary, reason = None, "fallback"
    rest = tuple(name for name in FALLBACK_ORDER if name != primary and usable(name))
    if primary is None:
        if not rest:
            return Decision(None, reason, (), skipped)
        primary, rest = rest[0], rest[1:]
    return Decision(primary, reason, (primary, *rest), skipped)


def _rule(f: Features, small: int, medium: int, gated_3090: bool,
          usable: Callable[[str], bool]) -> tuple[str | None, str]:
    if f.target == "3090":
        return ("3070", "gaming_mode") if gated_3090 else ("3090", "explicit_model")
    if f.target in ("opencode", "3070"):
        return f.target, "explicit_model"
    if gated_3090:
        return "3070", "gaming_mode"
    if f.force_big and usable("3090"):
        return "3090", "force_big"
    if f.estimated_tokens < small:
        return "3070", "small_request"
    if f.estimated_tokens < medium and usable("3090"):
        return "3090", "medium_request"
    if f.estimated_tokens >= medium:
        return "opencode", "long_context"
    if f.complex_task:
        return "opencode", "complex_task"
    return "3070", "fallback"
