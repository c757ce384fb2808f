"""A protocol-faithful fake Mattermost server (REST v4 + websocket) for tests, on aiohttp.

It listens on a free 127.0.0.1 port, over plain HTTP or HTTPS/WSS with a trustme CA (`ca_file`).
Shapes follow Mattermost 9.x: posts, channels, users, the `{"order", "posts"}` thread object, the
websocket `authentication_challenge` → `{"status": "OK", "seq_reply": 1}` → `hello` handshake,
and `posted` events whose `data.post` and `data.mentions` are JSON strings. Every response has
`Content-Type: application/json` exactly, as the real server (and mattermostdriver) expect.

Test controls: `add_user`, `add_channel`, `direct_channel`, `inject_post`, `thread_posts`;
records `posts` (with `file_ids` and `metadata.files` when files are attached), `files` (uploads
through `POST /api/v4/files`, bytes in `data`), `rest_calls`, `edits`, `typing`, `reactions`,
`sessions_opened`, `ws_attempts`,
`auth_failures`; waiting helpers `wait_until`, `wait_for_post`, `wait_for_edit`,
`wait_for_rest_call`, `wait_for_sessions`, `wait_for_ws_attempts`; faults `close_websockets`
(clean), `abort_websockets` (abnormal), `refuse_connections`/`accept_connections`,
`hang`/`unhang`, `restart`, `reject_websocket_auth`, `content_type`. It runs in the test's event
loop, so the code under test must not block the loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import ssl
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

import trustme
from aiohttp import WSCloseCode, WSMsgType, web

T = TypeVar("T")
JSON = "application/json"


def new_id() -> str:
    """A 26-character Mattermost-style id."""
    return uuid.uuid4().hex[:26]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class FakeUser:
    id: str
    username: str
    is_bot: bool
    token: str | None

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "is_bot": self.is_bot,
                "first_name": "", "last_name": "", "nickname": "",
                "email": f"{self.username}@example.test",
                "roles": "system_user", "locale": "en", "create_at": 0, "update_at": 0,
                "delete_at": 0}


@dataclass
class FakeChannel:
    id: str
    team_id: str
    name: str
    display_name: str
    type: str
    members: set[str] | None  # None: every user is a member

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "team_id": self.team_id, "name": self.name,
                "display_name": self.display_name, "type": self.type, "header": "",
                "purpose": "", "create_at": 0, "update_at": 0, "delete_at": 0,
                "last_post_at": 0, "total_msg_count": 0, "creator_id": ""}


@dataclass(frozen=True)
class RestCall:
    method: str
    path: str
    body: Any
    user_id: str | None
    status: int


@dataclass(frozen=True)
class PostEdit:
    post_id: str
    message: str
    monotonic: float


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    user: FakeUser | None = None
    seq: itertools.count[int] = field(default_factory=itertools.count)

    def alive(self) -> bool:
        return not self.ws.closed and self.transport is not None and not self.transport.is_closing()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": JSON})


INVALID_PARAM = "api.context.invalid_param.app_error"


def _no_channel() -> web.Response:
    return _error(404, "Unable to find the existing channel.", "app.channel.get.existing.app_error")


def _no_team() -> web.Response:
    return _error(404, "Unable to find the existing team.",
                  "app.team.get_by_name.missing.app_error")


def _error(status: int, message: str, error_id: str) -> web.Response:
    return _json({"id": error_id, "message": message, "detailed_error": "", "request_id": new_id(),
                  "status_code": status}, status)


class FakeMattermostServer:
    """One fake Mattermost with one team. Use as `async with FakeMattermostServer() as mm:`."""

    def __init__(self, *, tls: bool = False, team_name: str = "home") -> None:
        self.tls = tls
        self.team = {"id": new_id(), "name": team_name, "display_name": team_name.title(),
                     "type": "O"}
        self.users: dict[str, FakeUser] = {}
        self.channels: dict[str, FakeChannel] = {}
        self.posts: dict[str, dict[str, Any]] = {}
        self.rest_calls: list[RestCall] = []
        self.edits: list[PostEdit] = []
        self.typing: list[dict[str, Any]] = []
        self.reactions: list[dict[str, Any]] = []
        self.files: dict[str, dict[str, Any]] = {}
        """Uploaded files by id: `id`, `name`, `channel_id`, `user_id`, `mime_type`, `data`."""
        self.sessions_opened = 0
        """Authenticated websocket sessions so far (a reconnect adds one)."""
        self.ws_attempts = 0
        """Websocket upgrade requests received so far (including hung ones)."""
        self.auth_failures = 0
        """Websocket authentication challenges answered with FAIL."""
        self.reject_websocket_auth = False
        """Answer every websocket authentication challenge with FAIL (REST still works)."""
        self.content_type = JSON
        """Override to test clients against a looser Content-Type (the driver compares exactly)."""
        self._conns: set[_Conn] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._unhung = asyncio.Event()
        self._unhung.set()
        self._hung_transports: list[asyncio.Transport] = []
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._port = 0
        self._tmp: Path | None = None
        self._ssl: ssl.SSLContext | None = None
        self.ca_file: str | None = None
        """PEM file of the CA that signed the server certificate (TLS mode only)."""

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._port}"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.tls:
            ca = trustme.CA()
            self._tmp = Path(tempfile.mkdtemp(prefix="fake-mm-"))
            ca_path = self._tmp / "ca.pem"
            ca.cert_pem.write_to_path(str(ca_path))
            self.ca_file = str(ca_path)
            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._ssl)
        app = web.Application(middlewares=[self._record])
        r = app.router
        r.add_get("/api/v4/users/me", self._get_me)
        r.add_get("/api/v4/users/username/{name}", self._get_user_by_name)
        r.add_get("/api/v4/users/{id}", self._get_user)
        r.add_post("/api/v4/users/{id}/typing", self._post_typing)
        r.add_post("/api/v4/posts", self._create_post)
        r.add_put("/api/v4/posts/{id}/patch", self._patch_post)
        r.add_get("/api/v4/posts/{id}/thread", self._get_thread)
        r.add_get("/api/v4/posts/{id}", self._get_post)
        r.add_get("/api/v4/channels/{id}", self._get_channel)
        r.add_get("/api/v4/teams/name/{team}/channels/name/{channel}", self._channel_by_name)
        r.add_get("/api/v4/teams/name/{team}", self._team_by_name)
        r.add_post("/api/v4/reactions", self._create_reaction)
        r.add_post("/api/v4/files", self._upload_files)
        r.add_get("/api/v4/websocket", self._websocket)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, handle_signals=False)
        await self._runner.setup()
        await self.accept_connections()

    async def stop(self) -> None:
        self._stopping.set()
        self.unhang()
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.abort()
        background = list(self._background)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    # --------------------------------------------------------- test controls

    def add_user(self, username: str, *, bot: bool = False, token: str | None = None) -> FakeUser:
        """A user; give it a `token` to let a client log in as it."""
        user = FakeUser(id=new_id(), username=username, is_bot=bot, token=token)
        self.users[user.id] = user
        return user

    def add_channel(self, name: str, *, type: str = "O", display_name: str | None = None,
                    members: Iterable[FakeUser] | None = None) -> FakeChannel:
        """A channel of the team; `members=None` makes every user a member."""
        channel = FakeChannel(id=new_id(), team_id=self.team["id"], name=name,
                              display_name=display_name or name.title(), type=type,
                              members=None if members is None else {u.id for u in members})
        self.channels[channel.id] = channel
        return channel

    def direct_channel(self, a: FakeUser, b: FakeUser) -> FakeChannel:
        """The direct-message channel (type D) between two users, named `id1__id2`."""
        name = "__".join(sorted((a.id, b.id)))
        for channel in self.channels.values():
            if channel.name == name:
                return channel
        channel = FakeChannel(id=new_id(), team_id="", name=name, display_name="", type="D",
                              members={a.id, b.id})
        self.channels[channel.id] = channel
        return channel

    def inject_post(self, user: FakeUser, channel: FakeChannel, message: str,
                    root_id: str = "", props: dict[str, Any] | None = None) -> dict[str, Any]:
        """A post by `user` as if typed in the web app; broadcast as a `posted` event."""
        return self._add_post(user, channel, message, root_id, props or {})

    def thread_posts(self, root_id: str) -> list[dict[str, Any]]:
        """The root and every reply, oldest first."""
        posts = [p for p in self.posts.values() if root_id in (p["id"], p["root_id"])]
        return sorted(posts, key=lambda p: p["create_at"])

    async def wait_until(self, predicate: Callable[[], T | None], timeout: float = 5.0) -> T:
        """Wait until `predicate()` returns something truthy (re-checked on every change)."""
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed
                result = predicate()
                if result:
                    return result
                await changed.wait()

    async def wait_for_post(self, predicate: Callable[[dict[str, Any]], bool],
                            timeout: float = 5.0) -> dict[str, Any]:
        """The first stored post matching `predicate` (current message, after edits)."""
        return await self.wait_until(
            lambda: next((p for p in self.posts.values() if predicate(p)), None), timeout)

    async def wait_for_edit(self, predicate: Callable[[PostEdit], bool],
                            timeout: float = 5.0) -> PostEdit:
        return await self.wait_until(lambda: next((e for e in self.edits if predicate(e)), None),
                                     timeout)

    async def wait_for_rest_call(self, predicate: Callable[[RestCall], bool],
                                 timeout: float = 5.0) -> RestCall:
        return await self.wait_until(
            lambda: next((c for c in self.rest_calls if predicate(c)), None), timeout)

    async def wait_for_sessions(self, count: int, timeout: float = 5.0) -> int:
        """Wait until `count` websocket sessions have authenticated in total."""
        return await self.wait_until(
            lambda: self.sessions_opened if self.sessions_opened >= count else None, timeout)

    async def wait_for_ws_attempts(self, count: int, timeout: float = 5.0) -> int:
        return await self.wait_until(
            lambda: self.ws_attempts if self.ws_attempts >= count else None, timeout)

    @property
    def live_sessions(self) -> int:
        return sum(1 for c in self._conns if c.user is not None and c.alive())

    async def close_websockets(self, code: int = WSCloseCode.GOING_AWAY) -> None:
        """Close every websocket cleanly with a close frame (as on a server shutdown)."""
        await asyncio.gather(*(c.ws.close(code=code, message=b"server shutting down")
                               for c in list(self._conns)), return_exceptions=True)

    def abort_websockets(self) -> None:
        """Kill every websocket's TCP connection without a close frame (abnormal close, 1006)."""
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.abort()

    async def refuse_connections(self) -> None:
        """Stop listening (new connections are refused) and drop the open websockets."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        self.abort_websockets()

    async def accept_connections(self) -> None:
        """Listen again on the same port (a free one the first time)."""
        if self._site is not None or self._runner is None:
            return
        self._site = web.TCPSite(self._runner, "127.0.0.1", self._port, ssl_context=self._ssl)
        await self._site.start()
        self._port = self._site.port

    async def restart(self) -> None:
        """As a server restart: websockets closed with 1001, listener down, then up again."""
        await self.close_websockets()
        await self.refuse_connections()
        await self.accept_connections()

    def hang(self) -> None:
        """Stop answering: open websockets read nothing (no pongs), new upgrades never answered."""
        self._unhung.clear()
        for conn in self._conns:
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.pause_reading()
                self._hung_transports.append(conn.transport)

    def unhang(self) -> None:
        self._unhung.set()
        for transport in self._hung_transports:
            if not transport.is_closing():
                transport.resume_reading()
        self._hung_transports.clear()

    # -------------------------------------------------------------- internals

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _user_for_token(self, token: str | None) -> FakeUser | None:
        if not token:
            return None
        return next((u for u in self.users.values() if u.token == token), None)

    def _auth(self, request: web.Request) -> FakeUser | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return self._user_for_token(token) if scheme.lower() == "bearer" else None

    def _me(self, request: web.Request) -> FakeUser:
        user = self._auth(request)
        assert user is not None  # the middleware answered 401 otherwise
        return user

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()  # aiohttp caches the body read by the middleware
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    @web.middleware
    async def _record(self, request: web.Request,
                      handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        if request.path == "/api/v4/websocket":
            response: web.StreamResponse = await handler(request)
            return response
        user = self._auth(request)
        body: Any = None
        if request.can_read_body and request.content_type != "multipart/form-data":
            try:
                body = await request.json()
            except ValueError:
                body = None
        if user is None:
            response = _error(401, "Invalid or expired session, please login again.",
                              "api.context.session_expired.app_error")
        else:
            try:
                response = await handler(request)
            except web.HTTPNotFound:
                response = _error(404, "Sorry, we could not find the page.", "api.context.404")
        if self.content_type != JSON and isinstance(response, web.Response):
            response.headers["Content-Type"] = self.content_type
        self.rest_calls.append(RestCall(request.method, request.path, body,
                                        user.id if user else None, response.status))
        self._notify()
        return response

    async def _get_me(self, request: web.Request) -> web.Response:
        return _json(self._me(request).to_api())

    async def _get_user(self, request: web.Request) -> web.Response:
        user = self.users.get(request.match_info["id"])
        if user is None:
            return _error(404, "Unable to find the user.", "app.user.missing_account.const")
        return _json(user.to_api())

    async def _get_user_by_name(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        user = next((u for u in self.users.values() if u.username == name), None)
        if user is None:
            return _error(404, "Unable to find the user.", "app.user.missing_account.const")
        return _json(user.to_api())

    async def _post_typing(self, request: web.Request) -> web.Response:
        me = self._me(request)
        target = request.match_info["id"]
        if target not in (me.id, "me"):
            return _error(403, "You do not have the appropriate permissions.",
                          "api.context.permissions.app_error")
        body = await self._body(request)
        channel = self.channels.get(str(body.get("channel_id", "")))
        if channel is None:
            return _error(400, "Invalid channel_id parameter.", INVALID_PARAM)
        self.typing.append({"user_id": me.id, "channel_id": channel.id,
                            "parent_id": body.get("parent_id", ""), "monotonic": time.monotonic()})
        await self._broadcast(channel, "typing",
                              {"parent_id": body.get("parent_id", ""), "user_id": me.id},
                              omit={me.id})
        return _json({"status": "OK"})

    async def _create_post(self, request: web.Request) -> web.Response:
        me = self._me(request)
        body = await self._body(request)
        channel = self.channels.get(str(body.get("channel_id", "")))
        if channel is None or not isinstance(body.get("message"), str):
            return _error(400, "Invalid channel_id or message parameter.", INVALID_PARAM)
        root_id = str(body.get("root_id") or "")
        if root_id and root_id not in self.posts:
            return _error(400, "Invalid RootId parameter.", INVALID_PARAM)
        props = dict(body.get("props") or {})
        file_ids = body.get("file_ids") or []
        if not isinstance(file_ids, list) or any(
                f not in self.files or self.files[f]["channel_id"] != channel.id for f in file_ids):
            return _error(400, "Invalid file_ids parameter.", INVALID_PARAM)
        post = self._add_post(me, channel, body["message"], root_id, props)
        if file_ids:
            post["file_ids"] = list(file_ids)
            post["metadata"] = {**post["metadata"], "files": [
                {k: v for k, v in self.files[f].items() if k != "data"} for f in file_ids]}
        return _json(post, 201)

    async def _upload_files(self, request: web.Request) -> web.Response:
        """`POST /api/v4/files`: multipart with `channel_id` and one or more `files` parts."""
        me = self._me(request)
        form = await request.post()
        channel = self.channels.get(str(form.get("channel_id", "")))
        if channel is None:
            return _error(400, "Invalid channel_id parameter.", INVALID_PARAM)
        infos = []
        for part in form.getall("files", []):
            if not isinstance(part, web.FileField):
                return _error(400, "Invalid files parameter.", INVALID_PARAM)
            data = part.file.read()
            info = {"id": new_id(), "name": part.filename, "channel_id": channel.id,
                    "user_id": me.id, "size": len(data), "create_at": now_ms(),
                    "mime_type": part.content_type,
                    "extension": part.filename.rpartition(".")[2] if "." in part.filename else ""}
            self.files[info["id"]] = {**info, "data": data}
            infos.append(info)
        if not infos:
            return _error(400, "Unable to upload file(s): no file was sent.", INVALID_PARAM)
        self._notify()
        return _json({"file_infos": infos, "client_ids": []}, 201)

    async def _patch_post(self, request: web.Request) -> web.Response:
        me = self._me(request)
        post = self.posts.get(request.match_info["id"])
        if post is None:
            return _error(404, "Unable to get the post.", "app.post.get.app_error")
        if post["user_id"] != me.id:
            return _error(403, "You do not have the appropriate permissions.",
                          "api.context.permissions.app_error")
        body = await self._body(request)
        if "message" in body:
            post["message"] = str(body["message"])
        post["update_at"] = post["edit_at"] = max(now_ms(), post["update_at"] + 1)
        self.edits.append(PostEdit(post["id"], post["message"], time.monotonic()))
        await self._broadcast(self.channels[post["channel_id"]], "post_edited",
                              {"post": json.dumps(post)})
        return _json(post)

    async def _get_post(self, request: web.Request) -> web.Response:
        post = self.posts.get(request.match_info["id"])
        if post is None:
            return _error(404, "Unable to get the post.", "app.post.get.app_error")
        return _json(post)

    async def _get_thread(self, request: web.Request) -> web.Response:
        post = self.posts.get(request.match_info["id"])
        if post is None:
            return _error(404, "Unable to get the post.", "app.post.get.app_error")
        posts = self.thread_posts(post["root_id"] or post["id"])
        # Mattermost orders threads newest first in "order".
        order = [p["id"] for p in reversed(posts)]
        return _json({"order": order, "posts": {p["id"]: p for p in posts},
                      "next_post_id": "", "prev_post_id": "", "has_next": False})

    async def _get_channel(self, request: web.Request) -> web.Response:
        channel = self.channels.get(request.match_info["id"])
        if channel is None:
            return _no_channel()
        return _json(channel.to_api())

    async def _channel_by_name(self, request: web.Request) -> web.Response:
        if request.match_info["team"] != self.team["name"]:
            return _no_team()
        name = request.match_info["channel"]
        channel = next((c for c in self.channels.values()
                        if c.name == name and c.team_id == self.team["id"]), None)
        if channel is None:
            return _no_channel()
        return _json(channel.to_api())

    async def _team_by_name(self, request: web.Request) -> web.Response:
        if request.match_info["team"] != self.team["name"]:
            return _no_team()
        return _json(self.team)

    async def _create_reaction(self, request: web.Request) -> web.Response:
        me = self._me(request)
        body = await self._body(request)
        post = self.posts.get(str(body.get("post_id", "")))
        if body.get("user_id") != me.id or post is None or not body.get("emoji_name"):
            return _error(400, "Invalid reaction.", INVALID_PARAM)
        reaction = {"user_id": me.id, "post_id": post["id"], "emoji_name": body["emoji_name"],
                    "create_at": now_ms()}
        self.reactions.append(reaction)
        await self._broadcast(self.channels[post["channel_id"]], "reaction_added",
                              {"reaction": json.dumps(reaction)})
        return _json(reaction, 201)

    def _add_post(self, user: FakeUser, channel: FakeChannel, message: str, root_id: str,
                  props: dict[str, Any]) -> dict[str, Any]:
        created = max([now_ms(), *(p["create_at"] + 1 for p in self.posts.values())])
        if user.is_bot:
            props = {**props, "from_bot": "true"}
        post = {"id": new_id(), "create_at": created, "update_at": created, "edit_at": 0,
                "delete_at": 0, "is_pinned": False, "user_id": user.id, "channel_id": channel.id,
                "root_id": root_id, "original_id": "", "message": message, "type": "",
                "props": props, "hashtags": "", "pending_post_id": "", "reply_count": 0,
                "metadata": {}}
        self.posts[post["id"]] = post
        mentions = [u.id for u in self.users.values()
                    if u.id != user.id and self._member(channel, u)
                    and re.search(rf"(?<![\w.-])@{re.escape(u.username)}(?![\w-])", message)]
        if channel.type == "D":
            mentions = sorted((channel.members or set()) - {user.id})
        data: dict[str, Any] = {
            "channel_display_name": channel.display_name or f"@{user.username}",
            "channel_name": channel.name, "channel_type": channel.type,
            "post": json.dumps(post), "sender_name": f"@{user.username}",
            "set_online": not user.is_bot, "team_id": channel.team_id,
        }
        if mentions:
            data["mentions"] = json.dumps(mentions)
        self._spawn_broadcast(channel, "posted", data)
        self._notify()
        return post

    def _member(self, channel: FakeChannel, user: FakeUser) -> bool:
        return channel.members is None or user.id in channel.members

    def _spawn_broadcast(self, channel: FakeChannel, event: str, data: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._broadcast(channel, event, data))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _broadcast(self, channel: FakeChannel, event: str, data: dict[str, Any],
                         omit: set[str] | None = None) -> None:
        if not self._unhung.is_set():
            return
        for conn in list(self._conns):
            user = conn.user
            if user is None or not conn.alive() or not self._member(channel, user):
                continue
            if omit and user.id in omit:
                continue
            frame = {"event": event, "data": data,
                     "broadcast": {"omit_users": None, "user_id": "", "channel_id": channel.id,
                                   "team_id": ""},
                     "seq": next(conn.seq)}
            try:
                await conn.ws.send_str(json.dumps(frame))
            except (ConnectionError, RuntimeError):
                continue

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        self.ws_attempts += 1
        self._notify()
        if not self._unhung.is_set():
            # A hung server: the upgrade request is read but never answered.
            await self._wait_unhung_or_stop()
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)
        ws = web.WebSocketResponse(autoping=True, heartbeat=None)
        transport = request.transport
        await ws.prepare(request)
        conn = _Conn(ws=ws, transport=transport)
        self._conns.add(conn)
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                await self._ws_message(conn, msg.data)
        finally:
            self._conns.discard(conn)
            self._notify()
        return ws

    async def _wait_unhung_or_stop(self) -> None:
        waiters = [asyncio.ensure_future(self._unhung.wait()),
                   asyncio.ensure_future(self._stopping.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _ws_message(self, conn: _Conn, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            return
        seq = msg.get("seq")
        if msg.get("action") == "authentication_challenge":
            user = self._user_for_token((msg.get("data") or {}).get("token"))
            if user is None or self.reject_websocket_auth:
                await conn.ws.send_str(json.dumps({
                    "status": "FAIL", "seq_reply": seq,
                    "error": {"id": "api.web_socket_router.bad_token.app_error",
                              "message": "Invalid token.", "status_code": 401}}))
                self.auth_failures += 1
                self._notify()
                return
            conn.user = user
            await conn.ws.send_str(json.dumps({"status": "OK", "seq_reply": seq}))
            await conn.ws.send_str(json.dumps({
                "event": "hello", "data": {"connection_id": new_id(), "server_version": "9.11.0"},
                "broadcast": {"omit_users": None, "user_id": user.id, "channel_id": "",
                              "team_id": ""},
                "seq": next(conn.seq)}))
            self.sessions_opened += 1
            self._notify()
        elif conn.user is None:
            await conn.ws.send_str(json.dumps({
                "status": "FAIL", "seq_reply": seq,
                "error": {"id": "api.web_socket_router.not_authenticated.app_error",
                          "message": "Not authenticated.", "status_code": 401}}))
        else:
            await conn.ws.send_str(json.dumps({"status": "OK", "seq_reply": seq}))
