"""Typed settings for the inference agent, built once from the environment.

Nothing else in `inference` reads `os.environ`: `Settings.from_env()` runs at start and the object
is passed down. A bad value raises `SettingsError` whose message names the variable.

| variable | default | meaning |
| --- | --- | --- |
| `INFERENCE_HOST` | `127.0.0.1` | bind address |
| `INFERENCE_PORT` | `8001` | bind port |
| `INFERENCE_CONFIG` | `rtx3070-8gb` | a TOML model config path, or a bundled profile name |
| `IDLE_SHUTDOWN_MINUTES` | `10` | stop a model after this long without requests; `0` never |
| `INFERENCE_STATE_DIR` | `data/inference` | persisted gaming mode and vLLM logs |
| `START_TIMEOUT` | `600` | seconds vLLM may take to answer `/health` |
| `STOP_GRACE` | `15` | seconds between SIGTERM and SIGKILL |
| `STREAM_KEEPALIVE` | `5` | seconds between `: model …` comments while a stream waits |
| `LOG_LEVEL` | `INFO` | Python logging level |
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class SettingsError(ValueError):
    """An environment variable is malformed; the message names it."""


def _float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a port number, got {raw!r}") from None
    if not 0 <= value <= 65535:
        raise SettingsError(f"{name} must be between 0 and 65535, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the agent process needs to know, immutable after start."""

    host: str = "127.0.0.1"
    port: int = 8001
    config: str = "rtx3070-8gb"
    idle_shutdown_minutes: float = 10.0
    state_dir: Path = Path("data/inference")
    start_timeout: float = 600.0
    stop_grace: float = 15.0
    # Half the router's default of 10: the agent's comment reaches the router before the
    # router's own keep-alive falls due, and well inside a 30-60 s proxy idle timeout.
    stream_keepalive: float = 5.0
    log_level: str = "INFO"

    @property
    def idle_shutdown_seconds(self) -> float:
        return self.idle_shutdown_minutes * 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from `env` (normally `os.environ`); raises `SettingsError`."""
        level = (env.get("LOG_LEVEL") or "INFO").strip().upper()
        if not isinstance(logging.getLevelName(level), int):
            raise SettingsError(f"LOG_LEVEL must be a logging level such as INFO, got {level!r}")
        host = (env.get("INFERENCE_HOST") or "127.0.0.1").strip()
        config = (env.get("INFERENCE_CONFIG") or "rtx3070-8gb").strip()
        state_dir = Path(env.get("INFERENCE_STATE_DIR") or "data/inference").expanduser()
        return cls(
            host=host,
            port=_port(env, "INFERENCE_PORT", 8001),
            config=config,
            idle_shutdown_minutes=_float(env, "IDLE_SHUTDOWN_MINUTES", 10.0, 0.0),
            state_dir=state_dir,
            start_timeout=_float(env, "START_TIMEOUT", 600.0, 0.1),
            stop_grace=_float(env, "STOP_GRACE", 15.0, 0.0),
            stream_keepalive=_float(env, "STREAM_KEEPALIVE", 5.0, 0.05),
            log_level=level,
        )
