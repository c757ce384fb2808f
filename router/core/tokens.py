"""Prompt token estimation that works offline and keeps the event loop free.

The cl100k_base BPE ranks ship inside the package (`router/data/cl100k_base.tiktoken`), so no
tokenizer is ever downloaded. The estimate counts the text parts of every message, tool and
function schemas, a `response_format` schema and a fixed budget per image, plus a small
per-message overhead as in OpenAI's accounting.

Cost control: each text is tokenised exactly up to `EXACT_CHAR_LIMIT` characters; past that the
rest is estimated at `CHARS_PER_TOKEN` (the routing thresholds only need "how big", not the exact
count). A prompt whose text exceeds `INLINE_CHAR_LIMIT` characters is tokenised in a worker
thread (tiktoken releases the GIL), so even a 16k-token prompt never blocks the loop.

Counts are remembered per text (by length and hash, holding no text): coding agents send the same
system prompt, tool schemas and earlier turns with every request, so only the new parts are
tokenised, and a repeated prompt is counted on the loop in microseconds.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import tiktoken
from tiktoken.load import load_tiktoken_bpe

_BPE_FILE = Path(__file__).resolve().parents[1] / "data" / "cl100k_base.tiktoken"
_BPE_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# cl100k_base's split pattern and special tokens, as published in tiktoken_ext.openai_public.
_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}

EXACT_CHAR_LIMIT = 200_000
CHARS_PER_TOKEN = 4
INLINE_CHAR_LIMIT = 4_000
PER_MESSAGE_TOKENS = 4
DEFAULT_IMAGE_TOKENS = 765
COUNT_CACHE_SIZE = 4096  # texts whose counts are kept; the whole cache is dropped when full

_counts: dict[tuple[int, int], int] = {}  # (len, hash) of a text -> its token count


@functools.cache
def encoding() -> tiktoken.Encoding:
    """The bundled cl100k_base encoding. Loads from the package, never from the network."""
    ranks = load_tiktoken_bpe(str(_BPE_FILE), expected_hash=_BPE_SHA256)
    return tiktoken.Encoding("cl100k_base", pat_str=_PAT, mergeable_ranks=ranks, special_tokens=_SPECIAL)


class PromptParts(NamedTuple):
    """What an estimate is made of: the texts to tokenise and the fixed extras."""

    texts: tuple[str, ...]
    fixed_tokens: int

    @property
    def chars(self) -> int:
        return sum(len(t) for t in self.texts)


def collect(body: dict[str, Any], image_tokens: int = DEFAULT_IMAGE_TOKENS) -> PromptParts:
    """Split an OpenAI request body into texts and fixed token counts. Pure and cheap."""
    texts: list[str] = []
    fixed = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            fixed += PER_MESSAGE_TOKENS
            content = message.get("content")
            if isinstance(content, str) and "tool_calls" not in message:
                texts.append(content)  # the common message, without `_message_parts`' generator
                continue
            for text, images in _message_parts(message):
                texts.append(text)
                fixed += images * image_tokens
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        texts.append(prompt)
    elif isinstance(prompt, list):
        texts.extend(p for p in prompt if isinstance(p, str))
    embed_input = body.get("input")
    if isinstance(embed_input, str):
        texts.append(embed_input)
    elif isinstance(embed_input, list):
        texts.extend(p for p in embed_input if isinstance(p, str))
    for key in ("tools", "functions"):
        if body.get(key):
            texts.append(orjson.dumps(body[key]).decode())
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and "json_schema" in response_format:
        texts.append(orjson.dumps(response_format["json_schema"]).decode())
    return PromptParts(tuple(texts), fixed)


def _message_parts(message: dict[str, Any]) -> Iterator[tuple[str, int]]:
    content = message.get("content")
    if isinstance(content, str):
        yield content, 0
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                yield part["text"], 0
            elif kind in ("image_url", "input_image", "image"):
                yield "", 1
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        if isinstance(call, dict):
            yield orjson.dumps(call.get("function", call)).decode(), 0


def _key(text: str) -> tuple[int, int]:
    return len(text), hash(text)


def count_text(text: str) -> int:
    """Tokens in `text`: exact up to EXACT_CHAR_LIMIT characters, estimated past it."""
    key = _key(text)
    count = _counts.get(key)
    if count is None:
        count = _count(text)
        if len(_counts) >= COUNT_CACHE_SIZE:
            _counts.clear()
        _counts[key] = count
    return count


def forget_counts() -> None:
    """Drop the remembered counts (for measurements of a first count)."""
    _counts.clear()


def _count(text: str) -> int:
    if len(text) <= EXACT_CHAR_LIMIT:
        return len(encoding().encode_ordinary(text))
    head = len(encoding().encode_ordinary(text[:EXACT_CHAR_LIMIT]))
    return head + (len(text) - EXACT_CHAR_LIMIT) // CHARS_PER_TOKEN


def count_parts(parts: PromptParts) -> int:
    """Blocking count of a PromptParts. Safe to call from any thread."""
    return parts.fixed_tokens + sum(count_text(t) for t in parts.texts if t)


def remembered_count(parts: PromptParts) -> int | None:
    """The count of `parts` from remembered counts alone; None when a text is new."""
    total = parts.fixed_tokens
    for text in parts.texts:
        if text:
            count = _counts.get(_key(text))
            if count is None:
                return None
            total += count
    return total


async def estimate(body: dict[str, Any], image_tokens: int = DEFAULT_IMAGE_TOKENS) -> int:
    """Estimated prompt tokens of an OpenAI request body, without blocking the event loop."""
    parts = collect(body, image_tokens)
    known = remembered_count(parts)
    if known is not None:
        return known
    if parts.chars <= INLINE_CHAR_LIMIT:
        return count_parts(parts)
    return await asyncio.to_thread(count_parts, parts)
