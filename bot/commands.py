"""The bot's command language: a command table with metadata and a pure parser.

Every trigger (an @mention, a direct message, the `/ai` slash command) carries the same words.
`parse(text)` turns them into one of:

* `Invocation(name, args)` — a command from `COMMANDS` whose arguments fit its grammar;
* `UsageError(spec, message)` — a short text (at most `USAGE_MAX_WORDS` words) that starts with a
  command word but does not fit it, e.g. `stats 30d`: the user gets the usage line, not a chat;
* `Empty()` — nothing left after the mention: the user gets help, never silence;
* `ChatPrompt(text)` — everything else, answered by a model.

`parse` is a pure function of its input: no I/O, no settings, never raises. `help_text()` is
generated from the same table, so help and parser cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "COMMANDS",
    "USAGE_MAX_WORDS",
    "ChatPrompt",
    "CommandSpec",
    "Empty",
    "Invocation",
    "Parsed",
    "UsageError",
    "help_text",
    "parse",
    "spec",
    "strip_mention",
]

USAGE_MAX_WORDS = 3
"""A text of at most this many words that starts with a command word but does not fit is a
usage error; a longer one is a chat prompt ("status of the migration plan, please")."""

STATS_WINDOWS = ("24h", "7d")

Args = tuple[str, ...]
Grammar = Callable[[list[str], str], Args | None]
"""(words after the command word, raw rest of the text) -> parsed args, or None if no fit."""


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One bot command and its metadata (help, permissions, how slow it may be)."""

    name: str
    usage: str
    help: str
    admin_only: bool
    slow: bool
    """True when the answer may take more than a couple of seconds (slash: use response_url)."""
    grammar: Grammar


@dataclass(frozen=True, slots=True)
class Invocation:
    name: str
    args: Args = ()

    @property
    def spec(self) -> CommandSpec:
        return spec(self.name)


@dataclass(frozen=True, slots=True)
class UsageError:
    name: str
    message: str


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    text: str


@dataclass(frozen=True, slots=True)
class Empty:
    pass


Parsed = Invocation | UsageError | ChatPrompt | Empty


# -- grammars ------------------------------------------------------------------------------------

def _none(words: list[str], _rest: str) -> Args | None:
    return () if not words else None


def _gaming(words: list[str], _rest: str) -> Args | None:
    lowered = [w.lower() for w in words]
    if lowered[:1] == ["mode"]:
        lowered = lowered[1:]
    if lowered in (["on"], ["off"], ["status"]):
        return (lowered[0],)
    if len(lowered) >= 2 and lowered[0] in ("on", "off"):  # one backend: `on pc`, `on Big PC`
        return (lowered[0], " ".join(lowered[1:]))
    return None


def _one_token(words: list[str], _rest: str) -> Args | None:
    return (words[0],) if len(words) == 1 else None


def _prompt(words: list[str], rest: str) -> Args | None:
    return (rest,) if words else None


def _stats(words: list[str], _rest: str) -> Args | None:
    if not words:
        return ("24h",)
    if len(words) == 1 and words[0].lower() in STATS_WINDOWS:
        return (words[0].lower(),)
    return None


def _load(words: list[str], _rest: str) -> Args | None:
    if len(words) == 1:
        return (words[0],)
    if len(words) == 3 and words[1].lower() == "on":
        return (words[0], words[2])
    return None


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("gaming", "gaming mode on|off [backend]",
                "Turn gaming mode on or off, on every gaming backend or one (admins only).",
                admin_only=True, slow=False, grammar=_gaming),
    CommandSpec("gaming status", "gaming status",
                "Gaming mode and whether each backend is available.",
                admin_only=False, slow=False, grammar=_none),
    CommandSpec("status", "status", "Backend health, models, latency and the decision log.",
                admin_only=False, slow=False, grammar=_none),
    CommandSpec("models", "models", "Models and aliases you can ask for, and this channel's model.",
                admin_only=False, slow=False, grammar=_none),
    CommandSpec("use", "use <model|auto>",
                "Set the model chat in this channel uses (admins only).",
                admin_only=True, slow=False, grammar=_one_token),
    CommandSpec("route", "route <prompt>",
                "Explain where a prompt would be routed, without sending it.",
                admin_only=False, slow=True, grammar=_prompt),
    CommandSpec("stats", "stats [24h|7d]",
                "Requests, tokens, p50 latency and fallbacks per backend.",
                admin_only=False, slow=False, grammar=_stats),
    CommandSpec("load", "load <model> [on <backend>]",
                "Start a model on a GPU host's inference agent (admins only).",
                admin_only=True, slow=True, grammar=_load),
    CommandSpec("stop", "stop <backend>",
                "Stop every model on a GPU host's inference agent (admins only).",
                admin_only=True, slow=True, grammar=_one_token),
    CommandSpec("reload", "reload", "Re-read the router's home-lab file (admins only).",
                admin_only=True, slow=True, grammar=_none),
    CommandSpec("help", "help", "This list.", admin_only=False, slow=False, grammar=_none),
)

_BY_NAME = {c.name: c for c in COMMANDS}


def spec(name: str) -> CommandSpec:
    """The spec of command `name`; raises KeyError for an unknown name."""
    return _BY_NAME[name]


# -- parsing -------------------------------------------------------------------------------------

_WORD = re.compile(r"\S+")


def strip_mention(text: str, bot_username: str) -> str:
    """`text` without the @mentions of the bot (anywhere), trimmed. Pure."""
    if bot_username:
        pattern = rf"(?<![\w.-])@{re.escape(bot_username)}(?![\w-])[:,]?"
        text = re.sub(pattern, " ", text, flags=re.IGNORECASE)
    return text.strip()


def parse(text: str) -> Parsed:
    """Classify `text` (already stripped of the bot mention). Pure; never raises."""
    stripped = text.strip()
    if not stripped:
        return Empty()
    first = _WORD.match(stripped)
    assert first is not None
    head = first.group().lower().lstrip("/")
    rest = stripped[first.end():].strip()
    words = rest.split()
    command = _BY_NAME.get(head) if head != "gaming status" else None
    if command is not None:
        args = command.grammar(words, rest)
        if args == ("status",) and command.name == "gaming":
            return Invocation("gaming status")
        if args is not None:
            return Invocation(command.name, args)
        if len(stripped.split()) <= USAGE_MAX_WORDS and "\n" not in stripped:
            return UsageError(command.name, f"Usage: `{command.usage}` — {command.help}")
    return ChatPrompt(stripped)


def format_invocation(invocation: Invocation) -> str:
    """Words that `parse` maps back to `invocation` (used by tests and help examples)."""
    if invocation.name == "gaming":
        return " ".join(("gaming mode", *invocation.args))
    if invocation.name == "load" and len(invocation.args) == 2:
        return f"load {invocation.args[0]} on {invocation.args[1]}"
    return " ".join((invocation.name, *invocation.args))


def help_text(trigger: str = "@bot") -> str:
    """Markdown help generated from `COMMANDS`; `trigger` is how users call the bot."""
    lines = [f"**Commands** (mention me, DM me, or use `/ai`; e.g. `{trigger} status`):", ""]
    for command in COMMANDS:
        lines.append(f"- `{command.usage}` — {command.help}")
    lines += ["", ("Anything else is a chat prompt: I answer in the thread, with the thread as "
                   "context, through the router (add `#force_big` to ask for the 3090).")]
    return "\n".join(lines)
