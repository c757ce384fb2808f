"""Anthropic Messages <-> Chat Completions, both ways, whole and streamed. Pure; no I/O.

Client side (`POST /v1/messages` served by a Chat Completions backend):
`validate()` (messages_check) -> `messages_to_chat()` -> the backend ->
`chat_to_messages_response()` here, or `ChatToMessagesStream` (messages_stream: Chat SSE bytes
in, Anthropic SSE event bytes out).

Backend side (the `anthropic` backend asked for Chat Completions), in messages_upstream:
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

import uuid
from collections.abc import Callable
from typing import Any

import orjson

from router.errors import RouterError
from router.wire.messages_check import parse as parse  # re-exported
from router.wire.messages_check import validate as validate

# What reading a JSON value of an unexpected shape raises (a backend's answer is not trusted).
BAD_SHAPE = (AttributeError, KeyError, TypeError, ValueError)
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; Chat bodies often leave it out
# Claude Code opens its system prompt with an attribution block that changes on every request;
# left in, it defeats a local backend's prefix cache (the whole prompt is recomputed each turn).
BILLING_HEADER = "x-anthropic-billing-header:"

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


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


# -- Messages request -> Chat request -------------------------------------------------------

def messages_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The Chat Completions body for a validated Messages body (the input is not modified)."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif isinstance(system, list) and system:
        texts = [b["text"] for b in system if not b["text"].startswith(BILLING_HEADER)]
        if texts:
            messages.append({"role": "system", "content": "\n\n".join(texts)})
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
    """Chat content parts for text, image and document blocks (a document that is not plain
    text, such as a PDF, becomes a note saying it was left out)."""
    parts: list[dict[str, Any]] = []
    for block in blocks:
        kind = block["type"]
        if kind == "text":
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_url(block["source"]))
        elif kind == "document":
            source = block["source"]
            if source.get("type") == "text" and isinstance(source.get("data"), str):
                parts.append({"type": "text", "text": source["data"]})
            else:
                media = source.get("media_type") or source.get("type") or "binary"
                parts.append({"type": "text", "text": f"[A {media} document was attached here; "
                                                      f"this model cannot read it.]"})
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
                "name": block["name"],
                "arguments": orjson.dumps(block.get("input") or {}).decode()}})
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
                        "name": function.get("name") or "",
                        "input": _arguments(function.get("arguments"))})
    stop_reason, stop_sequence = _stop_reason(choice.get("finish_reason"),
                                              choice.get("stop_reason"), bool(calls))
    usage = chat.get("usage") or {}
    return {"id": "msg_" + str(chat.get("id") or uuid.uuid4().hex).removeprefix("chatcmpl-"),
            "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": {"input_tokens": int(usage.get("prompt_tokens") or 0),
                      "output_tokens": int(usage.get("completion_tokens") or 0)}}


def translate_answer(raw: bytes, translate: Callable[[dict[str, Any]], dict[str, Any]]) -> bytes:
    """A whole Chat Completions answer, as bytes, through `translate`, as bytes.

    Raises ValueError for an unusable answer (not JSON, not an object, an unexpected shape).
    """
    try:
        chat = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("the backend's answer is not JSON") from None
    if not isinstance(chat, dict):
        raise ValueError("the backend's answer is not a JSON object")
    try:
        return orjson.dumps(translate(chat))
    except BAD_SHAPE as exc:
        raise ValueError(f"the backend's answer has an unexpected shape ({exc})") from None


def translate_chat_answer(raw: bytes, model: str) -> bytes:
    """`chat_to_messages_response` over bytes. Raises ValueError for an unusable answer."""
    return translate_answer(raw, lambda chat: chat_to_messages_response(chat, model))


def _error_text(error: Any) -> str:
    """The message of an error event's `error` (an object with `message`, or anything)."""
    return str(error.get("message") or error) if isinstance(error, dict) else str(error)


class ChatStreamTranslator:
    """The line loop every Chat Completions SSE translator shares (Messages, Responses).

    Subclasses keep `_buffer` and `_done`, and give `_event` (one parsed chunk), `_on_done`
    (`data: [DONE]`; must set `_done`) and `error` (an error event; sets `_done`). Comment lines
    (keep-alives) pass through as they are.
    """

    _buffer: bytes
    _done: bool

    def feed(self, chunk: bytes) -> bytes:
        if self._done:
            return b""
        lines, self._buffer = sse_data(self._buffer + chunk if self._buffer else chunk)
        out: list[bytes] = []
        for line in lines:
            if line.startswith(b"data:"):
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    self._on_done(out)
                elif payload:
                    try:
                        event = orjson.loads(payload)
                        if isinstance(event, dict) and event.get("error"):
                            out.append(self.error(_error_text(event["error"])))
                        else:
                            self._event(event, out)
                    except BAD_SHAPE as exc:
                        out.append(self.error(f"the backend sent an event of an unexpected "
                                              f"shape ({type(exc).__name__}: {exc})"))
                if self._done:
                    break
            elif line.startswith(b":"):
                out.append(line + b"\n\n")
        return b"".join(out)

    def _event(self, event: Any, out: list[bytes]) -> None:
        """One parsed chunk (error events are handled before)."""
        raise NotImplementedError

    def _on_done(self, out: list[bytes]) -> None:
        raise NotImplementedError

    def error(self, message: str) -> bytes:
        raise NotImplementedError


def call_position(call: dict[str, Any], seen: dict[int, int]) -> int:
    """The Chat `tool_calls[].index` of a streamed call delta. Some backends leave `index` out:
    then a delta with a new id starts the next call and one without continues the last."""
    index = call.get("index")
    if isinstance(index, int):
        return index
    if call.get("id") or not seen:
        return len(seen)
    return max(seen)


def sse_data(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Split whole lines off `buffer`: (complete lines, the unfinished rest)."""
    cut = buffer.rfind(b"\n") + 1
    if not cut:
        return [], buffer
    return buffer[:cut].split(b"\n")[:-1], buffer[cut:]
