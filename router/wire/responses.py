"""OpenAI Responses <-> Chat Completions, whole and streamed. Pure; no I/O.

`validate()` -> `responses_to_chat()` -> a Chat backend -> `chat_to_responses_response()` or
`ChatToResponsesStream` (Chat SSE bytes in, Responses SSE events out, each with a
`sequence_number`, ending in `response.completed` or `response.failed`).

The router is stateless: `previous_response_id`, `conversation` and `store: true` are refused
with a 400 that says so (`store: false`, which Codex sends, and an absent `store` are fine).
Items without a Chat equivalent that only carry model state (`reasoning`) are dropped; tools
other than function tools (web search, hosted tools) are dropped, since a Chat backend cannot
run them. Errors use the OpenAI error envelope (`router.errors.error_body`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from router.errors import BadRequest, RouterError, body_for, error_body
from router.wire.chat import MAX_INTEGER, decode_object
from router.wire.messages import (
    ChatStreamTranslator,
    call_position,
    translate_answer,
)
from router.wire.messages_check import _is_int, _one_of

DROPPED_ITEMS = frozenset({"reasoning", "web_search_call", "item_reference", "compaction"})
TOOL_CHOICES = frozenset({"auto", "none", "required"})
CALLABLE_TOOLS = frozenset({"function", "custom"})  # tools a Chat backend can call
# A free-form ("custom") tool, such as Codex's apply_patch, becomes a function tool with one
# string parameter; its calls go back to the client as custom_tool_call items.
CUSTOM_PARAMETERS = {"type": "object", "required": ["input"], "properties": {"input": {
    "type": "string", "description": "The tool's whole free-form input, as text."}}}
MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})
TEXT_PARTS = frozenset({"input_text", "output_text", "text", "refusal"})


def error_for(exc: RouterError) -> dict[str, Any]:
    """The OpenAI error body for a router error (a backend's own OpenAI body as it was)."""
    raw = getattr(exc, "raw", None)
    if isinstance(raw, bytes):
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            error = payload["error"]
            return error_body(str(error.get("message") or exc.message),
                              str(error.get("type") or exc.type), error.get("code"),
                              error.get("param"))
    return body_for(exc)


def _bad(message: str, field: str) -> BadRequest:
    return BadRequest(message, param=field)


def parse(raw: bytes) -> dict[str, Any]:
    body = decode_object(raw)
    validate(body)
    return body


def validate(body: dict[str, Any]) -> None:
    """Check the fields this translation reads. Raises BadRequest naming the first bad field."""
    if body.get("previous_response_id") is not None:
        raise _bad("'previous_response_id' is not supported: this router is stateless and keeps "
                   "no responses. Send the whole conversation in 'input' with 'store': false.",
                   "previous_response_id")
    if body.get("conversation") is not None:
        raise _bad("'conversation' is not supported: this router is stateless. Send the whole "
                   "conversation in 'input'.", "conversation")
    for flag in ("store", "background"):
        if body.get(flag) is not None and not isinstance(body[flag], bool):
            raise _bad(f"'{flag}' must be a boolean.", flag)
    if body.get("store") is True:
        raise _bad("'store': true is not supported: this router is stateless and keeps no "
                   "responses. Send 'store': false (or leave it out).", "store")
    if body.get("background") is True:
        raise _bad("'background': true is not supported by this router.", "background")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("'model' is required and must be a string.", "model")
    items = body.get("input")
    if isinstance(items, list):
        for i, item in enumerate(items):
            _check_item(item, f"input[{i}]")
    elif not isinstance(items, str):
        raise _bad("'input' is required and must be a string or an array of items.", "input")
    if body.get("instructions") is not None and not isinstance(body["instructions"], str):
        raise _bad("'instructions' must be a string.", "instructions")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("'tools' must be an array.", "tools")
        for j, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
                raise _bad(f"'tools[{j}].type' must be a string.", f"tools[{j}].type")
            if tool["type"] in CALLABLE_TOOLS and not isinstance(tool.get("name"), str):
                raise _bad(f"'tools[{j}].name' must be a string.", f"tools[{j}].name")
    choice = body.get("tool_choice")
    if choice is not None and not (isinstance(choice, str) and choice in TOOL_CHOICES) and not (
            isinstance(choice, dict) and _one_of(choice.get("type"), CALLABLE_TOOLS)
            and isinstance(choice.get("name"), str)) and not (
            isinstance(choice, dict) and _one_of(choice.get("type"), TOOL_CHOICES)):
        raise _bad("'tool_choice' must be auto, none, required or "
                   "{\"type\": \"function\", \"name\": ...}.", "tool_choice")
    value = body.get("max_output_tokens")
    if value is not None and not (_is_int(value) and 0 <= value <= MAX_INTEGER):
        raise _bad("'max_output_tokens' must be a non-negative integer.", "max_output_tokens")
    for number in ("temperature", "top_p"):
        item = body.get(number)
        if item is not None and (isinstance(item, bool) or not isinstance(item, (int, float))):
            raise _bad(f"'{number}' must be a number.", number)
    for flag in ("stream", "parallel_tool_calls"):
        if body.get(flag) is not None and not isinstance(body[flag], bool):
            raise _bad(f"'{flag}' must be a boolean.", flag)
    if body.get("text") is not None and not isinstance(body["text"], dict):
        raise _bad("'text' must be an object.", "text")


def _check_item(item: Any, at: str) -> None:
    if not isinstance(item, dict):
        raise _bad(f"'{at}' must be an object.", at)
    kind = item.get("type", "message")
    if kind == "message":
        if not _one_of(item.get("role"), MESSAGE_ROLES):
            raise _bad(f"'{at}.role' must be user, assistant, system or developer.", f"{at}.role")
        content = item.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                where = f"{at}.content[{j}]"
                if not isinstance(part, dict):
                    raise _bad(f"'{where}' must be an object.", where)
                ptype = part.get("type")
                if _one_of(ptype, TEXT_PARTS):
                    key = "refusal" if ptype == "refusal" else "text"
                    if not isinstance(part.get(key), str):
                        raise _bad(f"'{where}.{key}' must be a string.", f"{where}.{key}")
                elif ptype == "input_image":
                    if not isinstance(part.get("image_url"), str):
                        raise _bad(f"'{where}.image_url' must be a string (a URL or data URL); "
                                   f"file ids are not supported.", f"{where}.image_url")
                else:
                    raise _bad(f"'{where}.type' {ptype!r} is not supported.", f"{where}.type")
        elif not isinstance(content, str):
            raise _bad(f"'{at}.content' must be a string or an array.", f"{at}.content")
    elif kind == "function_call":
        for key in ("call_id", "name", "arguments"):
            if not isinstance(item.get(key), str):
                raise _bad(f"'{at}.{key}' must be a string.", f"{at}.{key}")
    elif kind == "custom_tool_call":
        for key in ("call_id", "name", "input"):
            if not isinstance(item.get(key), str):
                raise _bad(f"'{at}.{key}' must be a string.", f"{at}.{key}")
    elif kind in ("function_call_output", "custom_tool_call_output"):
        if not isinstance(item.get("call_id"), str):
            raise _bad(f"'{at}.call_id' must be a string.", f"{at}.call_id")
        if not isinstance(item.get("output"), (str, list)):
            raise _bad(f"'{at}.output' must be a string or an array.", f"{at}.output")
    elif not _one_of(kind, DROPPED_ITEMS):
        raise _bad(f"'{at}.type' {kind!r} is not supported.", f"{at}.type")


# -- Responses request -> Chat request -------------------------------------------------------

def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", p.get("refusal", ""))) for p in content
                   if isinstance(p, dict) and _one_of(p.get("type"), TEXT_PARTS))


def _user_content(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "input_image":
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail") in ("low", "high"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            parts.append({"type": "text", "text": part.get("text", part.get("refusal", ""))})
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def responses_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The Chat Completions body for a validated Responses body (the input is not modified)."""
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    items = body["input"]
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    else:
        for item in items:
            _item_to_chat(item, messages)
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = int(body["max_output_tokens"])
    for key in ("temperature", "top_p", "parallel_tool_calls"):
        if body.get(key) is not None:
            chat[key] = body[key]
    tools = [t for t in body.get("tools") or () if t.get("type") in CALLABLE_TOOLS]
    if tools:
        chat["tools"] = [{"type": "function", "function": {
            "name": t["name"], "description": t.get("description") or "",
            "parameters": CUSTOM_PARAMETERS if t["type"] == "custom"
            else t.get("parameters") or {"type": "object", "properties": {}}}}
            for t in tools]
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            choice = ({"type": "function", "function": {"name": choice["name"]}}
                      if choice["type"] in CALLABLE_TOOLS else choice["type"])
        if choice is not None:
            chat["tool_choice"] = choice
    fmt = (body.get("text") or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema", "json_schema": {
            k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _item_to_chat(item: dict[str, Any], out: list[dict[str, Any]]) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        role = item["role"]
        if role in ("system", "developer"):
            text = _text(item["content"])
            if out and out[-1]["role"] == "system" and len(out) == 1:
                out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + text}
            else:
                out.append({"role": "system", "content": text})
        elif role == "assistant":
            out.append({"role": "assistant", "content": _text(item["content"])})
        else:
            out.append({"role": "user", "content": _user_content(item["content"])})
    elif kind in ("function_call", "custom_tool_call"):
        arguments = item["arguments"] if kind == "function_call" else \
            orjson.dumps({"input": item["input"]}).decode()
        call = {"id": item["call_id"], "type": "function",
                "function": {"name": item["name"], "arguments": arguments}}
        last = out[-1] if out else None
        if last is not None and last["role"] == "assistant":
            # Parallel calls (and a call after the assistant's text) are one Chat turn.
            last.setdefault("tool_calls", []).append(call)
            if not last.get("content"):
                last["content"] = None
        else:
            out.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind in ("function_call_output", "custom_tool_call_output"):
        output = item["output"]
        out.append({"role": "tool", "tool_call_id": item["call_id"],
                    "content": output if isinstance(output, str) else _text(output)})


# -- Chat answer -> Responses answer ---------------------------------------------------------

def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion}


def response_object(response_id: str, model: str, created: int, status: str,
                    output: list[dict[str, Any]], usage: dict[str, Any] | None,
                    error: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Responses `response` object with every field the SDKs read."""
    return {"id": response_id, "object": "response", "created_at": created, "status": status,
            "error": error,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete" else None,
            "instructions": None, "max_output_tokens": None, "model": model, "output": output,
            "parallel_tool_calls": True, "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None}, "store": False, "temperature": None,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
            "top_p": None, "truncation": "disabled", "usage": usage, "user": None, "metadata": {}}


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": content if status == "completed" else []}


def _call_item(item_id: str, call_id: str, name: str, arguments: str,
               status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id,
            "name": name, "arguments": arguments}


def custom_tools(body: dict[str, Any]) -> frozenset[str]:
    """Names of the request's free-form (custom) tools, whose calls need custom_tool_call items."""
    tools = body.get("tools")
    return frozenset(t["name"] for t in tools if isinstance(t, dict) and t.get("type") == "custom"
                     ) if isinstance(tools, list) else frozenset()


def _custom_item(item_id: str, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A custom_tool_call item; its input is the `input` argument the model was asked for."""
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        value = arguments
    text = value.get("input") if isinstance(value, dict) else value
    return {"id": item_id, "type": "custom_tool_call", "status": "completed", "call_id": call_id,
            "name": name, "input": text if isinstance(text, str) else orjson.dumps(text).decode()}


def chat_to_responses_response(chat: dict[str, Any], model: str,
                               custom: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The Responses answer for a Chat Completions answer. Raises ValueError without a choice."""
    choices = chat.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("the backend's answer has no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    base = uuid.uuid4().hex[:24]
    output: list[dict[str, Any]] = []
    if isinstance(message.get("content"), str) and message["content"]:
        output.append(_message_item(f"msg_{base}", message["content"]))
    for n, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments or {}).decode()
        name, call_id = function.get("name") or "", call.get("id") or f"call_{base}_{n}"
        output.append(_custom_item(f"ctc_{base}_{n}", call_id, name, arguments) if name in custom
                      else _call_item(f"fc_{base}_{n}", call_id, name, arguments))
    usage = chat.get("usage") or {}
    status = "incomplete" if choice.get("finish_reason") == "length" else "completed"
    return response_object(f"resp_{base}", model, int(chat.get("created") or time.time()), status,
                           output, _usage(int(usage.get("prompt_tokens") or 0),
                                          int(usage.get("completion_tokens") or 0)))


def translate_chat_answer(raw: bytes, model: str, custom: frozenset[str] = frozenset()) -> bytes:
    """`chat_to_responses_response` over bytes. Raises ValueError for an unusable answer."""
    return translate_answer(raw, lambda chat: chat_to_responses_response(chat, model, custom))


# -- Chat SSE -> Responses SSE ---------------------------------------------------------------

class ChatToResponsesStream(ChatStreamTranslator):
    """Chat Completions SSE bytes in, Responses streaming events out.

    Order: response.created, response.in_progress; per output item response.output_item.added,
    then for text response.content_part.added, response.output_text.delta..., .output_text.done,
    .content_part.done, or for a call response.function_call_arguments.delta..., .done; then
    response.output_item.done; finally response.completed with the whole response and usage.
    A Chat error event or an end before any finish reason gives `response.failed` and sets
    `failed`. Every event carries `sequence_number`. SSE comments pass through. Loop-only.
    """

    def __init__(self, model: str, input_tokens: int = 0,
                 custom: frozenset[str] = frozenset()) -> None:
        self.model = model
        self.custom = custom
        self.failed: str | None = None
        self._base = uuid.uuid4().hex[:24]
        self._id = f"resp_{self._base}"
        self._created = int(time.time())
        self._seq = 0
        self._buffer = b""
        self._started = False
        self._done = False
        self._output: list[dict[str, Any]] = []
        self._text: list[str] | None = None  # the open message item's text
        self._calls: dict[int, int] = {}  # chat tool index -> output index
        self._open_call: int | None = None
        self._finish: str | None = None
        self._input = input_tokens
        self._completion = 0

    def _emit(self, kind: str, payload: dict[str, Any], out: list[bytes]) -> None:
        event = {"type": kind, **payload, "sequence_number": self._seq}  # "type" first, as sent
        self._seq += 1
        out.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n")

    def _response(self, status: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        usage = _usage(self._input, self._completion) if status != "in_progress" else None
        return response_object(self._id, self.model, self._created, status, self._output, usage,
                               error)

    def _on_done(self, out: list[bytes]) -> None:
        self._complete(out)

    def end(self) -> bytes:
        if self._done:
            return b""
        if self._finish is None:
            return self.error("the backend ended the stream before finishing the answer")
        out: list[bytes] = []
        self._complete(out)
        return b"".join(out)

    def error(self, message: str) -> bytes:
        out: list[bytes] = []
        self.failed = message
        self._start(out)
        self._done = True
        self._emit("response.failed", {"response": self._response(
            "failed", {"code": "server_error", "message": message})}, out)
        return b"".join(out)

    def _start(self, out: list[bytes]) -> None:
        if not self._started:
            self._started = True
            self._emit("response.created", {"response": self._response("in_progress")}, out)
            self._emit("response.in_progress", {"response": self._response("in_progress")}, out)

    def _event(self, event: Any, out: list[bytes]) -> None:
        if not isinstance(event, dict):
            return
        self._start(out)
        usage = event.get("usage")
        if isinstance(usage, dict):
            self._input = int(usage.get("prompt_tokens") or self._input)
            self._completion = int(usage.get("completion_tokens") or self._completion)
        for choice in event.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self._delta_text(delta["content"], out)
            for call in delta.get("tool_calls") or ():
                self._delta_call(call, out)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]

    def _delta_text(self, text: str, out: list[bytes]) -> None:
        self._close_call(out)
        index = len(self._output) - 1
        if self._text is None:
            self._text = []
            index = len(self._output)
            item = _message_item(f"msg_{self._base}_{index}", "", "in_progress")
            self._output.append(item)
            self._emit("response.output_item.added", {"output_index": index, "item": item}, out)
            self._emit("response.content_part.added", {
                "item_id": item["id"], "output_index": index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}, out)
        self._text.append(text)
        self._emit("response.output_text.delta", {
            "item_id": self._output[index]["id"], "output_index": index, "content_index": 0,
            "delta": text, "logprobs": []}, out)

    def _close_text(self, out: list[bytes]) -> None:
        if self._text is None:
            return
        index = len(self._output) - 1
        item_id = self._output[index]["id"]
        text = "".join(self._text)
        self._text = None
        part = {"type": "output_text", "text": text, "annotations": []}
        self._emit("response.output_text.done", {"item_id": item_id, "output_index": index,
                                                  "content_index": 0, "text": text,
                                                  "logprobs": []}, out)
        self._emit("response.content_part.done", {"item_id": item_id, "output_index": index,
                                                   "content_index": 0, "part": part}, out)
        item = self._output[index] = _message_item(item_id, text)
        self._emit("response.output_item.done", {"output_index": index, "item": item}, out)

    def _delta_call(self, call: dict[str, Any], out: list[bytes]) -> None:
        position = call_position(call, self._calls)
        function = call.get("function") or {}
        index = self._calls.get(position)
        if index is None:
            self._close_text(out)
            self._close_call(out)
            index = self._calls[position] = self._open_call = len(self._output)
            name = function.get("name") or ""
            call_id = call.get("id") or f"call_{self._base}_{index}"
            item = _call_item(f"fc_{self._base}_{index}", call_id, name, "", "in_progress")
            self._output.append(item)
            added = item if name not in self.custom else {
                "id": item["id"], "type": "custom_tool_call", "status": "in_progress",
                "call_id": item["call_id"], "name": name, "input": ""}
            self._emit("response.output_item.added", {"output_index": index, "item": added}, out)
        arguments = function.get("arguments")
        if arguments:
            item = self._output[index]
            item["arguments"] += arguments
            if item["name"] not in self.custom:  # a custom call's input is sent whole at the end
                self._emit("response.function_call_arguments.delta", {
                    "item_id": item["id"], "output_index": index, "delta": arguments}, out)

    def _close_call(self, out: list[bytes]) -> None:
        if self._open_call is None:
            return
        index, self._open_call = self._open_call, None
        item = self._output[index]
        item["status"] = "completed"
        if item["name"] in self.custom:
            item = self._output[index] = _custom_item(item["id"], item["call_id"], item["name"],
                                                      item["arguments"])
            self._emit("response.custom_tool_call_input.done", {
                "item_id": item["id"], "output_index": index, "input": item["input"]}, out)
            self._emit("response.output_item.done", {"output_index": index, "item": item}, out)
            return
        self._emit("response.function_call_arguments.done", {
            "item_id": item["id"], "output_index": index, "name": item["name"],
            "arguments": item["arguments"]}, out)
        self._emit("response.output_item.done", {"output_index": index, "item": item}, out)

    def _complete(self, out: list[bytes]) -> None:
        self._start(out)
        self._close_text(out)
        self._close_call(out)
        self._done = True
        status = "incomplete" if self._finish == "length" else "completed"
        self._emit("response.completed", {"response": self._response(status)}, out)
