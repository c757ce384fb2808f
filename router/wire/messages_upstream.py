"""Chat Completions -> Anthropic Messages and back, for the `anthropic` backend. Pure; no I/O.

`chat_to_messages_request()` turns a Chat body into a Messages body (system joined, tool
results as `tool_result` blocks in a user turn, neighbouring turns of one role merged, a
default `max_tokens`); `messages_to_chat_response()` and `MessagesToChatStream` turn the answer
(whole, or Anthropic SSE) back into Chat Completions, tool calls and usage included.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson

from router.wire.messages import (
    BAD_SHAPE,
    DEFAULT_MAX_TOKENS,
    STOP_TO_FINISH,
    _arguments,
    _new_id,
    _source_of,
    _text_of,
    sse_data,
)


def _blocks_of(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            blocks.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str):
                blocks.append({"type": "image", "source": _source_of({"image_url": {"url": url}})})
    return blocks


def chat_to_messages_request(chat: dict[str, Any]) -> dict[str, Any]:
    """The Messages body for a Chat Completions body (what the `anthropic` backend sends)."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        # Anthropic wants user and assistant turns to alternate: merge neighbours.
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for message in chat.get("messages") or ():
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text_of(message.get("content")))
        elif role == "tool":
            add("user", [{"type": "tool_result",
                          "tool_use_id": str(message.get("tool_call_id") or ""),
                          "content": _text_of(message.get("content"))}])
        elif role == "assistant":
            blocks = _blocks_of(message.get("content"))
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                blocks.append({"type": "tool_use", "id": call.get("id") or _new_id("toolu_"),
                               "name": function.get("name") or "",
                               "input": _arguments(function.get("arguments"))})
            if blocks:
                add("assistant", blocks)
        else:
            add("user", _blocks_of(message.get("content")) or [{"type": "text", "text": ""}])
    body: dict[str, Any] = {
        "model": chat.get("model"), "messages": messages,
        "max_tokens": int(chat.get("max_completion_tokens") or chat.get("max_tokens")
                          or DEFAULT_MAX_TOKENS)}
    if system:
        body["system"] = "\n\n".join(s for s in system if s)
    for key in ("temperature", "top_p"):
        if chat.get(key) is not None:
            body[key] = chat[key]
    stop = chat.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = [t.get("function") or {} for t in chat.get("tools") or () if isinstance(t, dict)]
    if tools:
        body["tools"] = [{"name": f.get("name") or "", "description": f.get("description") or "",
                          "input_schema": f.get("parameters")
                          or {"type": "object", "properties": {}}}
                         for f in tools]
        choice = chat.get("tool_choice")
        mapped: dict[str, Any] | None = None
        if isinstance(choice, dict):
            mapped = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
        elif choice in ("auto", "required", "none"):
            mapped = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
        if chat.get("parallel_tool_calls") is False:
            mapped = mapped or {"type": "auto"}
            if mapped["type"] != "none":
                mapped["disable_parallel_tool_use"] = True
        if mapped is not None:
            body["tool_choice"] = mapped
    if chat.get("stream"):
        body["stream"] = True
    return body


def messages_to_chat_response(msg: dict[str, Any], created: int | None = None) -> dict[str, Any]:
    """The Chat Completions answer for a Messages answer."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in msg.get("content") or ():
        if block.get("type") == "text":
            texts.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"),
                "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    usage = msg.get("usage") or {}
    prompt = _input_tokens(usage)
    completion = int(usage.get("output_tokens") or 0)
    return {"id": "chatcmpl-" + str(msg.get("id") or uuid.uuid4().hex).removeprefix("msg_"),
            "object": "chat.completion", "created": created or int(time.time()),
            "model": msg.get("model"),
            "choices": [{"index": 0, "message": message,
                         "finish_reason": STOP_TO_FINISH.get(msg.get("stop_reason") or "",
                                                             "stop")}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}}


def _input_tokens(usage: dict[str, Any]) -> int:
    """Anthropic counts cached prompt tokens apart; Chat's prompt_tokens include them."""
    return sum(int(usage.get(k) or 0) for k in
               ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))


class MessagesToChatStream:
    """Anthropic Messages SSE bytes in, Chat Completions SSE bytes out (chat.completion.chunk
    events, tool_calls deltas, finish_reason, a usage chunk when asked, `data: [DONE]`).

    An Anthropic `error` event sets `failed` (the caller raises StreamBroken). Loop-only.
    """

    def __init__(self, model: str, include_usage: bool = False) -> None:
        self.model = model
        self.include_usage = include_usage
        self.failed: str | None = None
        self.done = False
        self._buffer = b""
        self._id = "chatcmpl-" + uuid.uuid4().hex[:24]
        self._created = int(time.time())
        self._tools: dict[int, int] = {}  # block index -> tool_calls index
        self._input = 0
        self._output = 0
        self._stop: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        lines, self._buffer = sse_data(self._buffer + chunk if self._buffer else chunk)
        out: list[bytes] = []
        for line in lines:
            if line.startswith(b"data:") and not self.done:
                payload = line[5:].strip()
                if payload:
                    try:
                        out.extend(self._event(orjson.loads(payload)))
                    except BAD_SHAPE as exc:  # the caller turns `failed` into StreamBroken
                        self.failed = f"an event of an unexpected shape ({exc})"
                        break
        return b"".join(out)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return b"data: " + orjson.dumps({
            "id": self._id, "object": "chat.completion.chunk", "created": self._created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"

    def _event(self, event: Any) -> Iterator[bytes]:
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self._id = "chatcmpl-" + str(message.get("id") or "").removeprefix("msg_")
            self._input = _input_tokens(message.get("usage") or {})
            yield self._chunk({"role": "assistant", "content": ""})
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                position = self._tools[event.get("index", 0)] = len(self._tools)
                yield self._chunk({"tool_calls": [{
                    "index": position, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""}}]})
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                yield self._chunk({"content": delta.get("text", "")})
            elif delta.get("type") == "thinking_delta":
                yield self._chunk({"reasoning_content": delta.get("thinking", "")})
            elif delta.get("type") == "input_json_delta":
                found = self._tools.get(event.get("index", 0))
                if found is not None and delta.get("partial_json"):
                    yield self._chunk({"tool_calls": [{"index": found, "function": {
                        "arguments": delta["partial_json"]}}]})
        elif kind == "message_delta":
            self._stop = (event.get("delta") or {}).get("stop_reason") or self._stop
            usage = event.get("usage") or {}
            self._output = int(usage.get("output_tokens") or self._output)
            if usage.get("input_tokens") is not None:
                self._input = _input_tokens(usage)
        elif kind == "message_stop":
            self.done = True
            yield self._chunk({}, STOP_TO_FINISH.get(self._stop or "", "stop"))
            if self.include_usage:
                yield b"data: " + orjson.dumps({
                    "id": self._id, "object": "chat.completion.chunk", "created": self._created,
                    "model": self.model, "choices": [],
                    "usage": {"prompt_tokens": self._input, "completion_tokens": self._output,
                              "total_tokens": self._input + self._output}}) + b"\n\n"
            yield b"data: [DONE]\n\n"
        elif kind == "error":
            error = event.get("error") or {}
            self.failed = str(error.get("message") or error.get("type") or "error event")

