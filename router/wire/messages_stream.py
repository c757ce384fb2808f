"""Chat Completions SSE -> Anthropic Messages SSE, for `/v1/messages` served by a Chat backend.

Fed the backend's Chat SSE bytes as they arrive, it returns Anthropic's event sequence; each
event is parsed once with orjson and only an unfinished line is held back. Pure; no I/O.
"""

from __future__ import annotations

import uuid
from typing import Any

from router.wire.messages import (
    ChatStreamTranslator,
    _new_id,
    _stop_reason,
    call_position,
    error_event,
    sse_event,
)


class ChatToMessagesStream(ChatStreamTranslator):
    """Chat Completions SSE bytes in, Anthropic Messages SSE bytes out, in Anthropic's order:
    message_start, (content_block_start, [ping], content_block_delta..., content_block_stop)...,
    message_delta (stop_reason, usage), message_stop. One instance per response; loop-only.

    `feed()` returns the bytes to send for a chunk (may be b""); `end()` the closing events when
    the upstream ended without `[DONE]`. A Chat error event, or an end before any finish reason,
    becomes an Anthropic `error` event and sets `failed`. SSE comments (keep-alives) pass through.
    """

    def __init__(self, model: str, input_tokens: int = 0) -> None:
        self.model = model
        self.input_tokens = input_tokens
        self.output_tokens = 0
        self.failed: str | None = None
        self._buffer = b""
        self._started = False
        self._pinged = False
        self._done = False
        self._next_index = 0
        self._open: int | None = None  # index of the open content block
        self._text_index: int | None = None
        self._tools: dict[int, int] = {}  # chat tool_call index -> block index
        self._finish: str | None = None
        self._matched: str | None = None

    def _on_done(self, out: list[bytes]) -> None:
        out.append(self._finish_events())

    def end(self) -> bytes:
        if self._done:
            return b""
        if self._finish is None:
            return self.error("the backend ended the stream before finishing the answer")
        return self._finish_events()

    def error(self, message: str) -> bytes:
        self.failed = message
        self._done = True
        return error_event(message)

    def _event(self, event: Any, out: list[bytes]) -> None:
        if not isinstance(event, dict):
            return
        if not self._started:
            self._start(event, out)
        usage = event.get("usage")
        if isinstance(usage, dict):
            self.input_tokens = int(usage.get("prompt_tokens") or self.input_tokens)
            self.output_tokens = int(usage.get("completion_tokens") or self.output_tokens)
        for choice in event.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                self._text(text, out)
            for call in delta.get("tool_calls") or ():
                self._tool(call, out)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                matched = choice.get("stop_reason")
                self._matched = matched if isinstance(matched, str) else None

    def _start(self, event: dict[str, Any], out: list[bytes]) -> None:
        self._started = True
        raw_id = str(event.get("id") or uuid.uuid4().hex).removeprefix("chatcmpl-")
        out.append(sse_event("message_start", {"type": "message_start", "message": {
            "id": "msg_" + raw_id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 1}}}))

    def _open_block(self, block: dict[str, Any], out: list[bytes]) -> int:
        self._close_block(out)
        index = self._next_index
        self._next_index += 1
        self._open = index
        out.append(sse_event("content_block_start", {"type": "content_block_start", "index": index,
                                                     "content_block": block}))
        if not self._pinged:
            self._pinged = True
            out.append(b'event: ping\ndata: {"type":"ping"}\n\n')
        return index

    def _close_block(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(b'event: content_block_stop\ndata: {"type":"content_block_stop","index":'
                       + str(self._open).encode() + b"}\n\n")
            if self._open == self._text_index:
                self._text_index = None
            self._open = None

    def _text(self, text: str, out: list[bytes]) -> None:
        index = self._text_index
        if index is None or index != self._open:
            index = self._text_index = self._open_block({"type": "text", "text": ""}, out)
        out.append(sse_event("content_block_delta", {
            "type": "content_block_delta", "index": index,
            "delta": {"type": "text_delta", "text": text}}))

    def _tool(self, call: dict[str, Any], out: list[bytes]) -> None:
        position = call_position(call, self._tools)
        function = call.get("function") or {}
        index = self._tools.get(position)
        if index is None:
            index = self._tools[position] = self._open_block(
                {"type": "tool_use", "id": call.get("id") or _new_id("toolu_"),
                 "name": function.get("name") or "", "input": {}}, out)
        arguments = function.get("arguments")
        if arguments:
            out.append(sse_event("content_block_delta", {
                "type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": arguments}}))

    def _finish_events(self) -> bytes:
        out: list[bytes] = []
        if not self._started:
            self._start({}, out)
        self._close_block(out)
        if not self._pinged:
            self._pinged = True
            out.append(b'event: ping\ndata: {"type":"ping"}\n\n')
        stop_reason, stop_sequence = _stop_reason(self._finish, self._matched, bool(self._tools))
        out.append(sse_event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}}))
        out.append(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
        self._done = True
        return b"".join(out)


