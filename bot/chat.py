"""Chat in Mattermost: a thread becomes OpenAI messages, the answer streams in by editing posts.

* `thread_messages` (pure): the bot's posts → `assistant`, everyone else's → `user`, the bot's
  @mention and its reply footers stripped, system posts skipped.
* `split_message` (pure): cut a text into parts of at most `MAX_POST_CHARS` characters, at a line
  break when there is one in the second half of the window.
* `StreamingReply`: owns the reply posts of one answer. `feed()` never waits for Mattermost; a
  writer task edits the posts at most once per `interval` seconds, `finish()` makes the final edit
  (with the footer) and creates continuation posts past the limit.
* `answer()`: typing indicator until the first chunk, then stream, with errors as replies.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from bot.commands import strip_mention
from bot.mattermost_types import MattermostError, Post
from router.backends.base import StreamBroken
from router.core.routed import ChatChunk
from router.core.waiting import Progress
from router.errors import RouterError

__all__ = ["MAX_POST_CHARS", "Poster", "StreamingReply", "answer", "footer", "split_message",
           "thread_messages"]

log = logging.getLogger(__name__)

MAX_POST_CHARS = 16_383
"""Mattermost's limit for one post's message (in characters)."""

FOOTER_MARK = "\n\n---\n*Answered by "
_FOOTER_RE = re.compile(r"\n\n---\n\*Answered by [^\n]*\*\s*\Z")
TYPING_EVERY = 4.0
"""Mattermost shows "is typing" for about 5 s; refresh it this often while waiting."""


class Poster(Protocol):
    """The part of `MattermostAdapter` a reply needs."""

    async def create_post(self, channel_id: str, message: str,
                          root_id: str | None = None) -> Post: ...

    async def patch_post(self, post_id: str, message: str) -> Post: ...

    async def send_typing(self, channel_id: str, parent_id: str | None = None) -> None: ...


def footer(backend: str, model: str, reason: str) -> str:
    return f"{FOOTER_MARK}{backend} · `{model}` ({reason})*"


def thread_messages(posts: Sequence[Post], bot_id: str, bot_username: str) -> list[dict[str, Any]]:
    """OpenAI chat messages from a thread's posts (oldest first). Pure."""
    messages: list[dict[str, Any]] = []
    for post in posts:
        if post.type:  # join/leave and other system posts
            continue
        if post.user_id == bot_id:
            text = _FOOTER_RE.sub("", post.message).strip()
            role = "assistant"
        else:
            text = strip_mention(post.message, bot_username)
            role = "user"
        if text:
            messages.append({"role": role, "content": text})
    return messages


def split_message(text: str, limit: int = MAX_POST_CHARS) -> list[str]:
    """Parts of `text`, each at most `limit` characters, joined back they give `text`. Pure."""
    if limit < 2:
        raise ValueError("limit must be at least 2")
    parts: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", limit // 2, limit)
        cut = cut + 1 if cut != -1 else limit
        parts.append(text[:cut])
        text = text[cut:]
    parts.append(text)
    return parts


class StreamingReply:
    """The posts of one streamed answer in thread `root_id`. Loop-only; one per answer.

    Posts are created lazily: nothing appears until `feed()` gets text (or `finish()` runs).
    """

    def __init__(self, poster: Poster, channel_id: str, root_id: str, *,
                 interval: float = 1.0, limit: int = MAX_POST_CHARS) -> None:
        self._poster = poster
        self._channel_id = channel_id
        self._root_id = root_id
        self._interval = interval
        self._limit = limit
        self._text = ""
        self._note = ""  # shown while the backend has not answered yet
        self._post_ids: list[str] = []
        self._sent: list[str] = []
        self._dirty = asyncio.Event()
        self._closing = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.edits = 0

    @property
    def post_ids(self) -> list[str]:
        return list(self._post_ids)

    def feed(self, text: str) -> None:
        """Append streamed text; a writer task shows it soon. Never blocks."""
        self._text += text
        self._note = ""
        self._wake()

    def waiting(self, note: str) -> None:
        """Show `note` (e.g. "Starting qwen2.5-14b on 3090… 45 s") until the answer starts."""
        if not self._text:
            self._note = note
            self._wake()

    def _wake(self) -> None:
        self._dirty.set()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="bot-reply-writer")

    async def finish(self, tail: str) -> None:
        """Stop the writer and make the final edit: the whole text plus `tail` (the footer).

        An edit or post already on its way is awaited, never cancelled, so a post being created
        is known before the final edit (no duplicate posts)."""
        self._closing.set()
        self._dirty.set()
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        await self._sync(self._text.rstrip() + tail)

    async def cancel(self) -> None:
        """Stop the writer without a final edit (the answer was abandoned)."""
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self._closing.is_set():
                return
            started = loop.time()
            try:
                await self._sync(f"_{self._note}_" if self._note else self._text + " …")
            except MattermostError as exc:
                log.warning("could not update a streamed reply: %s", exc)
            try:  # throttle: the next edit not before `interval`, unless finishing
                async with asyncio.timeout(max(0.0, self._interval - (loop.time() - started))):
                    await self._closing.wait()
                return
            except TimeoutError:
                pass

    async def _sync(self, text: str) -> None:
        """Make the posts show `text`: patch changed parts, create missing ones."""
        parts = split_message(text, self._limit)
        for index, part in enumerate(parts):
            if index < len(self._post_ids):
                if self._sent[index] != part:
                    await self._poster.patch_post(self._post_ids[index], part)
                    self._sent[index] = part
                    self.edits += 1
            else:
                post = await self._poster.create_post(self._channel_id, part, self._root_id)
                self._post_ids.append(post.id)
                self._sent.append(part)


async def _typing(poster: Poster, channel_id: str, parent_id: str) -> None:
    try:
        await poster.send_typing(channel_id, parent_id)
    except MattermostError as exc:
        log.debug("typing indicator failed: %s", exc)


async def _keep_typing(poster: Poster, channel_id: str, parent_id: str) -> None:
    while True:
        await asyncio.sleep(TYPING_EVERY)
        await _typing(poster, channel_id, parent_id)


class WaitNotes:
    """The router's keep-alive notes for one chat answer, shown in its reply.

    Pass `note` as `RouterService.chat_stream(notify=...)` and the same object to `answer`:
    while a cold backend starts, the reply reads "Starting qwen2.5-14b on 3090… 45 s".
    """

    def __init__(self) -> None:
        self.reply: StreamingReply | None = None

    async def note(self, progress: Progress) -> None:
        if self.reply is not None:
            what = progress.starting() or f"Waiting for {progress.label}"
            self.reply.waiting(f"{what}… {progress.elapsed:.0f} s")


async def answer(poster: Poster, chunks: AsyncIterator[ChatChunk], channel_id: str,
                 root_id: str, *, interval: float = 1.0, limit: int = MAX_POST_CHARS,
                 notes: WaitNotes | None = None) -> str:
    """Stream `chunks` into a reply in thread `root_id`; returns the final text (for tests/logs).

    Errors are answered in the thread: a routing error before the first chunk becomes one reply,
    a broken stream keeps what arrived and says it was cut off. Raises only MattermostError.
    """
    await _typing(poster, channel_id, root_id)  # shown before the router starts working
    typing = asyncio.create_task(_keep_typing(poster, channel_id, root_id), name="bot-typing")
    reply = StreamingReply(poster, channel_id, root_id, interval=interval, limit=limit)
    if notes is not None:
        notes.reply = reply
    last: ChatChunk | None = None
    tail = ""
    try:
        async for chunk in chunks:
            if last is None:
                typing.cancel()
            last = chunk
            reply.feed(chunk.text)
        if last is None:
            tail = "_(The model returned an empty answer.)_"
    except RouterError as exc:
        tail = f"Sorry, I could not answer: {exc.message}"
    except StreamBroken as exc:
        tail = f"\n\n:warning: The answer was cut off: {exc}"
    except BaseException:
        await reply.cancel()
        raise
    finally:
        typing.cancel()
        await asyncio.gather(typing, return_exceptions=True)
    if last is not None:
        tail += footer(last.backend, last.model, last.reason)
    await reply.finish(tail)
    return tail
