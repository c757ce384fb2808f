"""Typed records, configuration and errors of the Mattermost adapter (no driver import here).

The records are decoded from Mattermost API v4 JSON: REST objects (`Post.from_api`) and websocket
`posted` events, whose `data.post` and `data.mentions` are JSON *strings* (`PostedEvent.from_ws`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "BotUser",
    "Channel",
    "MattermostAuthError",
    "MattermostConfig",
    "MattermostConfigError",
    "MattermostError",
    "MattermostNotFound",
    "MattermostRequestError",
    "MattermostUnavailable",
    "Post",
    "PostedEvent",
    "User",
    "default_ca_file",
]


class MattermostError(Exception):
    """Base of every error raised by the Mattermost adapter."""


class MattermostConfigError(MattermostError, ValueError):
    """A Mattermost setting is invalid; the message names the setting."""


class MattermostAuthError(MattermostError):
    """Mattermost refused the token (HTTP 401/403 or a failed websocket challenge)."""


class MattermostNotFound(MattermostError):
    """Mattermost answered 404 for a user, channel, team or post."""


class MattermostRequestError(MattermostError):
    """Mattermost rejected a request or answered it with something unexpected."""


class MattermostUnavailable(MattermostError):
    """Mattermost could not be reached (refused, timed out, TLS failure)."""


def default_ca_file(environ: Mapping[str, str]) -> str | None:
    """The CA bundle named by `REQUESTS_CA_BUNDLE` or `SSL_CERT_FILE` in `environ`, if any."""
    return environ.get("REQUESTS_CA_BUNDLE") or environ.get("SSL_CERT_FILE") or None


@dataclass(frozen=True, slots=True)
class MattermostConfig:
    """What the adapter needs to reach one Mattermost server; built by the settings owner.

    `ca_file` is a PEM bundle used for both REST and websocket (pass `default_ca_file(environ)`
    to honour `REQUESTS_CA_BUNDLE` / `SSL_CERT_FILE`); `verify_tls=False` turns checking off.
    Timeouts and backoff are in seconds.
    """

    url: str
    token: str
    team: str = ""
    verify_tls: bool = True
    ca_file: str | None = None
    request_timeout: float = 30.0
    connect_timeout: float = 15.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    close_timeout: float = 5.0
    reconnect_initial: float = 1.0
    reconnect_max: float = 60.0
    handler_grace: float = 10.0
    max_message_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MattermostConfigError(
                f"MATTERMOST_URL must be an http:// or https:// URL, not {self.url!r}.")
        try:
            _ = parts.port
        except ValueError as exc:
            raise MattermostConfigError(
                f"MATTERMOST_URL has an invalid port: {self.url!r}.") from exc
        if not self.token:
            raise MattermostConfigError("MATTERMOST_TOKEN must not be empty.")
        for name in ("request_timeout", "connect_timeout", "ping_interval", "ping_timeout",
                     "close_timeout", "reconnect_initial", "reconnect_max"):
            if getattr(self, name) <= 0:
                raise MattermostConfigError(f"Mattermost setting {name} must be positive.")
        if self.handler_grace < 0:
            raise MattermostConfigError("Mattermost setting handler_grace must not be negative.")
        if self.reconnect_max < self.reconnect_initial:
            raise MattermostConfigError(
                "Mattermost setting reconnect_max must be at least reconnect_initial.")


@dataclass(frozen=True, slots=True)
class BotUser:
    """The account the adapter is logged in as."""

    id: str
    username: str


@dataclass(frozen=True, slots=True)
class User:
    """A Mattermost user; `username` has no leading @."""

    id: str
    username: str
    is_bot: bool = False

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> User:
        return cls(id=str(data["id"]), username=str(data["username"]),
                   is_bot=bool(data.get("is_bot", False)))


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel; `type` is `O` (open), `P` (private), `D` (direct) or `G` (group message)."""

    id: str
    name: str
    display_name: str
    type: str
    team_id: str = ""

    @property
    def is_direct(self) -> bool:
        return self.type == "D"

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Channel:
        return cls(id=str(data["id"]), name=str(data.get("name", "")),
                   display_name=str(data.get("display_name", "")), type=str(data.get("type", "")),
                   team_id=str(data.get("team_id") or ""))


@dataclass(frozen=True, slots=True)
class Post:
    """A post; `root_id` is empty for a thread's first post. Times are epoch milliseconds."""

    id: str
    channel_id: str
    user_id: str
    message: str
    root_id: str = ""
    create_at: int = 0
    update_at: int = 0
    type: str = ""
    props: Mapping[str, Any] = field(default_factory=dict)

    @property
    def thread_id(self) -> str:
        """The id to reply to so that the reply lands in this post's thread."""
        return self.root_id or self.id

    @property
    def from_bot(self) -> bool:
        """True when a bot account or integration wrote the post (`props.from_bot`)."""
        value = self.props.get("from_bot")
        return value is True or value == "true"

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Post:
        props = data.get("props")
        return cls(
            id=str(data["id"]), channel_id=str(data["channel_id"]),
            user_id=str(data.get("user_id", "")), message=str(data.get("message", "")),
            root_id=str(data.get("root_id") or ""), create_at=int(data.get("create_at") or 0),
            update_at=int(data.get("update_at") or 0), type=str(data.get("type") or ""),
            props=dict(props) if isinstance(props, Mapping) else {},
        )


@dataclass(frozen=True, slots=True)
class PostedEvent:
    """A websocket `posted` event: the new post and who/where it came from."""

    post: Post
    channel_type: str
    channel_name: str = ""
    channel_display_name: str = ""
    sender_name: str = ""
    team_id: str = ""
    mentions: tuple[str, ...] = ()

    @property
    def is_direct(self) -> bool:
        return self.channel_type == "D"

    def mentions_user(self, user_id: str) -> bool:
        return user_id in self.mentions

    @classmethod
    def from_ws(cls, data: Any) -> PostedEvent:
        """Decode `event.data`; raises ValueError/KeyError/TypeError on a malformed event."""
        if not isinstance(data, Mapping):
            raise TypeError("posted event data is not an object")
        raw_post = data["post"]
        post_obj = json.loads(raw_post) if isinstance(raw_post, (str, bytes)) else raw_post
        if not isinstance(post_obj, Mapping):
            raise TypeError("posted event data.post is not an object")
        raw_mentions = data.get("mentions") or "[]"
        mentions = (json.loads(raw_mentions) if isinstance(raw_mentions, (str, bytes))
                    else raw_mentions)
        if not isinstance(mentions, list):
            raise TypeError("posted event data.mentions is not a list")
        return cls(
            post=Post.from_api(post_obj),
            channel_type=str(data.get("channel_type", "")),
            channel_name=str(data.get("channel_name", "")),
            channel_display_name=str(data.get("channel_display_name", "")),
            sender_name=str(data.get("sender_name", "")),
            team_id=str(data.get("team_id") or ""),
            mentions=tuple(str(m) for m in mentions),
        )
