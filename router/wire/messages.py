"""Anthropic Messages <-> Chat Completions, both ways, whole and streamed. Pure; no I/O.

Client side (`POST /v1/messages` served by a Chat Completions backend):
`validate()` -> `messages_to_chat()` -> the backend -> `chat_to_messages_response()` or
`ChatToMessagesStream` (Chat SSE bytes in, Anthropic SSE event bytes out).

Backend side (the `anthropic` backend asked for Chat Completions):
`chat_to_messages_request()` -> Anthropic -> `messages_to_chat_response()` or
`MessagesToChatStream` (Anthropic SSE in, Chat SSE out).

Chat Completions is the internal language: text, images, tools, tool calls (ids and arguments),
tool results, stop sequences and usage cross it; Anthropic-only features without a Chat
equivalent (`thinking`, `metadata`, `cache_control`, thinking blocks) are accepted and dropped.
Validation raises `BadRequest` naming the field; `error_envelope()` gives Anthropic's error shape.
Cost: one pass over the body, new dicts only where the shape changes; streams parse each event
once with orjson.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson

from router.errors import BadRequest, RouterError
from router.wire.chat import MAX_INTEGER, decode_object

DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; Chat bodies often leave it out
# "system" inside messages: Claude Code (2.1.3xx) sends mid-conversation system messages.
ROLES = frozenset({"user", "assistant", "system"})
TOOL_CHOICES = frozenset({"auto", "any", "tool", "none"})
# Blocks that only mean something to Anthropic itself: accepted, not forwarded.
DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking", "server_tool_use",
                            "web_search_tool_result", "search_result", "container_upload"})

STOP_TO_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                  "tool_use": "tool_calls", "pause_turn": "stop", "refusal": "content_filter",
                  "model_context_window_exceeded": "length"}
FINISH_TO_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                  "function_call": "tool_use", "content_filter": "refusal"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               503: "overloaded_error", 529: "overloaded_error"}


# -- errors ----------------------------------------------------------------------------------

def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_envelope(message: str, status: int) -> dict[str, Any]:
    """Anthropic's error body: `{"type": "error", "error": {"type", "message"}}`."""
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def error_for(exc: RouterError) -> dict[str, Any]:
    """The Anthropic error body for a router error; a backend's own error body keeps its
    message (an Anthropic-shaped one is returned as it was)."""
    raw = getattr(exc, "raw", None)
    if isinstance(raw, bytes):
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload = None
        if isinstance(payload, dict) and payload.get("type") == "error" \
                and isinstance(payload.get("error"), dict):
            return payload
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict) \
                and isinstance(payload["error"].get("message"), str):
            return error_envelope(payload["error"]["message"], exc.status)
    return error_envelope(exc.message, exc.status)


def sse_event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def error_event(message: str, status: int = 500) -> bytes:
    return sse_event("error", error_envelope(message, status))


# -- validation ------------------------------------------------------------------------------

def parse(raw: bytes, *, count_only: bool = False) -> dict[str, Any]:
    """Decode and validate a Messages body (or a count_tokens body). Raises BadRequest."""
    body = decode_object(raw)
    validate(body, count_only=count_only)
    return body


def _bad(message: str, field: str) -> BadRequest:
    return BadRequest(message, param=field)


def _is_int(value: Any) -> bool:
    return (not isinstance(value, bool)) and (
        isinstance(value, int) or (isinstance(value, float) and value.is_integer()))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(body: dict[str, Any], *, count_only: bool = False) -> None:
    """Check the fields this translation reads. Raises BadRequest naming the first bad field."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("'model' is required and must be a string.", "model")
    if not count_only:
        value = body.get("max_tokens")
        if value is None:
            raise _bad("'max_tokens' is required.", "max_tokens")
        if not (_is_int(value) and 0 <= value <= MAX_INTEGER):
            raise _bad("'max_tokens' must be a non-negative integer.", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' is required and must be a non-empty array.", "messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _bad(f"'{where}' must be an object.", where)
        if message.get("role") not in ROLES:
            raise _bad(f"'{where}.role' must be 'user', 'assistant' or 'system'.",
                       f"{where}.role")
        content = message.get("content")
        if isinstance(content, list):
            _check_blocks(content, f"{where}.content")
        elif not isinstance(content, str):
            raise _bad(f"'{where}.content' must be a string or an array of content blocks.",
                       f"{where}.content")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list):
            raise _bad("'system' must be a string or an array of text blocks.", "system")
        for j, block in enumerate(system):
            if not isinstance(block, dict) or not isinstance(block.get("text"), str):
                raise _bad(f"'system[{j}]' must be a text block with a string 'text'.",
                           f"system[{j}]")
    _check_tools(body)
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        raise _bad("'stop_sequences' must be an array of strings.", "stop_sequences")
    for flag in ("stream",):
        if body.get(flag) is not None and not isinstance(body[flag], bool):
            raise _bad(f"'{flag}' must be a boolean.", flag)
    for number in ("temperature", "top_p", "top_k"):
        if body.get(number) is not None and not _is_number(body[number]):
            raise _bad(f"'{number}' must be a number.", number)
    for obj in ("metadata", "thinking"):
        if body.get(obj) is not None and not isinstance(body[obj], dict):
            raise _bad(f"'{obj}' must be an object.", obj)


def _check_blocks(blocks: list[Any], where: str) -> None:
    for j, block in enumerate(blocks):
        at = f"{where}[{j}]"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _bad(f"'{at}' must be a content block with a string 'type'.", f"{at}.type")
        kind = block["type"]
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise _bad(f"'{at}.text' must be a string.", f"{at}.text")
        elif kind == "image":
            source = block.get("source")
            if not isinstance(source, dict) or source.get("type") not in ("base64", "url"):
                raise _bad(f"'{at}.source' must be an object with type 'base64' or 'url'.",
                           f"{at}.source")
            key = "data" if source["type"] == "base64" else "url"
            if not isinstance(source.get(key), str):
                raise _bad(f"'{at}.source.{key}' must be a string.", f"{at}.source.{key}")
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _bad(f"'{at}' (tool_use) needs a string 'id' and 'name'.", f"{at}.id")
            if not isinstance(block.get("input", {}), dict):
                raise _bad(f"'{at}.input' must be an object.", f"{at}.input")
        elif kind == "tool_result":
            if not isinstance(block.get("tool_use_id"), str):
                raise _bad(f"'{at}.tool_use_id' must be a string.", f"{at}.tool_use_id")
            content = block.get("content")
            if isinstance(content, list):
                _check_blocks(content, f"{at}.content")
            elif content is not None and not isinstance(content, str):
                raise _bad(f"'{at}.content' must be a string or an array of blocks.",
                           f"{at}.content")
        elif kind == "document":
            source = block.get("source")
            if not isinstance(source, dict) or source.get("type") != "text" \
                    or not isinstance(source.get("data"), str):
                raise _bad(f"'{at}': only plain-text documents (source type 'text') can be "
                           f"translated for this backend.", f"{at}.source")
        elif kind not in DROPPED_BLOCKS:
            raise _bad(f"'{at}.type' {kind!r} is not a supported content block type.",
                       f"{at}.type")


def _check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("'tools' must be an array.", "tools")
        for j, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise _bad(f"'tools[{j}].name' must be a string.", f"tools[{j}].name")
            schema = tool.get("input_schema")
            if schema is not None and not isinstance(schema, dict):
                raise _bad(f"'tools[{j}].input_schema' must be an object.",
                           f"tools[{j}].input_schema")
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICES:
            raise _bad("'tool_choice.type' must be one of auto, any, tool, none.",
                       "tool_choice.type")
        if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
            raise _bad("'tool_choice.name' is required when tool_choice.type is 'tool'.",
                       "tool_choice.name")


# -- Messages request -> Chat request -------------------------------------------------------

def messages_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The Chat Completions body for a validated Messages body (the input is not modified)."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif isinstance(system, list) and system:
        messages.append({"role": "system", "content": "\n\n".join(b["text"] for b in system)})
    for message in body["messages"]:
        if message["role"] == "user":
            _user_to_chat(message["content"], messages)
        elif message["role"] == "system":
            messages.append({"role": "system", "content": _text_of(message["content"])})
        else:
            messages.append(_assistant_to_chat(message["content"]))
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    if body.get("max_tokens") is not None:
        chat["max_tokens"] = int(body["max_tokens"])
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            chat[key] = body[key]
    if body.get("stop_sequences"):
        chat["stop"] = body["stop_sequences"]
    tools = [t for t in body.get("tools") or () if t.get("type") in (None, "custom")]
    if tools:
        chat["tools"] = [{"type": "function", "function": {
            "name": t["name"], "description": t.get("description") or "",
            "parameters": t.get("input_schema") or {"type": "object", "properties": {}}}}
            for t in tools]
    choice = body.get("tool_choice")
    if choice is not None and tools:
        kind = choice["type"]
        chat["tool_choice"] = ({"type": "function", "function": {"name": choice["name"]}}
                               if kind == "tool" else
                               {"auto": "auto", "any": "required", "none": "none"}[kind])
        if choice.get("disable_parallel_tool_use") is True:
            chat["parallel_tool_calls"] = False
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _image_url(source: dict[str, Any]) -> dict[str, Any]:
    if source["type"] == "url":
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    media = source.get("media_type") or "image/png"
    return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{source['data']}"}}


def _parts(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat content parts for text, image and text-document blocks."""
    parts: list[dict[str, Any]] = []
    for block in blocks:
        kind = block["type"]
        if kind == "text":
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_url(block["source"]))
        elif kind == "document":
            parts.append({"type": "text", "text": block["source"]["data"]})
    return parts


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone text part becomes a plain string (what every chat template handles)."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def _user_to_chat(content: str | list[dict[str, Any]], out: list[dict[str, Any]]) -> None:
    if isinstance(content, str):
        out.append({"role": "user", "content": content})
        return
    # Tool results answer the previous assistant turn, so they come first, as "tool" messages.
    rest: list[dict[str, Any]] = []
    for block in content:
        if block["type"] != "tool_result":
            rest.append(block)
            continue
        result = block.get("content")
        images: list[dict[str, Any]] = []
        if isinstance(result, list):
            parts = _parts(result)
            text = "\n".join(p["text"] for p in parts if p["type"] == "text")
            images = [p for p in parts if p["type"] == "image_url"]
        else:
            text = result or ""
        if block.get("is_error") and not text.startswith("Error"):
            text = "Error: " + text
        out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
        if images:  # tool messages carry text only; the images follow as the user's
            rest.extend({"type": "image", "source": _source_of(p)} for p in images)
    parts = _parts(rest)
    if parts:
        out.append({"role": "user", "content": _content(parts)})


def _source_of(part: dict[str, Any]) -> dict[str, Any]:
    url = part["image_url"]["url"]
    if url.startswith("data:") and ";base64," in url:
        media, _, data = url[5:].partition(";base64,")
        return {"type": "base64", "media_type": media, "data": data}
    return {"type": "url", "url": url}


def _assistant_to_chat(content: str | list[dict[str, Any]]) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        if block["type"] == "text":
            texts.append(block["text"])
        elif block["type"] == "tool_use":
            calls.append({"id": block["id"], "type": "function", "function": {
                "name": block["name"], "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return message


# -- Chat response -> Messages response ------------------------------------------------------

def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _arguments(text: Any) -> dict[str, Any]:
    """Tool arguments as an object; text that is not a JSON object is kept under 'arguments'."""
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"arguments": value}


def _stop_reason(finish: Any, matched: Any, has_calls: bool) -> tuple[str, str | None]:
    if has_calls and finish in (None, "stop", "tool_calls", "function_call"):
        return "tool_use", None
    if finish == "stop" and isinstance(matched, str):  # vLLM names the stop string it hit
        return "stop_sequence", matched
    return FINISH_TO_STOP.get(finish or "stop", "end_turn"), None


def chat_to_messages_response(chat: dict[str, Any], model: str) -> dict[str, Any]:
    """The Messages answer for a Chat Completions answer. Raises ValueError if it has no choice."""
    choices = chat.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("the backend's answer has no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls") or []
    for call in calls:
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or _new_id("toolu_"),
                        "name": function.get("name") or "", "input": _arguments(function.get("arguments"))})
    stop_reason, stop_sequence = _stop_reason(choice.get("finish_reason"), choice.get("stop_reason"),
                                              bool(calls))
    usage = chat.get("usage") or {}
    return {"id": "msg_" + str(chat.get("id") or uuid.uuid4().hex).removeprefix("chatcmpl-"),
            "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": {"input_tokens": int(usage.get("prompt_tokens") or 0),
                      "output_tokens": int(usage.get("completion_tokens") or 0)}}


def translate_chat_answer(raw: bytes, model: str) -> bytes:
    """`chat_to_messages_response` over bytes. Raises ValueError for an unusable answer."""
    try:
        chat = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("the backend's answer is not JSON") from None
    if not isinstance(chat, dict):
        raise ValueError("the backend's answer is not a JSON object")
    return orjson.dumps(chat_to_messages_response(chat, model))


# -- Chat SSE -> Messages SSE -----------------------------------------------------------------

def sse_data(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Split whole lines off `buffer`: (complete lines, the unfinished rest)."""
    cut = buffer.rfind(b"\n") + 1
    if not cut:
        return [], buffer
    return buffer[:cut].split(b"\n")[:-1], buffer[cut:]


class ChatToMessagesStream:
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

    def feed(self, chunk: bytes) -> bytes:
        if self._done:
            return b""
        lines, self._buffer = sse_data(self._buffer + chunk if self._buffer else chunk)
        out: list[bytes] = []
        for line in lines:
            if line.startswith(b"data:"):
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    out.append(self._finish_events())
                    break
                if payload:
                    self._event(orjson.loads(payload), out)
                    if self._done:
                        break
            elif line.startswith(b":"):
                out.append(line + b"\n\n")
        return b"".join(out)

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
        if event.get("error"):
            error = event["error"]
            out.append(self.error(error.get("message") if isinstance(error, dict) else str(error)))
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
        out.append(sse_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                     "delta": {"type": "text_delta", "text": text}}))

    def _tool(self, call: dict[str, Any], out: list[bytes]) -> None:
        position = call.get("index", len(self._tools))
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
            "type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}}))
        out.append(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
        self._done = True
        return b"".join(out)


# -- the reverse: Chat request -> Messages request (for the anthropic backend) ---------------

def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


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
            add("user", [{"type": "tool_result", "tool_use_id": str(message.get("tool_call_id") or ""),
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
                          "input_schema": f.get("parameters") or {"type": "object", "properties": {}}}
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
                "name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
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
                         "finish_reason": STOP_TO_FINISH.get(msg.get("stop_reason") or "", "stop")}],
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
                    out.extend(self._event(orjson.loads(payload)))
        return b"".join(out)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return b"data: " + orjson.dumps({
            "id": self._id, "object": "chat.completion.chunk", "created": self._created,
            "model": self.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"

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
                position = self._tools.get(event.get("index", 0))
                if position is not None and delta.get("partial_json"):
                    yield self._chunk({"tool_calls": [{"index": position, "function": {
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
