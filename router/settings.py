"""Typed settings for the router process, built once from the environment (and an optional TOML).

Nothing else in the router reads `os.environ`: build a `Settings` with `Settings.from_env()` at
start and pass it down. A bad value raises `ConfigError` whose message names the variable.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

BACKENDS = ("3070", "3090", "opencode")

# Alias -> target. A target is a backend name, optionally with a model hint after a colon:
# "opencode:claude" means "the opencode backend, the model configured for Claude".
DEFAULT_ALIASES: dict[str, str] = {
    "small": "3070",
    "fast": "3070",
    "3070": "3070",
    "medium": "3090",
    "big": "3090",
    "gaming-pc": "3090",
    "3090": "3090",
    "opencode": "opencode:glm",
    "glm": "opencode:glm",
    "opencode-glm": "opencode:glm",
    "claude": "opencode:claude",
    "opencode-claude": "opencode:claude",
}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def redact_url(url: str) -> str:
    """`url` with any `user:password@` replaced by `***@`, for status pages, errors and logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def _url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL such as http://127.0.0.1:8001, got {value!r}")
    return value.rstrip("/")


def _int(name: str, value: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    return number


def _float(name: str, value: str, minimum: float = 0.0) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    return number


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _api_keys(name: str, value: str) -> dict[str, str]:
    """Parse `name:key,name:key` into {key: name}."""
    keys: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key_name, sep, key = item.partition(":")
        if not sep or not key_name or not key:
            raise ConfigError(f"{name} entries must look like name:key, got {item!r}")
        if key in keys:
            raise ConfigError(f"{name} lists the same key twice (names {keys[key]!r} and {key_name!r})")
        keys[key] = key_name
    return keys


def _aliases(name: str, value: str) -> dict[str, str]:
    try:
        extra = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} must be a JSON object, e.g. {{\"coder\": \"3090\"}}: {exc}") from None
    if not isinstance(extra, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
    ):
        raise ConfigError(f"{name} must be a JSON object of strings to strings")
    merged = dict(DEFAULT_ALIASES)
    for alias, target in extra.items():
        backend = target.partition(":")[0]
        if backend not in BACKENDS and target != "auto":
            raise ConfigError(
                f"{name}: alias {alias!r} points at {target!r}; targets are "
                f"{', '.join(BACKENDS)} (optionally backend:model) or auto"
            )
        merged[alias] = target
    return merged


@dataclass(frozen=True)
class Settings:
    """Everything the router process is configured with. Immutable; safe to share."""

    local_3070_url: str | None = "http://127.0.0.1:8001"
    gaming_pc_url: str | None = None
    opencode_url: str | None = None
    opencode_api: str = "auto"  # auto | opencode | openai
    opencode_glm_model: str = "zai-coding-plan/glm-4.6"
    opencode_claude_model: str = "anthropic/claude-sonnet-4-5"
    opencode_api_key: str | None = None
    opencode_rpm: int = 0  # 0 = unlimited
    opencode_concurrency: int = 0
    small_token_threshold: int = 2000
    medium_token_threshold: int = 16000
    gaming_mode_url: str | None = None
    log_level: str = "INFO"
    database_url: str = "sqlite:///data/router.db"
    api_keys: dict[str, str] = field(default_factory=dict)  # key -> name
    admin_token: str | None = None
    model_aliases: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    host: str = "127.0.0.1"
    port: int = 8000
    health_check_interval: float = 15.0
    connect_timeout: float = 5.0
    read_timeout: float = 300.0
    first_byte_timeout: float = 30.0
    stream_keepalive: float = 10.0
    min_answer_tokens: int = 1024
    anthropic_api_key: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    image_token_budget: int = 765
    complex_task_min_tokens: int = 6000
    unhealthy_after: int = 2
    healthy_after: int = 1
    shutdown_grace: float = 30.0
    event_loop: str = "auto"  # auto (uvloop when installed) | uvloop | asyncio
    rate_limit_rpm: int = 0  # per API key, 0 = unlimited
    rejected_rows_per_second: float = 50.0  # decision rows kept for requests refused before routing
    mattermost_url: str | None = None
    mattermost_token: str | None = None
    mattermost_team: str | None = None
    mattermost_channel: str | None = None
    mattermost_admins: frozenset[str] = frozenset()
    mattermost_slash_token: str | None = None
    mattermost_verify_tls: bool = True
    mattermost_ca_file: str | None = None
    daily_report_time: str = "08:00"
    # What the settings were built from, for a reload (never shown: the environment has secrets).
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    overrides: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def resolved_gaming_mode_url(self) -> str | None:
        if self.gaming_mode_url:
            return self.gaming_mode_url
        return f"{self.gaming_pc_url}/status" if self.gaming_pc_url else None

    @property
    def bot_enabled(self) -> bool:
        return bool(self.mattermost_url and self.mattermost_token)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `environ` (default: os.environ), over an optional `ROUTER_CONFIG` TOML.

        Raises ConfigError naming the variable when a value is malformed.
        """
        env = dict(os.environ if environ is None else environ)
        merged: dict[str, str] = {}
        config_path = env.get("ROUTER_CONFIG")
        if config_path:
            merged.update(_read_toml(config_path))
        merged.update({k: v for k, v in env.items() if k in _PARSERS})
        values: dict[str, Any] = {}
        for env_name, value in merged.items():
            attr, parse = _PARSERS[env_name]
            values[attr] = parse(env_name, value)
        if "mattermost_ca_file" not in values:
            # Private CAs: the bot honours the standard variables for REST and websocket alike.
            ca_file = env.get("REQUESTS_CA_BUNDLE") or env.get("SSL_CERT_FILE")
            if ca_file:
                values["mattermost_ca_file"] = ca_file
        values.update(overrides)
        settings = cls(**values, environ=env, overrides=dict(overrides))
        settings._validate()
        return settings

    def _validate(self) -> None:
        if self.small_token_threshold >= self.medium_token_threshold:
            raise ConfigError(
                "SMALL_TOKEN_THRESHOLD must be below MEDIUM_TOKEN_THRESHOLD "
                f"({self.small_token_threshold} >= {self.medium_token_threshold})"
            )
        if self.event_loop not in ("auto", "uvloop", "asyncio"):
            raise ConfigError(f"EVENT_LOOP must be auto, uvloop or asyncio, got {self.event_loop!r}")
        if self.opencode_api not in ("auto", "opencode", "openai"):
            raise ConfigError(f"OPENCODE_API must be opencode, openai or auto, got {self.opencode_api!r}")
        if not self.database_url.startswith("sqlite:///"):
            raise ConfigError(f"DATABASE_URL must be a sqlite:/// URL, got {self.database_url!r}")
        if self.log_level.upper() not in logging.getLevelNamesMapping():
            raise ConfigError(f"LOG_LEVEL must be a logging level such as INFO, got {self.log_level!r}")
        if self.opencode_url and self.opencode_api_key and urlsplit(self.opencode_url).username:
            raise ConfigError("OPENCODE_URL carries credentials (user:pass@) and OPENCODE_API_KEY is "
                              "set too; use one of them")
        if self.mattermost_url and not self.mattermost_token:
            raise ConfigError("MATTERMOST_TOKEN is required when MATTERMOST_URL is set")
        hour, _, minute = self.daily_report_time.partition(":")
        if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
            raise ConfigError(f"DAILY_REPORT_TIME must be HH:MM, got {self.daily_report_time!r}")

    def restart_fields(self, running: Settings) -> list[str]:
        """Settings that differ from `running` but apply only after a restart."""
        return [f.name for f in fields(self) if f.name not in LIVE_FIELDS and f.compare
                and getattr(self, f.name) != getattr(running, f.name)]

    def with_live(self, new: Settings) -> Settings:
        """These settings with the live-reloadable ones taken from `new`."""
        return dataclasses.replace(self, **{name: getattr(new, name) for name in LIVE_FIELDS})

    def public(self) -> dict[str, Any]:
        """Settings safe to show (no keys or tokens)."""
        hidden = {"api_keys", "admin_token", "mattermost_token", "mattermost_slash_token",
                  "opencode_api_key", "anthropic_api_key", "environ", "overrides"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in hidden}


# Settings a reload applies to new requests; the others need a restart. The backend variables
# are read again through the topology.
LIVE_FIELDS = ("small_token_threshold", "medium_token_threshold", "complex_task_min_tokens",
               "image_token_budget", "min_answer_tokens", "first_byte_timeout", "stream_keepalive",
               "model_aliases", "local_3070_url", "gaming_pc_url", "gaming_mode_url", "opencode_url",
               "opencode_api", "opencode_glm_model", "opencode_claude_model", "opencode_api_key",
               "opencode_rpm", "opencode_concurrency", "anthropic_api_key")
TOPOLOGY_KEYS = frozenset({"backends", "aliases", "rules", "fallback"})  # router/config.py's


def _read_toml(path: str) -> dict[str, str]:
    """Router settings from the file: the `[router]` table, or (older files) top-level keys.

    The topology tables (`[backends]`, `[aliases]`, `[[rules]]`, `fallback`) are read by
    `router.config`; any other unknown key is an error naming the file and the key.
    """
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"ROUTER_CONFIG={path!r} cannot be read: {exc}") from None
    items: list[tuple[str, str, Any]] = []
    for key, value in data.items():
        if key in TOPOLOGY_KEYS:
            continue
        if key == "router":
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: [router] must be a table of settings")
            items += [("[router]", k, v) for k, v in value.items()]
        else:
            items.append(("(top level)", key, value))
    out: dict[str, str] = {}
    for table, key, value in items:
        name = key.upper()
        if name not in _PARSERS:
            raise ConfigError(f"{path}: {table} key {key!r} is not a router setting "
                              "(settings are the environment names in lower case)")
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            out[name] = json.dumps(value) if name == "MODEL_ALIASES" else ",".join(map(str, value))
        else:
            out[name] = str(value)
    return out


def _opt_url(name: str, value: str) -> str | None:
    return _url(name, value) if value.strip() else None


def _opt_str(_name: str, value: str) -> str | None:
    return value.strip() or None


def _str(_name: str, value: str) -> str:
    return value.strip()


def _names(_name: str, value: str) -> frozenset[str]:
    return frozenset(n.strip().lstrip("@") for n in value.split(",") if n.strip())


_PARSERS: dict[str, tuple[str, Any]] = {
    "LOCAL_3070_URL": ("local_3070_url", _opt_url),
    "GAMING_PC_URL": ("gaming_pc_url", _opt_url),
    "OPENCODE_URL": ("opencode_url", _opt_url),
    "OPENCODE_API": ("opencode_api", _str),
    "OPENCODE_GLM_MODEL": ("opencode_glm_model", _str),
    "OPENCODE_CLAUDE_MODEL": ("opencode_claude_model", _str),
    "OPENCODE_API_KEY": ("opencode_api_key", _opt_str),
    "OPENCODE_RPM": ("opencode_rpm", _int),
    "OPENCODE_CONCURRENCY": ("opencode_concurrency", _int),
    "SMALL_TOKEN_THRESHOLD": ("small_token_threshold", lambda n, v: _int(n, v, 1)),
    "MEDIUM_TOKEN_THRESHOLD": ("medium_token_threshold", lambda n, v: _int(n, v, 1)),
    "GAMING_MODE_URL": ("gaming_mode_url", _opt_url),
    "LOG_LEVEL": ("log_level", _str),
    "DATABASE_URL": ("database_url", _str),
    "ROUTER_API_KEYS": ("api_keys", _api_keys),
    "ROUTER_ADMIN_TOKEN": ("admin_token", _opt_str),
    "MODEL_ALIASES": ("model_aliases", _aliases),
    "ROUTER_HOST": ("host", _str),
    "ROUTER_PORT": ("port", lambda n, v: _int(n, v, 1)),
    "HEALTH_CHECK_INTERVAL": ("health_check_interval", lambda n, v: _float(n, v, 0.1)),
    "BACKEND_CONNECT_TIMEOUT": ("connect_timeout", lambda n, v: _float(n, v, 0.01)),
    "BACKEND_READ_TIMEOUT": ("read_timeout", lambda n, v: _float(n, v, 0.01)),
    "FIRST_BYTE_TIMEOUT": ("first_byte_timeout", lambda n, v: _float(n, v, 0.01)),
    "STREAM_KEEPALIVE": ("stream_keepalive", lambda n, v: _float(n, v, 0.05)),
    "MIN_ANSWER_TOKENS": ("min_answer_tokens", lambda n, v: _int(n, v, 1)),
    "ANTHROPIC_API_KEY": ("anthropic_api_key", _opt_str),
    "MAX_BODY_BYTES": ("max_body_bytes", lambda n, v: _int(n, v, 1024)),
    "IMAGE_TOKEN_BUDGET": ("image_token_budget", _int),
    "COMPLEX_TASK_MIN_TOKENS": ("complex_task_min_tokens", _int),
    "UNHEALTHY_AFTER": ("unhealthy_after", lambda n, v: _int(n, v, 1)),
    "HEALTHY_AFTER": ("healthy_after", lambda n, v: _int(n, v, 1)),
    "SHUTDOWN_GRACE": ("shutdown_grace", _float),
    "EVENT_LOOP": ("event_loop", _str),
    "ROUTER_RATE_LIMIT_RPM": ("rate_limit_rpm", _int),
    "REJECTED_ROWS_PER_SECOND": ("rejected_rows_per_second", lambda n, v: _float(n, v, 0.01)),
    "MATTERMOST_URL": ("mattermost_url", _opt_url),
    "MATTERMOST_TOKEN": ("mattermost_token", _opt_str),
    "MATTERMOST_TEAM": ("mattermost_team", _opt_str),
    "MATTERMOST_CHANNEL": ("mattermost_channel", _opt_str),
    "MATTERMOST_ADMINS": ("mattermost_admins", _names),
    "MATTERMOST_SLASH_TOKEN": ("mattermost_slash_token", _opt_str),
    "MATTERMOST_VERIFY_TLS": ("mattermost_verify_tls", _bool),
    "MATTERMOST_CA_FILE": ("mattermost_ca_file", _opt_str),
    "DAILY_REPORT_TIME": ("daily_report_time", _str),
}
