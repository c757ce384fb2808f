"""The home-lab topology: backends, aliases, routing rules and the fallback order.

`Topology` is what the policy and the registry are built from. It comes from the `ROUTER_CONFIG`
TOML file when that file has a `[backends]` table (`load_topology`), and otherwise from the
environment (`seed_topology`: the seed's 3070 / 3090 / opencode, plus `claude` when
`ANTHROPIC_API_KEY` is set), so a router with only the environment behaves exactly as before.

Parsing is strict: an unknown key, a wrong type, a rule naming a backend that does not exist or a
`${NAME}` that is not set raises `ConfigError` whose message names the file, the table and the key.
Secrets read through `${NAME}` live only in `BackendSpec.api_key`, which no repr, status page or
log shows.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from router.settings import DEFAULT_ALIASES, ConfigError, Settings

KINDS = ("openai", "agent", "opencode", "anthropic")
APIS = frozenset({"chat", "messages", "responses"})
SOURCES = frozenset({"api", "bot", "slash"})
ANTHROPIC_URL = "https://api.anthropic.com"
NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
BACKEND_ENV = ("LOCAL_3070_URL", "GAMING_PC_URL", "GAMING_MODE_URL", "OPENCODE_URL", "OPENCODE_API",
               "OPENCODE_API_KEY", "OPENCODE_RPM", "OPENCODE_CONCURRENCY", "ANTHROPIC_API_KEY")
SEED_LABELS = {"3070": "3070", "3090": "3090", "opencode": "OpenCode", "claude": "Claude"}


@dataclass(frozen=True)
class BackendSpec:
    """One configured backend. Immutable; `api_key` is never shown (repr=False)."""

    name: str
    kind: str
    url: str
    label: str
    gaming: bool = False
    explicit_only: bool = False
    models: tuple[str, ...] = ()
    context_window: int | None = None
    api_key: str | None = field(default=None, repr=False)
    rpm: int = 0
    concurrency: int = 0
    apis: frozenset[str] = frozenset({"chat"})
    defaults: Mapping[str, Any] = field(default_factory=dict)
    loading_status: bool = False
    model_hints: Mapping[str, str] = field(default_factory=dict)  # alias hint -> model id
    status_url: str | None = None  # where an agent's gaming mode is read (GAMING_MODE_URL)

    @property
    def client_tools(self) -> bool:
        """False for an OpenCode session: it cannot run the client's own tools."""
        return self.kind != "opencode"


@dataclass(frozen=True)
class When:
    """A rule's conditions; each one left as None is not checked."""

    tokens_below: int | None = None
    tokens_at_least: int | None = None
    gaming_mode: bool | None = None
    force_big: bool | None = None
    tools: bool | None = None
    complex: bool | None = None
    client: str | None = None  # API key name glob
    source: str | None = None

    def describe(self) -> str:
        parts = [f"{key}={value}" for key, value in self.__dict__.items() if value is not None]
        return ", ".join(parts) or "always"


@dataclass(frozen=True)
class Rule:
    when: When
    to: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Topology:
    """Everything routing needs to know about the lab. Immutable; swapped whole on reload."""

    backends: Mapping[str, BackendSpec]
    aliases: Mapping[str, str]  # exact alias -> "backend" or "backend:model" or "auto"
    globs: tuple[tuple[str, str], ...]  # (shell-style pattern, target), in file order
    rules: tuple[Rule, ...]
    fallback: tuple[str, ...]
    origin: str  # "environment" or the file's path

    @property
    def gaming_backends(self) -> tuple[str, ...]:
        return tuple(name for name, spec in self.backends.items() if spec.gaming)

    def gaming_hosts(self) -> dict[str, str]:
        """Gaming backend name -> its agent's base URL."""
        return {name: spec.url.removesuffix("/v1") for name, spec in self.backends.items()
                if spec.gaming}

    def label(self, name: str) -> str:
        spec = self.backends.get(name)
        return spec.label if spec else name

    def alias_target(self, model: str) -> str | None:
        """The target of an exact alias, else of the first glob that matches `model`."""
        target = self.aliases.get(model)
        if target is not None:
            return target
        for pattern, glob_target in self.globs:
            if fnmatch.fnmatchcase(model, pattern):
                return glob_target
        return None


def seed_rules(small: int, medium: int) -> tuple[Rule, ...]:
    """SPEC.md's routing rules 3-8 as a rule list (rules 1-2, explicit models, are not rules)."""
    return (
        Rule(When(gaming_mode=True, force_big=False), ("3070",), "gaming_mode"),
        Rule(When(force_big=True), ("3090",), "force_big"),
        Rule(When(tokens_below=small), ("3070",), "small_request"),
        Rule(When(tokens_at_least=small, tokens_below=medium), ("3090",), "medium_request"),
        Rule(When(tokens_at_least=medium), ("opencode",), "long_context"),
        Rule(When(complex=True), ("opencode",), "complex_task"),
    )


SEED_FALLBACK = ("3070", "3090", "opencode")


def seed_topology(settings: Settings, opencode_kind: str = "openai",
                  anthropic_api_key: str | None = None) -> Topology:
    """The seed's lab from the environment (`opencode_kind` is detected by the caller)."""
    backends: dict[str, BackendSpec] = {}
    if settings.local_3070_url:
        backends["3070"] = BackendSpec("3070", "agent", settings.local_3070_url, "3070")
    if settings.gaming_pc_url:
        backends["3090"] = BackendSpec("3090", "agent", settings.gaming_pc_url, "3090", gaming=True,
                                       status_url=settings.resolved_gaming_mode_url)
    if settings.opencode_url:
        backends["opencode"] = BackendSpec(
            "opencode", opencode_kind, settings.opencode_url, "OpenCode",
            api_key=settings.opencode_api_key, rpm=settings.opencode_rpm,
            concurrency=settings.opencode_concurrency,
            model_hints={"glm": settings.opencode_glm_model, "claude": settings.opencode_claude_model})
    aliases = dict(settings.model_aliases)
    if anthropic_api_key:
        backends["claude"] = BackendSpec("claude", "anthropic", ANTHROPIC_URL, "Claude",
                                         explicit_only=True, api_key=anthropic_api_key,
                                         apis=frozenset({"messages"}))
        if aliases.get("claude") == DEFAULT_ALIASES["claude"]:
            aliases["claude"] = "claude"
    globs = (("claude-*", "claude"),) if anthropic_api_key else ()
    return Topology(backends, aliases, globs,
                    seed_rules(settings.small_token_threshold, settings.medium_token_threshold),
                    SEED_FALLBACK, "environment")


def has_backends_table(path: str) -> bool:
    """Whether the file at `path` declares the topology (raises ConfigError if unreadable)."""
    return "backends" in _read(path)


def load_topology(path: str, settings: Settings, environ: Mapping[str, str]) -> Topology:
    """Parse the topology of the TOML file at `path`. Raises ConfigError naming file, table, key."""
    data = _read(path)
    where = _Where(path)
    raw_backends = data.get("backends")
    if not isinstance(raw_backends, dict) or not raw_backends:
        raise where.error("backends", None, "must be a table with at least one backend")
    backends = {name: _backend(where, name, spec, environ) for name, spec in raw_backends.items()}

    aliases = {k: v for k, v in DEFAULT_ALIASES.items()
               if v.partition(":")[0] in backends or v == "auto"}
    globs: list[tuple[str, str]] = []
    raw_aliases = data.get("aliases", {})
    if not isinstance(raw_aliases, dict):
        raise where.error("aliases", None, "must be a table of alias = \"backend[:model]\"")
    for alias, target in raw_aliases.items():
        if not isinstance(target, str) or not target:
            raise where.error("aliases", alias, "must be a string like \"3090\" or \"zai:glm-4.7\"")
        backend = target.partition(":")[0]
        if target != "auto" and backend not in backends:
            raise where.error("aliases", alias, f"points at unknown backend {backend!r} "
                              f"(backends: {', '.join(backends)})")
        if any(ch in alias for ch in "*?["):
            globs.append((alias, target))
        else:
            aliases[alias] = target

    rules = _rules(where, data.get("rules"), backends, settings)
    fallback = data.get("fallback", list(backends))
    if not isinstance(fallback, list) or not all(isinstance(n, str) for n in fallback):
        raise where.error("(top level)", "fallback", "must be an array of backend names")
    for name in fallback:
        if name not in backends:
            raise where.error("(top level)", "fallback", f"names unknown backend {name!r}")
    return Topology(backends, aliases, tuple(globs), rules, tuple(fallback), path)


def ignored_backend_env(environ: Mapping[str, str]) -> list[str]:
    """The backend variables that are set but ignored because the file declares the backends."""
    return [name for name in BACKEND_ENV if environ.get(name)]


# -- parsing -------------------------------------------------------------------------------------

BACKEND_KEYS = frozenset({"kind", "url", "label", "gaming", "explicit_only", "models",
                          "context_window", "api_key", "rpm", "concurrency", "apis", "defaults",
                          "loading_status", "model_hints", "status_url"})
WHEN_TYPES: dict[str, type] = {"tokens_below": int, "tokens_at_least": int, "gaming_mode": bool,
                               "force_big": bool, "tools": bool, "complex": bool, "client": str,
                               "source": str}


@dataclass(frozen=True)
class _Where:
    path: str

    def error(self, table: str, key: str | None, problem: str) -> ConfigError:
        at = f"[{table}]" + (f" key {key!r}" if key else "")
        return ConfigError(f"{self.path}: {at} {problem}")


def _read(path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _backend(where: _Where, name: str, raw: Any, environ: Mapping[str, str]) -> BackendSpec:
    table = f"backends.{name}"
    if not NAME.match(name):
        raise where.error(table, None, "backend names use lower-case letters, digits and '-'")
    if not isinstance(raw, dict):
        raise where.error(table, None, "must be a table")
    for key in raw:
        if key not in BACKEND_KEYS:
            raise where.error(table, key, f"is not a backend key (known: {', '.join(sorted(BACKEND_KEYS))})")

    def typed(key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = raw.get(key, default)
        if value is not default and (not isinstance(value, kind) or
                                     (kind is int and isinstance(value, bool))):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise where.error(table, key, f"must be {_article(names)}, got {value!r}")
        return value

    kind = typed("kind", str, None)
    if kind not in KINDS:
        raise where.error(table, "kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    url = typed("url", str, ANTHROPIC_URL if kind == "anthropic" else None)
    if url is None:
        raise where.error(table, "url", "is required")
    url = _expand(where, table, "url", url, environ)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise where.error(table, "url", f"must be an http(s) URL, got {url!r}")
    api_key = typed("api_key", str, None)
    if api_key is not None:
        api_key = _expand(where, table, "api_key", api_key, environ) or None
    if kind == "anthropic" and not api_key:
        raise where.error(table, "api_key", "is required for kind \"anthropic\" "
                          "(e.g. api_key = \"${ANTHROPIC_API_KEY}\")")
    gaming = typed("gaming", bool, False)
    if gaming and kind != "agent":
        raise where.error(table, "gaming", "is only for kind \"agent\" (the host carries the switch)")
    models = typed("models", list, [])
    if not all(isinstance(m, str) and m for m in models):
        raise where.error(table, "models", "must be an array of model ids")
    window = typed("context_window", int, None)
    if window is not None and window < 1:
        raise where.error(table, "context_window", "must be a positive number of tokens")
    limits = {key: typed(key, int, 0) for key in ("rpm", "concurrency")}
    for key, value in limits.items():
        if value < 0:
            raise where.error(table, key, "must be 0 (unlimited) or more")
    default_apis = ["messages"] if kind == "anthropic" else ["chat"]
    apis = typed("apis", list, default_apis)
    unknown = [a for a in apis if a not in APIS]
    if unknown or not apis:
        raise where.error(table, "apis", f"must list some of {', '.join(sorted(APIS))}, got {apis!r}")
    defaults = typed("defaults", dict, {})
    hints = typed("model_hints", dict, {})
    if not all(isinstance(v, str) for v in hints.values()):
        raise where.error(table, "model_hints", "must map alias hints to model ids (strings)")
    status_url = typed("status_url", str, None)
    if status_url is None and kind == "agent":
        status_url = url.rstrip("/").removesuffix("/v1") + "/status"
    return BackendSpec(
        name=name, kind=kind, url=url.rstrip("/"), label=typed("label", str, name), gaming=gaming,
        explicit_only=typed("explicit_only", bool, False), models=tuple(models),
        context_window=window, api_key=api_key, rpm=limits["rpm"],
        concurrency=limits["concurrency"], apis=frozenset(apis), defaults=dict(defaults),
        loading_status=typed("loading_status", bool, False), model_hints=dict(hints),
        status_url=status_url)


def _rules(where: _Where, raw: Any, backends: Mapping[str, BackendSpec],
           settings: Settings) -> tuple[Rule, ...]:
    if raw is None:
        return tuple(rule for rule in seed_rules(settings.small_token_threshold,
                                                 settings.medium_token_threshold)
                     if all(name in backends for name in rule.to))
    if not isinstance(raw, list):
        raise where.error("rules", None, "must be an array of tables ([[rules]])")
    rules = []
    for index, item in enumerate(raw):
        table = f"rules[{index}]"
        if not isinstance(item, dict):
            raise where.error(table, None, "must be a table")
        for key in item:
            if key not in ("when", "to", "reason"):
                raise where.error(table, key, "is not a rule key (known: when, to, reason)")
        when = item.get("when", {})
        if not isinstance(when, dict):
            raise where.error(table, "when", "must be an inline table of conditions")
        for key, value in when.items():
            expected = WHEN_TYPES.get(key)
            if expected is None:
                raise where.error(table, f"when.{key}", "is not a condition (known: "
                                  f"{', '.join(WHEN_TYPES)})")
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise where.error(table, f"when.{key}", f"must be {_article(expected.__name__)}")
        if "source" in when and when["source"] not in SOURCES:
            raise where.error(table, "when.source", f"must be one of {', '.join(sorted(SOURCES))}")
        to = item.get("to")
        if isinstance(to, str):
            to = [to]
        if not isinstance(to, list) or not to or not all(isinstance(n, str) for n in to):
            raise where.error(table, "to", "must be a backend name or an array of them")
        for name in to:
            if name not in backends:
                raise where.error(table, "to", f"names unknown backend {name!r}")
        reason = item.get("reason", "rule")
        if not isinstance(reason, str) or not NAME.match(reason.replace("_", "-")):
            raise where.error(table, "reason", "must be a short code like \"gaming_mode\"")
        rules.append(Rule(When(**when), tuple(to), reason))
    return tuple(rules)


def _expand(where: _Where, table: str, key: str, value: str, environ: Mapping[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise where.error(table, key, f"uses ${{{name}}}, which is not set in the environment")
        return environ[name]

    return ENV_REF.sub(sub, value)


def _article(noun: str) -> str:
    noun = {"int": "an integer", "bool": "true or false", "str": "a string", "list": "an array",
            "dict": "a table"}.get(noun, noun)
    return noun
