"""The `/ai` slash command: `POST /mattermost/command` (a Mattermost outgoing form POST).

Mattermost sends `token`, `user_name`, `channel_id`, `text`, `response_url`, ... as
`application/x-www-form-urlencoded`. The token is compared with `MATTERMOST_SLASH_TOKEN` in
constant time; a missing or wrong one gets 401 with an OpenAI-shaped error body. Queries are
answered `ephemeral` (only the caller sees them), changes `in_channel`. Slow work (a chat prompt,
`route`, `load`, `stop`) is answered at once with an ephemeral "working on it", and the result is
POSTed to `response_url` from a background task that the plugin tracks.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp import web

from bot.actions import BotActions, Context, Reply
from bot.chat import footer, split_message
from bot.commands import ChatPrompt, Empty, Invocation, UsageError, help_text, parse
from router.backends.base import StreamBroken
from router.errors import BadRequest, RouterError, Unauthorized, body_for
from router.http.api import json_response

__all__ = ["WORKING", "SlashCommand"]

log = logging.getLogger(__name__)

WORKING = "Working on it… the answer will appear here shortly."
Spawn = Callable[[Coroutine[Any, Any, object], str], None]


class SlashCommand:
    """The slash-command endpoint, built when the bot starts (see BotPlugin.start)."""

    def __init__(self, token: str | None, spawn: Spawn, actions: BotActions, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._token = token
        self._spawn = spawn
        self.actions = actions
        self._client = httpx.AsyncClient(timeout=30.0, transport=transport)

    async def close(self) -> None:
        await self._client.aclose()

    def _check_token(self, given: str) -> None:
        if not self._token:
            raise Unauthorized("The /ai slash command is not enabled on this router: set "
                               "MATTERMOST_SLASH_TOKEN to the command's token.")
        if not hmac.compare_digest(given.encode(), self._token.encode()):
            raise Unauthorized("Invalid slash command token.")

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp handler. Errors become HTTP here and nowhere else."""
        try:
            form = await request.post()
            self._check_token(str(form.get("token", "")))
            username = str(form.get("user_name", "")).lstrip("@")
            if not username:
                raise BadRequest("The slash command request has no user_name.", param="user_name")
            ctx = Context(username, str(form.get("channel_id", "")), "slash")
            response_url = str(form.get("response_url", ""))
            return await self._answer(str(form.get("text", "")), ctx, response_url)
        except RouterError as exc:
            return json_response(body_for(exc), exc.status)

    async def _answer(self, text: str, ctx: Context, response_url: str) -> web.Response:
        actions = self.actions
        parsed = parse(text)
        if isinstance(parsed, Empty):
            return _reply(Reply(help_text("/ai")))
        if isinstance(parsed, UsageError):
            return _reply(Reply(parsed.message))
        slow = isinstance(parsed, ChatPrompt) or parsed.spec.slow
        if slow and isinstance(parsed, Invocation) and parsed.spec.admin_only \
                and not actions.is_admin(ctx.username):
            return _reply(actions.refusal(ctx, parsed.spec.usage))
        if not slow:
            assert isinstance(parsed, Invocation)
            return _reply(await actions.run(parsed, ctx))
        if not _valid_url(response_url):
            raise BadRequest("This command takes a while and needs a response_url to answer.",
                             param="response_url")
        self._spawn(self._deferred(parsed, ctx, response_url), f"slash-{ctx.username}")
        return _reply(Reply(WORKING))

    async def _deferred(self, parsed: Invocation | ChatPrompt, ctx: Context,
                        response_url: str) -> None:
        try:
            if isinstance(parsed, ChatPrompt):
                reply = Reply(await self.chat(parsed.text, ctx))
            else:
                reply = await self.actions.run(parsed, ctx)
        except Exception:
            log.exception("slash command from %s failed", ctx.username)
            reply = Reply("Sorry, something went wrong on my side; the router log has the details.")
        for part in split_message(reply.text):
            await self._post(response_url, {"response_type": _type(reply), "text": part})

    async def chat(self, prompt: str, ctx: Context) -> str:
        """The whole answer to `prompt` (no thread in a slash command), with the footer."""
        service = self.actions.service
        model = await self.actions.models.get(ctx.channel_id)
        text, tail = "", ""
        last = None
        try:
            async for chunk in service.chat_stream([{"role": "user", "content": prompt}],
                                                   model=model, source="slash",
                                                   client=ctx.username):
                text += chunk.text
                last = chunk
        except RouterError as exc:
            return f"Sorry, I could not answer: {exc.message}"
        except StreamBroken as exc:
            tail = f"\n\n:warning: The answer was cut off: {exc}"
        if last is None:
            return "_(The model returned an empty answer.)_"
        return text.rstrip() + tail + footer(last.backend, last.model, last.reason)

    async def _post(self, url: str, payload: dict[str, Any]) -> None:
        try:
            response = await self._client.post(url, json=payload)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("could not deliver a slash command answer to its response_url: %s", exc)


def _type(reply: Reply) -> str:
    return "in_channel" if reply.public else "ephemeral"


def _reply(reply: Reply) -> web.Response:
    return json_response({"response_type": _type(reply), "text": reply.text})


def _valid_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
