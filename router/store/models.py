"""SQLModel tables. Alembic owns the schema (migrations/); nothing here creates tables."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Decision(SQLModel, table=True):
    """One row for every routed request, errors included."""

    __tablename__ = "decisions"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    request_id: str = Field(index=True)
    source: str = "api"  # api | bot | slash
    client: str | None = None  # API key name or Mattermost user
    endpoint: str = "/v1/chat/completions"
    requested_model: str | None = None
    backend: str | None = None
    backend_model: str | None = None
    reason: str | None = None
    estimated_tokens: int | None = None
    gaming_mode: bool = False
    force_big: bool = False
    stream: bool = False
    fallback_attempts: int = 0
    status_code: int = 0
    error: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    candidates: str | None = None  # comma-separated, in the order they would be tried
    skipped: str | None = None  # JSON object: backend -> why it was skipped
    failures: str | None = None  # JSON array of {"backend", "error"}: attempts that failed
    max_tokens_clamped: int | None = None  # the max_tokens forwarded when it was lowered to fit


class GamingModeChange(SQLModel, table=True):
    """Every change of gaming mode, with who made it and how."""

    __tablename__ = "gaming_mode_changes"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    enabled: bool
    actor: str  # admin token, Mattermost user, "health-check" (read back from the PC)
    source: str  # admin | bot | slash | cli | observed
    applied: bool = True  # False when the gaming PC could not be reached
    backend: str | None = None  # the gaming backend; None in rows from before per-backend switches


class Setting(SQLModel, table=True):
    """Small key-value settings, e.g. `channel_model:<channel id>` for the bot."""

    __tablename__ = "settings"

    key: str = Field(primary_key=True)
    value: str
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str | None = None
