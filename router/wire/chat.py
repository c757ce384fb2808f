"""Parsing and validating an incoming OpenAI request, and reading its routing signals.

Pure functions over bytes and dicts: they raise `BadRequest` with a sentence that names the
field, and never touch the network. The body is forwarded as sent except `model` and the
`#force_big` tag, which is removed from user messages here.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from router.errors import BadRequest, ModelNotFound

FORCE_BIG_TAG = re.compile(r"[ \t]*#force_big\b[ \t]*", re.IGNORECASE)
TRUTHY = frozenset({"true", "1", "yes"})
FORCE_BIG_MODELS = frozenset({"big", "3090"})
MAX_INTEGER = 2**64 - 1  # the largest integer JSON parsing keeps exact (orjson: unsigned 64-bit)

ENDPOINTS = {
    "/v1/chat/completions": "messages",
    "/v1/completions": "prompt",
    "/v1/embeddings": "input",
}


@dataclass(frozen=True)
class Target:
    """Where a requested model points: automatic routing, or a backend with a model hint."""

    backend: str | None  # None = automatic
    hint: str | None = None  # alias hint ("claude") or a served model id


def parse_body(raw: bytes, endpoint: str) -> dict[str, Any]:
    """Decode and validate a request body for `endpoint`. Raises BadRequest naming the problem."""
    body = decode_object(raw)
    _validate(body, endpoint)
    return body


def decode_object(raw: bytes) -> dict[str, Any]:
    """Decode a JSON object body (any wire API). Raises BadRequest naming the problem."""
    try:
        body = orjson.loads(raw)  # checks UTF-8 itself: no decoded copy of a 100 kB prompt
    except orjson.JSONDecodeError as exc:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise BadRequest(f"Request body is not valid UTF-8 (byte {bad.start}).") from None
        if text.strip():
            raise BadRequest(f"Request body is not valid JSON: {exc}.") from None
        body = None
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.")
    return body


def _validate(body: dict[str, Any], endpoint: str) -> None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest("'model' must be a string.", param="model")
    for flag in ("stream",):
        if flag in body and body[flag] is not None and not isinstance(body[flag], bool):
            raise BadRequest(f"'{flag}' must be a boolean.", param=flag)
    for number in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(number)
        if value is not None and not (_is_integer(value) and 0 <= value <= MAX_INTEGER):
            raise BadRequest(f"'{number}' must be a non-negative integer.", param=number)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("'stream_options' must be an object.", param="stream_options")
    required = ENDPOINTS[endpoint]
    if required not in body:
        raise BadRequest(f"'{required}' is required.", param=required)
    if required == "messages":
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty array.", param="messages")
        for index, message in enumerate(messages):
            if not isinstance(message, dict):
                raise BadRequest(f"'messages[{index}]' must be an object.", param=f"messages[{index}]")
            if not isinstance(message.get("role"), str):
                raise BadRequest(f"'messages[{index}].role' must be a string.",
                                 param=f"messages[{index}].role")
            content = message.get("content")
            if content is not None and not isinstance(content, (str, list)):
                raise BadRequest(f"'messages[{index}].content' must be a string or an array.",
                                 param=f"messages[{index}].content")
    elif required == "prompt":
        if not isinstance(body["prompt"], (str, list)):
            raise BadRequest("'prompt' must be a string or an array.", param="prompt")
    elif not isinstance(body["input"], (str, list)):
        raise BadRequest("'input' must be a string or an array.", param="input")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise BadRequest("'tools' must be an array.", param="tools")


def _is_integer(value: Any) -> bool:
    """An integer in JSON's sense: 5 and 5.0 are the same number (as in JSON Schema)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def truthy_header(headers: Mapping[str, str], name: str) -> bool:
    """Whether header `name` says true (`true`, `1` or `yes`)."""
    return headers.get(name, "").strip().lower() in TRUTHY


def force_big_header(headers: Mapping[str, str]) -> bool:
    return truthy_header(headers, "X-Force-Big")


def _may_tag(text: str) -> bool:
    """Whether `text` may hold the tag. Most texts have no "#" at all, which is found without
    the lower-cased copy of a long prompt that the exact test needs."""
    return "#" in text and "#force_big" in text.lower()


def strip_force_big(body: dict[str, Any]) -> bool:
    """Remove `#force_big` from user messages in place; True if the tag was present."""
    found = False
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str) and _may_tag(content):
            stripped, count = FORCE_BIG_TAG.subn(" ", content)
            if count:  # "#force_bigger" contains the text but is not the tag
                message["content"] = stripped.strip()
                found = True
        elif isinstance(content, list):
            for part in content:
                if (isinstance(part, dict) and isinstance(part.get("text"), str)
                        and _may_tag(part["text"])):
                    stripped, count = FORCE_BIG_TAG.subn(" ", part["text"])
                    if count:
                        part["text"] = stripped.strip()
                        found = True
    return found


def resolve_target(model: str | None, aliases: Mapping[str, str], served: Mapping[str, str],
                   backends: Collection[str] = (),
                   globs: Sequence[tuple[str, str]] = ()) -> Target:
    """Map a requested model to a Target. `served` maps backend model ids to backend names.

    In order: `auto` (or none), an exact alias, `backend:model`, a backend's bare name, a model
    id a backend serves, then the first matching glob alias. Raises ModelNotFound (404) otherwise.
    """
    if model is None or model == "" or model == "auto":
        return Target(None)
    alias = aliases.get(model)
    if alias is None:
        backend, sep, hint = model.partition(":")
        if sep and backend in backends:
            return Target(backend, hint or None)
        if model in backends:
            return Target(model)
        served_by = served.get(model)
        if served_by is not None:
            return Target(served_by, model)
        alias = next((target for pattern, target in globs if fnmatch.fnmatchcase(model, pattern)),
                     None)
    if alias is not None:
        if alias == "auto":
            return Target(None)
        backend, _, hint = alias.partition(":")
        return Target(backend, hint or None)
    raise ModelNotFound(
        f"The model '{model}' does not exist. Use 'auto', an alias "
        f"({', '.join(sorted(aliases))}), a backend name or a model listed by GET /v1/models.",
        param="model")


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or ()):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content
                                if isinstance(p, dict) and isinstance(p.get("text"), str))
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def max_tokens(body: dict[str, Any]) -> int:
    value = body.get("max_completion_tokens") or body.get("max_tokens") or 0
    return int(value) if _is_integer(value) else 0
