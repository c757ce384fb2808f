"""Async Mattermost adapter: the only module in the project that imports mattermostdriver.

`MattermostAdapter` wraps mattermostdriver 7.3.2's blocking `Driver` behind a narrow, typed,
asyncio interface. Faults of the driver that this module works around:

* every REST call of the driver is blocking `requests`; here each one runs in
  `asyncio.to_thread`, so the event loop never blocks;
* `Driver.init_websocket()` calls `run_until_complete` and cannot run inside a running loop, its
  `wss` SSL context is a *server* context (`Purpose.CLIENT_AUTH`), its handlers run inside its
  receive timeout (and are cancelled with it), and `disconnect()` does not stop its retry loop.
  This module therefore runs its own websocket loop on the `websockets` library (the driver's own
  dependency), speaking the same `authentication_challenge` protocol, with a client TLS context,
  keepalive pings, capped exponential backoff and a clean `close()`;
* `Client.get()` returns the raw `requests.Response` unless `Content-Type` is exactly
  `application/json`; `_decode()` accepts both.

The typed records returned here (`Post`, `Channel`, `User`, `PostedEvent`) and the exception tree
live in `bot.mattermost_types`, which does not import the driver.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests
import urllib3
import websockets
from mattermostdriver import Driver
from mattermostdriver import exceptions as mm_exc
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from bot.mattermost_types import (
    BotUser,
    Channel,
    MattermostAuthError,
    MattermostConfig,
    MattermostError,
    MattermostNotFound,
    MattermostRequestError,
    MattermostUnavailable,
    Post,
    PostedEvent,
    User,
)

__all__ = [
    "BotUser",
    "Channel",
    "MattermostAdapter",
    "MattermostAuthError",
    "MattermostConfig",
    "MattermostError",
    "MattermostNotFound",
    "MattermostRequestError",
    "MattermostUnavailable",
    "Post",
    "PostedEvent",
    "PostedHandler",
    "User",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
PostedHandler = Callable[[PostedEvent], Coroutine[Any, Any, None]]
"""A coroutine function called once per `posted` event, each call in its own task."""


def _decode(result: Any, what: str) -> Any:
    """JSON of a driver result (a raw `requests.Response` when Content-Type is not exact)."""
    if isinstance(result, requests.Response):
        try:
            return result.json()
        except ValueError as exc:
            raise MattermostRequestError(
                f"Mattermost answered {what} with a non-JSON body.") from exc
    return result


def _expect_dict(result: Any, what: str) -> dict[str, Any]:
    data = _decode(result, what)
    if not isinstance(data, dict):
        raise MattermostRequestError(f"Mattermost answered {what} with {type(data).__name__}, "
                                     "not a JSON object.")
    return data


class MattermostAdapter:
    """Typed async access to one Mattermost server as one bot account.

    Concurrency: every REST method may be called concurrently from any task of the loop (each runs
    in a worker thread; the driver keeps no per-request state). `listen()` may run once at a time.
    Nothing blocks the event loop. REST methods raise `MattermostError` subclasses only.
    """

    def __init__(self, config: MattermostConfig) -> None:
        self._config = config
        parts = urlsplit(config.url)
        self._https = parts.scheme == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if self._https else 80)
        basepath = parts.path.rstrip("/") + "/api/v4"
        if not config.verify_tls:
            log.warning("MATTERMOST_VERIFY_TLS=false: TLS certificates of %s are NOT verified.",
                        config.url)
            # We warn once above; urllib3 would otherwise warn on every single request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        verify: bool | str = (config.ca_file or True) if config.verify_tls else False
        self._driver = Driver({
            "scheme": parts.scheme,
            "url": f"[{host}]" if ":" in host else host,
            "port": port,
            "basepath": basepath,
            "verify": verify,
            "token": config.token,
            "request_timeout": config.request_timeout,
            "keepalive": False,
        })
        ws_host = f"[{host}]" if ":" in host else host
        self._ws_url = f"{'wss' if self._https else 'ws'}://{ws_host}:{port}{basepath}/websocket"
        self._bot: BotUser | None = None
        self._closing = asyncio.Event()
        self._connected = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._session_task: asyncio.Task[None] | None = None
        self._authenticated = False
        self._listening = False
        self._listen_done = asyncio.Event()
        self._listen_done.set()
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self.handler_failures = 0
        """How many handler tasks ended with an exception (each is logged with its traceback)."""
        self.drops = 0
        """How many websocket sessions ended or failed to open (each is followed by a retry)."""
        self.last_error = ""
        """Why the last websocket session ended, as logged."""

    # ------------------------------------------------------------------ REST

    @property
    def bot(self) -> BotUser:
        """The logged-in bot account; raises `MattermostError` before `connect()`."""
        if self._bot is None:
            raise MattermostError("The Mattermost adapter is not connected; call connect() first.")
        return self._bot

    async def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run one blocking driver call in a worker thread and map its errors to ours."""
        try:
            return await asyncio.to_thread(fn, *args)
        except (mm_exc.NoAccessTokenProvided, mm_exc.NotEnoughPermissions) as exc:
            raise MattermostAuthError(f"Mattermost refused {what}: {exc}.") from exc
        except mm_exc.ResourceNotFound as exc:
            raise MattermostNotFound(f"Mattermost found nothing for {what}: {exc}.") from exc
        except requests.HTTPError as exc:
            raise MattermostRequestError(f"Mattermost rejected {what}: {exc}.") from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise MattermostUnavailable(
                f"Mattermost at {self._config.url} is unreachable for {what}: {exc}.") from exc
        except requests.RequestException as exc:
            raise MattermostError(f"Mattermost request {what} failed: {exc}.") from exc

    async def connect(self) -> BotUser:
        """Check the token (`GET /users/me`) and remember who the bot is. Safe to call again."""
        me = _expect_dict(await self._call("login", self._driver.login), "login")
        if not me.get("id") or not me.get("username"):
            raise MattermostRequestError("Mattermost answered login without a user id or name.")
        self._bot = BotUser(id=str(me["id"]), username=str(me["username"]))
        log.info("Logged in to Mattermost at %s as @%s.", self._config.url, self._bot.username)
        return self._bot

    async def create_post(self, channel_id: str, message: str, root_id: str | None = None,
                          file_ids: Sequence[str] = ()) -> Post:
        """Post `message` in a channel, as a reply in thread `root_id` when given, with files
        uploaded by `upload_file` to the same channel attached (shown inline)."""
        body: dict[str, Any] = {"channel_id": channel_id, "message": message}
        if root_id:
            body["root_id"] = root_id
        if file_ids:
            body["file_ids"] = list(file_ids)
        result = await self._call("create post", self._driver.posts.create_post, body)
        return Post.from_api(_expect_dict(result, "create post"))

    async def upload_file(self, channel_id: str, filename: str, data: bytes,
                          content_type: str = "application/octet-stream") -> str:
        """Upload one file to a channel (`POST /files`) and return its id for `create_post`."""
        files = {"files": (filename, data, content_type)}
        result = _expect_dict(await self._call("upload file", self._driver.files.upload_file,
                                               channel_id, files), "upload file")
        infos = result.get("file_infos")
        if not isinstance(infos, list) or not infos or not isinstance(infos[0], dict) \
                or not infos[0].get("id"):
            raise MattermostRequestError("Mattermost answered the upload without a file id.")
        return str(infos[0]["id"])

    async def patch_post(self, post_id: str, message: str) -> Post:
        """Replace the message of one of the bot's posts (used to stream replies)."""
        result = await self._call("patch post", self._driver.posts.patch_post,
                                  quote(post_id, safe=""), {"message": message})
        return Post.from_api(_expect_dict(result, "patch post"))

    async def get_thread(self, post_id: str) -> list[Post]:
        """Every post of the thread holding `post_id`, oldest first."""
        data = _expect_dict(
            await self._call("get thread", self._driver.posts.get_thread, quote(post_id, safe="")),
            "get thread")
        raw_posts = data.get("posts") or {}
        if not isinstance(raw_posts, dict):
            raise MattermostRequestError("Mattermost answered get thread without a posts object.")
        posts = [Post.from_api(p) for p in raw_posts.values()]
        posts.sort(key=lambda p: (p.create_at, p.id))
        return posts

    async def send_typing(self, channel_id: str, parent_id: str | None = None) -> None:
        """Show "bot is typing…" in a channel (or thread) for a few seconds."""
        body = {"channel_id": channel_id, "parent_id": parent_id or ""}
        await self._call("send typing", self._driver.client.post,
                         f"/users/{quote(self.bot.id, safe='')}/typing", body)

    async def add_reaction(self, post_id: str, emoji: str) -> None:
        """React to a post with `emoji` (a name such as `eyes`, without colons)."""
        body = {"user_id": self.bot.id, "post_id": post_id, "emoji_name": emoji.strip(":")}
        await self._call("add reaction", self._driver.reactions.create_reaction, body)

    async def channel_by_name(self, team_name: str, channel_name: str) -> str:
        """The id of channel `channel_name` (its URL name, not display name) in team `team_name`."""
        result = await self._call(
            f"channel {team_name}/{channel_name}",
            self._driver.channels.get_channel_by_name_and_team_name,
            quote(team_name, safe=""), quote(channel_name, safe=""))
        return Channel.from_api(_expect_dict(result, "get channel by name")).id

    async def get_channel(self, channel_id: str) -> Channel:
        """One channel; `Channel.type` is `O`, `P`, `D` (direct) or `G` (group)."""
        result = await self._call("get channel", self._driver.channels.get_channel,
                                  quote(channel_id, safe=""))
        return Channel.from_api(_expect_dict(result, "get channel"))

    async def get_user(self, user_id: str) -> User:
        """One user by id (`User.username` has no leading @)."""
        result = await self._call("get user", self._driver.users.get_user,
                                  quote(user_id, safe=""))
        return User.from_api(_expect_dict(result, "get user"))

    # ------------------------------------------------------------- websocket

    @property
    def connected(self) -> bool:
        """True while an authenticated websocket session is open."""
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the websocket is authenticated; raises `TimeoutError` after `timeout`."""
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def listen(self, handler: PostedHandler) -> None:
        """Receive events until `close()`, reconnecting after every kind of drop.

        Each `posted` event becomes a `PostedEvent` and `handler(event)` runs in its own task
        (kept until done; an exception is logged and counted in `handler_failures`), so a slow
        handler never delays receiving. After a clean close, an abnormal close, a refused
        connection or a hung server (no pong within `ping_timeout`, no answer to the connect or
        the authentication challenge within `connect_timeout`), it waits `reconnect_initial`
        seconds, doubling up to `reconnect_max`; an authenticated session resets the delay.
        Returns after `close()`; the bot's own posts are delivered too (filter on `bot.id`).
        Cancelling `listen()` stops the websocket; `close()` also ends the handler tasks.
        """
        if self._listening:
            raise MattermostError("listen() is already running on this Mattermost adapter.")
        _ = self.bot  # raises before connect()
        self._listening = True
        self._listen_done.clear()
        cfg = self._config
        delay = cfg.reconnect_initial
        try:
            while not self._closing.is_set():
                session = asyncio.create_task(self._session(handler), name="mattermost-websocket")
                self._session_task = session
                self._authenticated = False
                try:
                    await session
                    reason = "was closed by the server"
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if self._closing.is_set() and not (current and current.cancelling()):
                        break  # close() cancelled the session, not our caller
                    session.cancel()
                    await asyncio.wait([session])
                    raise
                except MattermostAuthError as exc:
                    reason = f"authentication failed ({exc})"
                except (OSError, TimeoutError, websockets.exceptions.WebSocketException,
                        MattermostError) as exc:
                    reason = f"failed ({type(exc).__name__}: {exc})"
                except Exception as exc:  # a supervisor loop: log it loudly, then retry
                    reason = f"failed unexpectedly ({type(exc).__name__}: {exc})"
                    log.exception("Unexpected error in the Mattermost websocket session.")
                if self._closing.is_set():
                    break
                self.drops += 1
                self.last_error = reason
                if self._authenticated:
                    delay = cfg.reconnect_initial
                log.warning("Mattermost websocket %s; reconnecting in %.2fs.", reason, delay)
                try:
                    async with asyncio.timeout(delay):
                        await self._closing.wait()
                except TimeoutError:
                    pass
                delay = min(delay * 2, cfg.reconnect_max)
        finally:
            self._connected.clear()
            self._session_task = None
            self._listening = False
            self._listen_done.set()

    async def _session(self, handler: PostedHandler) -> None:
        """One websocket connection, until it closes; sets `_authenticated` after the hello."""
        cfg = self._config
        async with ws_connect(
            self._ws_url,
            ssl=self._ssl_context(),
            open_timeout=cfg.connect_timeout,
            ping_interval=cfg.ping_interval,
            ping_timeout=cfg.ping_timeout,
            close_timeout=cfg.close_timeout,
            max_size=cfg.max_message_bytes,
        ) as ws:
            self._ws = ws
            try:
                async with asyncio.timeout(cfg.connect_timeout):
                    await self._authenticate(ws, handler)
                self._authenticated = True
                self._connected.set()
                log.info("Mattermost websocket connected to %s.", self._ws_url)
                async for raw in ws:
                    self._dispatch(raw, handler)
            finally:
                self._connected.clear()
                self._ws = None

    async def _authenticate(self, ws: ClientConnection, handler: PostedHandler) -> None:
        """Send the token challenge; done when both the OK reply and the hello event arrived."""
        await ws.send(json.dumps({"seq": 1, "action": "authentication_challenge",
                                  "data": {"token": self._config.token}}))
        ok = hello = False
        while not (ok and hello):
            raw = await ws.recv()
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("seq_reply") == 1:
                if msg.get("status") != "OK":
                    raise MattermostAuthError(
                        f"Mattermost rejected the websocket token: {msg.get('error')}")
                ok = True
            elif msg.get("event") == "hello":
                hello = True
            else:
                self._dispatch(raw, handler)

    def _ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context (the driver's is a server one) honouring verify_tls / ca_file."""
        if not self._https:
            return None
        if not self._config.verify_tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        # cafile=None loads OpenSSL's defaults, which honour SSL_CERT_FILE / SSL_CERT_DIR.
        return ssl.create_default_context(cafile=self._config.ca_file)

    def _dispatch(self, raw: str | bytes, handler: PostedHandler) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            log.warning("Ignoring a Mattermost websocket frame that is not JSON.")
            return
        if not isinstance(msg, dict) or msg.get("event") != "posted":
            return
        try:
            event = PostedEvent.from_ws(msg.get("data"))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("Ignoring a malformed Mattermost posted event: %s", exc)
            return
        task = asyncio.create_task(handler(event), name=f"mattermost-post-{event.post.id}")
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        self._handler_tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.handler_failures += 1
            log.error("Mattermost event handler %s failed.", task.get_name(), exc_info=exc)

    @property
    def pending_handlers(self) -> int:
        """How many handler tasks are still running."""
        return len(self._handler_tasks)

    async def close(self, grace: float | None = None) -> None:
        """Stop listening and wait for `listen()` to return; idempotent.

        In-flight handler tasks get `grace` seconds (default `config.handler_grace`) to finish,
        then are cancelled and awaited, so no task of this adapter survives the call.
        """
        self._closing.set()
        ws = self._ws
        if ws is not None:
            await ws.close()
        session = self._session_task
        if session is not None and not session.done():
            session.cancel()
        await self._listen_done.wait()
        pending = set(self._handler_tasks)
        if pending:
            wait = self._config.handler_grace if grace is None else grace
            _done, pending = await asyncio.wait(pending, timeout=wait)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
