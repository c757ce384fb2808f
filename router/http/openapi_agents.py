"""OpenAPI description of the agent APIs (`/v1/messages`, `/v1/messages/count_tokens`,
`/v1/responses`), merged into `router.http.openapi.spec()`.

The request schemas mirror `router.wire.messages_check` and `router.wire.responses.validate`
exactly (a body the schema accepts is translated, one it rejects gets a 400), so schemathesis can
check the live router. Fields the router does not read are allowed and ignored. Pure data.
"""

from __future__ import annotations

from typing import Any

from router.wire.chat import MAX_INTEGER

JSON = "application/json"
REF = "#/components/schemas/"


def _opt(type_: str | list[str], **extra: Any) -> dict[str, Any]:
    types = [type_] if isinstance(type_, str) else list(type_)
    return {"type": [*types, "null"], **extra}


def _block(kind: str, required: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["type", *required],
            "properties": {"type": {"const": kind}, **required}}


_DROPPED = ["thinking", "redacted_thinking", "server_tool_use", "web_search_tool_result",
            "search_result", "container_upload"]

SCHEMAS: dict[str, Any] = {
    "AnthropicError": {
        "type": "object", "required": ["type", "error"],
        "properties": {"type": {"const": "error"}, "error": {
            "type": "object", "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}},
    "ContentBlock": {"oneOf": [
        _block("text", {"text": {"type": "string"}}),
        _block("image", {"source": {"oneOf": [
            _block("base64", {"data": {"type": "string"}}),
            _block("url", {"url": {"type": "string"}})]}}),
        {**_block("tool_use", {"id": {"type": "string"}, "name": {"type": "string"}}),
         "properties": {"type": {"const": "tool_use"}, "id": {"type": "string"},
                        "name": {"type": "string"}, "input": {"type": "object"}}},
        {**_block("tool_result", {"tool_use_id": {"type": "string"}}),
         "properties": {"type": {"const": "tool_result"}, "tool_use_id": {"type": "string"},
                        "content": {"type": ["string", "array", "null"],
                                    "items": {"$ref": REF + "ContentBlock"}}}},
        _block("document", {"source": {"type": "object"}}),
        {"type": "object", "required": ["type"], "properties": {"type": {"enum": _DROPPED}}},
    ]},
    "MessagesRequest": {
        "type": "object", "required": ["model", "max_tokens", "messages"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "examples": ["auto"]},
            "max_tokens": {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER},
            "messages": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["role", "content"],
                "properties": {"role": {"enum": ["user", "assistant", "system"]},
                               "content": {"type": ["string", "array"],
                                           "items": {"$ref": REF + "ContentBlock"}}}}},
            "system": {"type": ["string", "array", "null"], "items": {
                "type": "object", "required": ["text"],
                "properties": {"text": {"type": "string"}}}},
            "tools": _opt("array", items={
                "type": "object", "required": ["name"],
                "properties": {"name": {"type": "string"}, "input_schema": _opt("object")}}),
            "tool_choice": {"oneOf": [
                {"type": "null"},
                {"type": "object", "required": ["type"],
                 "properties": {"type": {"enum": ["auto", "any", "none"]}}},
                {"type": "object", "required": ["type", "name"],
                 "properties": {"type": {"const": "tool"}, "name": {"type": "string"}}}]},
            "stop_sequences": _opt("array", items={"type": "string"}),
            "stream": _opt("boolean"),
            "temperature": _opt("number"), "top_p": _opt("number"), "top_k": _opt("number"),
            "metadata": _opt("object"), "thinking": _opt("object"),
        }},
    "MessagesResponse": {"type": "object", "required": ["id", "type", "role", "content", "model"],
                         "properties": {"type": {"const": "message"}}},
    "InputItem": {"oneOf": [
        {"type": "object", "required": ["role", "content"],
         "properties": {"type": {"const": "message"},
                        "role": {"enum": ["user", "assistant", "system", "developer"]},
                        "content": {"type": ["string", "array"], "items": {"oneOf": [
                            _block("input_text", {"text": {"type": "string"}}),
                            _block("output_text", {"text": {"type": "string"}}),
                            _block("text", {"text": {"type": "string"}}),
                            _block("refusal", {"refusal": {"type": "string"}}),
                            _block("input_image", {"image_url": {"type": "string"}})]}}}},
        _block("function_call", {"call_id": {"type": "string"}, "name": {"type": "string"},
                                 "arguments": {"type": "string"}}),
        _block("function_call_output", {"call_id": {"type": "string"},
                                        "output": {"type": ["string", "array"]}}),
        _block("custom_tool_call", {"call_id": {"type": "string"}, "name": {"type": "string"},
                                    "input": {"type": "string"}}),
        _block("custom_tool_call_output", {"call_id": {"type": "string"},
                                           "output": {"type": ["string", "array"]}}),
        {"type": "object", "required": ["type"], "properties": {"type": {
            "enum": ["reasoning", "web_search_call", "item_reference", "compaction"]}}},
    ]},
    "ResponsesRequest": {
        "type": "object", "required": ["model", "input"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "examples": ["auto"]},
            "input": {"type": ["string", "array"], "items": {"$ref": REF + "InputItem"}},
            "instructions": _opt("string"),
            "previous_response_id": {"type": "null",
                                     "description": "Refused: the router is stateless."},
            "conversation": {"type": "null", "description": "Refused: the router is stateless."},
            "store": {"enum": [False, None], "description": "true is refused (stateless)."},
            "background": {"enum": [False, None]},
            "tools": _opt("array", items={
                "type": "object", "required": ["type"],
                "properties": {"type": {"type": "string"}},
                "if": {"properties": {"type": {"enum": ["function", "custom"]}}},
                "then": {"required": ["name"], "properties": {"name": {"type": "string"}}}}),
            "tool_choice": {"oneOf": [
                {"type": "null"}, {"enum": ["auto", "none", "required"]},
                {"type": "object", "required": ["type", "name"],
                 "properties": {"type": {"enum": ["function", "custom"]},
                                "name": {"type": "string"}}},
                {"type": "object", "required": ["type"],
                 "properties": {"type": {"enum": ["auto", "none", "required"]}}}]},
            "max_output_tokens": _opt("integer", minimum=0, maximum=MAX_INTEGER),
            "temperature": _opt("number"), "top_p": _opt("number"),
            "stream": _opt("boolean"), "parallel_tool_calls": _opt("boolean"),
            "text": _opt("object"),
        }},
    "ResponsesResponse": {"type": "object", "required": ["id", "object", "status", "output"],
                          "properties": {"object": {"const": "response"}}},
}


def _errors(schema: str) -> dict[str, Any]:
    def error(description: str) -> dict[str, Any]:
        return {"description": description,
                "content": {JSON: {"schema": {"$ref": REF + schema}}}}
    return {"400": error("A malformed body; the message names the field."),
            "401": error("ROUTER_API_KEYS is set and the key (x-api-key or Bearer) is missing "
                         "or wrong."),
            "404": error("Unknown model."), "413": error("Body larger than MAX_BODY_BYTES."),
            "429": error("Rate limited."), "4XX": error("A backend's own client error."),
            "502": error("The backend failed."),
            "503": error("No backend can serve the request; the message says why.")}


def _routed(summary: str, request: str, example: dict[str, Any], answer: str, errors: str,
            headers: dict[str, Any]) -> dict[str, Any]:
    return {"post": {
        "summary": summary, "security": [{}, {"apiKey": []}, {"xApiKey": []}],
        "requestBody": {"required": True, "content": {JSON: {"schema": {"$ref": REF + request},
                                                             "example": example}}},
        "responses": {"200": {"description": "The answer (SSE events when stream is true).",
                              "headers": headers,
                              "content": {JSON: {"schema": {"$ref": REF + answer}},
                                          "text/event-stream": {"schema": {"type": "string"}}}},
                      **_errors(errors)}}}


def _count_request() -> dict[str, Any]:
    """MessagesRequest without max_tokens (count_tokens neither needs nor reads it)."""
    schema = SCHEMAS["MessagesRequest"]
    properties = {k: v for k, v in schema["properties"].items() if k != "max_tokens"}
    return {**schema, "required": ["model", "messages"], "properties": properties}


def paths(routed_headers: dict[str, Any]) -> dict[str, Any]:
    count_errors = {k: v for k, v in _errors("AnthropicError").items()
                    if k in ("400", "401", "413")}
    return {
        "/v1/messages": _routed("Anthropic Messages, routed (translated to Chat Completions "
                                "unless the backend serves Messages natively).",
                                "MessagesRequest", {"model": "auto", "max_tokens": 64, "messages": [
                                    {"role": "user", "content": "Hello"}]},
                                "MessagesResponse", "AnthropicError",
                                routed_headers),
        "/v1/messages/count_tokens": {"post": {
            "summary": "The router's estimate of a Messages prompt's tokens (not routed).",
            "security": [{}, {"apiKey": []}, {"xApiKey": []}],
            "requestBody": {"required": True, "content": {JSON: {"schema": _count_request()}}},
            "responses": {"200": {"description": "The estimate.", "content": {JSON: {"schema": {
                "type": "object", "required": ["input_tokens"],
                "properties": {"input_tokens": {"type": "integer"}}}}}}, **count_errors}}},
        "/v1/responses": _routed("OpenAI Responses, routed (stateless; translated to Chat "
                                 "Completions).", "ResponsesRequest",
                                 {"model": "auto", "input": "Hello", "store": False},
                                 "ResponsesResponse", "Error",
                                 routed_headers),
    }


SECURITY = {"xApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                        "description": "A key from ROUTER_API_KEYS, Anthropic style."}}
