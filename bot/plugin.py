"""The Mattermost bot as a router plugin: wiring, lifecycle, event handling and ops alerts.

`BotPlugin(settings)` validates the Mattermost settings at construction (a bad URL or an empty
token fails at start, naming the variable). `add_routes` adds `POST /mattermost/command`.
`start()` never waits for Mattermost: it builds the command executor, registers the registry and
gaming listeners and the daily-report job, and spawns one tracked task that logs in (retrying
with capped backoff while Mattermost is down), resolves the ops channel and listens. `stop()`
ends that task, the adapter, and every task the bot spawned. Every spawned task is kept in
`self._tasks`; a failure is logged with its traceback and counted in `task_failures`.

Ops messages (alerts, gaming notices, the daily report) raised while the bot is logged out
(Mattermost down at start, or unreachable later) are held, bounded (`BotOptions.held_messages`),
and posted in order once the websocket is authenticated again. A gaming change made by a command
in the ops channel itself is not announced there a second time: the command's reply is the
announcement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from bot import reports
from bot.actions import CHANGE_CHANNEL, BotActions, ChannelModels, Context, chart_png
from bot.alerts import AlertThrottle, HeldMessages, alert_text, dropped_notice, gaming_notice
from bot.chat import WaitNotes, answer, split_message, thread_messages
from bot.commands import ChatPrompt, Empty, UsageError, help_text, parse, strip_mention
from bot.mattermost import (
    MattermostAdapter,
    MattermostAuthError,
    MattermostConfig,
    MattermostError,
    MattermostUnavailable,
    PostedEvent,
    User,
)
from bot.slash import SlashCommand
from router.backends.agent_control import AgentClient
from router.core.service import RouterService
from router.errors import RouterError, body_for
from router.http.api import json_response
from router.settings import Settings

__all__ = ["BotOptions", "BotPlugin"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BotOptions:
    """Tunables (tests shorten them). Times in seconds."""

    edit_interval: float = 1.0
    """At most one edit of a streamed reply per this many seconds."""
    alert_cooldown: float = 300.0
    """At most one down/up alert per backend per this many seconds (flaps are summarised)."""
    login_retry_initial: float = 1.0
    login_retry_max: float = 60.0
    held_messages: int = 50
    """At most this many ops messages wait while Mattermost is unreachable (the oldest go)."""
    mattermost: dict[str, Any] = field(default_factory=dict)
    """Overrides for `MattermostConfig` (timeouts, websocket backoff)."""


class NotStarted(RouterError):
    status = 503
    type = "server_error"
    code = "starting"


@dataclass(frozen=True)
class _Wiring:
    """What the bot works with once the router has started it."""

    service: RouterService
    actions: BotActions
    agents: AgentClient
    slash: SlashCommand


class BotPlugin:
    """The bot inside the router process. `start`/`stop` once each, on the router's loop."""

    def __init__(self, settings: Settings, options: BotOptions | None = None) -> None:
        if not settings.mattermost_url or not settings.mattermost_token:
            raise ValueError("The bot needs MATTERMOST_URL and MATTERMOST_TOKEN.")
        self.settings = settings
        self.options = options or BotOptions()
        self.config = MattermostConfig(
            url=settings.mattermost_url, token=settings.mattermost_token,
            team=settings.mattermost_team or "", verify_tls=settings.mattermost_verify_tls,
            ca_file=settings.mattermost_ca_file, **self.options.mattermost)
        self.adapter = MattermostAdapter(self.config)  # connects only in `start`'s task
        self._wiring: _Wiring | None = None
        self.ops_channel_id: str | None = None  # found after login (None: no ops channel)
        self.logged_in = asyncio.Event()
        self.task_failures = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._throttle = AlertThrottle(self.options.alert_cooldown)
        self._held = HeldMessages(self.options.held_messages)
        self._held_added = asyncio.Event()
        self._users: dict[str, User] = {}

    # -- plugin protocol ---------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/mattermost/command", self._slash)

    async def _slash(self, request: web.Request) -> web.Response:
        """`/ai`, once `start` has built it. The server accepts requests only after the app's
        start-up, which starts the bot, so the 503 is for an app served before that."""
        if self._wiring is None:
            return json_response(body_for(NotStarted("The bot is still starting; try again in "
                                                     "a moment.")), NotStarted.status)
        return await self._wiring.slash.handle(request)

    @property
    def wired(self) -> _Wiring:
        """What `start` connected the bot to. Raises RuntimeError before `start`."""
        if self._wiring is None:
            raise RuntimeError("The bot has not been started.")
        return self._wiring

    @property
    def service(self) -> RouterService:
        return self.wired.service

    @property
    def actions(self) -> BotActions:
        return self.wired.actions

    async def start(self, service: RouterService, scheduler: AsyncIOScheduler) -> None:
        """Wire everything and spawn the login/listen task. Does not wait for Mattermost."""
        agents = AgentClient()
        actions = BotActions(service, agents, self.settings.mattermost_admins,
                             ChannelModels(service.engine))
        slash = SlashCommand(self.settings.mattermost_slash_token, self.spawn, actions)
        self._wiring = _Wiring(service, actions, agents, slash)
        service.registry.add_listener(self._on_backend)
        service.gaming.add_listener(self._on_gaming)
        hour, _, minute = self.settings.daily_report_time.partition(":")
        scheduler.add_job(self.daily_report, CronTrigger(hour=int(hour), minute=int(minute)),
                          id="bot-daily-report", coalesce=True, max_instances=1,
                          misfire_grace_time=3600)
        self._runner = asyncio.create_task(self._run(), name="mattermost-bot")
        self._runner.add_done_callback(self._task_done)
        self.spawn(self._deliver_held(), "ops-held-messages")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        await self.adapter.close(grace=2.0)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._wiring is not None:
            await self._wiring.slash.close()
            await self._wiring.agents.close()

    # -- tasks -------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        """Run `coro` in a task that is kept until done and whose failure is logged."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.task_failures += 1
            log.error("bot task %s failed", task.get_name(), exc_info=task.exception())

    async def _run(self) -> None:
        """Log in (retrying while Mattermost is down), find the ops channel, then listen."""
        delay = self.options.login_retry_initial
        while True:
            try:
                await self.adapter.connect()
                break
            except MattermostError as exc:
                level = logging.ERROR if isinstance(exc, MattermostAuthError) else logging.WARNING
                log.log(level, "Mattermost login failed (%s); retrying in %.1fs. The router keeps "
                        "serving meanwhile.", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.options.login_retry_max)
        self.logged_in.set()
        try:
            await self._resolve_ops_channel()
        except MattermostUnavailable:
            pass  # resolved again before the next ops message
        await self.adapter.listen(self.on_post)

    async def _resolve_ops_channel(self) -> str | None:
        """The ops channel's id, or None (logged) when there is none. Raises
        `MattermostUnavailable` when Mattermost cannot be asked now (asked again next time)."""
        if self.ops_channel_id or not self.settings.mattermost_channel:
            return self.ops_channel_id
        if not self.settings.mattermost_team:
            log.warning("MATTERMOST_CHANNEL is set but MATTERMOST_TEAM is not; no alerts.")
            return None
        try:
            self.ops_channel_id = await self.adapter.channel_by_name(
                self.settings.mattermost_team, self.settings.mattermost_channel.lstrip("~"))
        except MattermostUnavailable:
            raise
        except MattermostError as exc:
            log.error("Cannot find MATTERMOST_CHANNEL=%s in team %s: %s",
                      self.settings.mattermost_channel, self.settings.mattermost_team, exc)
        return self.ops_channel_id

    # -- incoming posts ----------------------------------------------------------------------

    async def _user(self, user_id: str) -> User:
        user = self._users.get(user_id)
        if user is None:
            user = await self.adapter.get_user(user_id)
            if len(self._users) > 1000:
                self._users.clear()
            self._users[user_id] = user
        return user

    async def on_post(self, event: PostedEvent) -> None:
        """Handle one `posted` event (each in its own task, see `MattermostAdapter.listen`)."""
        post, bot = event.post, self.adapter.bot
        if post.user_id == bot.id or post.from_bot or post.type or post.props.get("from_webhook"):
            return
        if not (event.is_direct or event.mentions_user(bot.id)):
            return
        user = await self._user(post.user_id)
        if user.is_bot:
            return
        try:
            await self._respond(event, user.username)
        except MattermostError:
            raise  # cannot answer anyway; the adapter logs the handler's failure
        except Exception:
            log.exception("bot failed to handle post %s", post.id)
            await self.adapter.create_post(post.channel_id, "Sorry, something went wrong on my "
                                           "side; the router log has the details.", post.thread_id)

    async def _respond(self, event: PostedEvent, username: str) -> None:
        post, bot = event.post, self.adapter.bot
        parsed = parse(strip_mention(post.message, bot.username))
        root = post.thread_id
        if isinstance(parsed, ChatPrompt):
            await self._chat(event, username)
            return
        if isinstance(parsed, Empty):
            text = help_text(f"@{bot.username}")
        elif isinstance(parsed, UsageError):
            text = parsed.message
        else:
            if parsed.spec.slow:
                await self.adapter.send_typing(post.channel_id, root)
            reply = await self.actions.run(parsed, Context(username, post.channel_id))
            text = reply.text
            if reply.chart is not None:
                await self._post_with_chart(post.channel_id, text, reply.chart, root)
                return
        for part in split_message(text):
            await self.adapter.create_post(post.channel_id, part, root)

    async def _chat(self, event: PostedEvent, username: str) -> None:
        post, bot = event.post, self.adapter.bot
        thread = await self.adapter.get_thread(post.id)
        messages = thread_messages(thread, bot.id, bot.username)
        model = await self.actions.models.get(post.channel_id)
        notes = WaitNotes()  # "Starting qwen2.5-14b on 3090… 45 s" while a cold model loads
        chunks = self.actions.service.chat_stream(messages, model=model, source="bot",
                                                  client=username, notify=notes.note)
        await answer(self.adapter, chunks, post.channel_id, post.thread_id,
                     interval=self.options.edit_interval, notes=notes)

    # -- ops channel -------------------------------------------------------------------------

    async def post_ops(self, text: str) -> bool:
        """Post `text` in MATTERMOST_CHANNEL now; False when it is not posted now.

        While the bot is logged out, or older messages are still waiting, `text` is held and
        posted after the reconnect (see `_deliver_held`). False without holding when there is no
        ops channel, or Mattermost rejected the post (logged)."""
        if not self.settings.mattermost_channel:
            return False
        if not self.logged_in.is_set() or len(self._held):
            self._hold([text])  # behind the older ones: the order is kept
            return False
        try:
            channel = await self._resolve_ops_channel()
        except MattermostUnavailable:
            self._hold([text])
            return False
        if channel is None:
            return False
        parts = split_message(text)
        for index, part in enumerate(parts):
            try:
                await self.adapter.create_post(channel, part)
            except MattermostUnavailable as exc:
                log.warning("Mattermost is unreachable (%s); the ops message waits for it.", exc)
                self._hold(parts[index:])
                return False
            except MattermostError as exc:
                log.warning("Could not post to the ops channel: %s", exc)
                return False
        return True

    def _hold(self, texts: list[str]) -> None:
        for text in texts:
            if len(self._held) >= self._held.limit:
                log.warning("Too many ops messages wait for Mattermost; dropping the oldest.")
            self._held.add(text)
        log.info("Ops message held until Mattermost is reachable (%d waiting): %s",
                 len(self._held), texts[0][:200] if texts else "")
        self._held_added.set()

    async def _deliver_held(self) -> None:
        """Post the held messages, oldest first, whenever the websocket is authenticated (after
        login, and after every reconnect). A failure waits with capped backoff, then retries."""
        delay = self.options.login_retry_initial
        while True:
            while not len(self._held):
                self._held_added.clear()
                await self._held_added.wait()
            await self.logged_in.wait()
            await self.adapter.wait_connected()
            if await self._post_held():
                delay = self.options.login_retry_initial
                continue
            await asyncio.sleep(delay)  # Mattermost answered the websocket but not the post
            delay = min(delay * 2, self.options.login_retry_max)

    async def _post_held(self) -> bool:
        """Post every held message; False when Mattermost became unreachable in between."""
        try:
            channel = await self._resolve_ops_channel()
            if channel is None:  # no such channel (logged): the messages can never be posted
                while self._held.first() is not None:
                    self._held.delivered()
                return True
            if self._held.dropped:
                await self.adapter.create_post(channel, dropped_notice(self._held.dropped))
                self._held.dropped = 0
            while (text := self._held.first()) is not None:
                try:
                    await self.adapter.create_post(channel, text)
                except MattermostUnavailable:
                    raise
                except MattermostError as exc:
                    log.warning("Could not post a held ops message: %s", exc)
                self._held.delivered()
        except MattermostUnavailable as exc:
            log.warning("Mattermost is unreachable again (%s); held ops messages wait.", exc)
            return False
        return True

    async def _on_backend(self, name: str, healthy: bool, error: str | None) -> None:
        """Registry listener: announce now, or schedule a summary after the cooldown."""
        now = asyncio.get_running_loop().time()
        delay = self._throttle.offer(name, healthy, error, now)
        if delay == 0.0:
            self.spawn(self.post_ops(alert_text(name, healthy, error, label=self._label(name))),
                       f"alert-{name}")
        elif delay is not None:
            self.spawn(self._flush_alert(name, delay), f"alert-flush-{name}")

    async def _flush_alert(self, name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        result = self._throttle.flush(name, asyncio.get_running_loop().time())
        if result is not None:
            healthy, error, changes = result
            await self.post_ops(alert_text(name, healthy, error, changes,
                                           self.options.alert_cooldown, self._label(name)))

    def _label(self, name: str) -> str:
        state = self.actions.service.registry.get(name)
        return state.label if state is not None else name

    async def _on_gaming(self, enabled: bool, actor: str, source: str) -> None:
        if self.ops_channel_id is not None and CHANGE_CHANNEL.get() == self.ops_channel_id:
            return  # made by a command in the ops channel: its reply there is the announcement
        service = self.actions.service
        labels = tuple(service.topology.label(name) for name in service.gaming.states)
        self.spawn(self.post_ops(gaming_notice(enabled, actor, source, labels or ("3090",))),
                   "gaming-notice")

    async def daily_report(self) -> None:
        """The scheduled report (also callable directly)."""
        await self.service.decisions.flush(timeout=2.0)
        stats = await asyncio.to_thread(reports.compute_stats,
                                        self.service.engine,
                                        reports.since("24h"))
        text = reports.daily_report(self.service.status(), stats)
        chart = await chart_png(self.service.engine, "24h")
        if chart is not None and await self._post_ops_chart(text, chart):
            return
        await self.post_ops(text)

    async def _post_ops_chart(self, text: str, chart: bytes) -> bool:
        """Post the report with its chart now; False (nothing posted) when that cannot be done
        now, and `post_ops` then takes the text alone (it can hold text, not files)."""
        if not self.logged_in.is_set():
            return False
        try:
            channel = await self._resolve_ops_channel()
            if channel is None:
                return False
            await self._post_with_chart(channel, text, chart)
        except MattermostError as exc:
            log.warning("Could not post the report with its chart: %s", exc)
            return False
        return True

    async def _post_with_chart(self, channel_id: str, text: str, chart: bytes,
                               root: str | None = None) -> None:
        """Post `text` with `chart` (PNG) attached to its first part, or the text alone when the
        upload fails. Raises MattermostError when the text cannot be posted."""
        file_ids: list[str] = []
        try:
            file_ids.append(await self.adapter.upload_file(channel_id, "router-chart.png", chart,
                                                           "image/png"))
        except MattermostError as exc:
            log.warning("Could not upload the chart; posting the text alone: %s", exc)
        for index, part in enumerate(split_message(text)):
            await self.adapter.create_post(channel_id, part, root,
                                           file_ids=file_ids if index == 0 else ())
