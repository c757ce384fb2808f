"""The OpenAPI 3.1 description of the router's own HTTP API, served at `GET /openapi.json`.

Request schemas mirror `router.wire.chat`'s validation exactly (a body the schema accepts is not
refused as malformed, and one it rejects gets 400), so schema-driven tools such as schemathesis
can check the live router. Forwarded fields beyond those the router reads are allowed and passed
on to the backend as sent. Pure data: `spec()` builds a fresh dict on each call.
"""

from __future__ import annotations

import copy
from typing import Any

from router.http import openapi_agents, openapi_ui
from router.wire.chat import MAX_INTEGER

JSON = "application/json"


def _nullable(type_: str | list[str], **extra: Any) -> dict[str, Any]:
    types = [type_] if isinstance(type_, str) else list(type_)
    return {"type": [*types, "null"], **extra}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


ROUTED_HEADERS = {
    "X-Request-ID": {"description": "The client's X-Request-ID, or a new id.",
                     "schema": {"type": "string"}},
    "X-Routed-Backend": {"description": "3070, 3090 or opencode.", "schema": {"type": "string"}},
    "X-Routed-Model": {"description": "The backend's model id.", "schema": {"type": "string"}},
    "X-Route-Reason": {"description": "The routing reason code.", "schema": {"type": "string"}},
}

MAX_INT = MAX_INTEGER  # larger counts are refused (orjson reads them as inexact floats)

_COMMON_FIELDS: dict[str, Any] = {
    "model": _nullable("string", description="auto (default), an alias or a backend model id"),
    "stream": _nullable("boolean"),
    "stream_options": _nullable("object"),
    "max_tokens": _nullable("integer", minimum=0, maximum=MAX_INT),
    "max_completion_tokens": _nullable("integer", minimum=0, maximum=MAX_INT),
    "n": _nullable("integer", minimum=0, maximum=MAX_INT),
    "tools": _nullable("array"),
}


def _request(required: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": [required],
            "properties": {**_COMMON_FIELDS, required: schema}}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["message", "type", "param", "code"],
            "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                           "param": _nullable("string"), "code": _nullable("string")}}},
    },
    "ChatCompletionRequest": _request("messages", {
        "type": "array", "minItems": 1,
        "items": {"type": "object", "required": ["role"],
                  "properties": {"role": {"type": "string"},
                                 "content": _nullable(["string", "array"])}}}),
    "CompletionRequest": _request("prompt", {"type": ["string", "array"]}),
    "EmbeddingRequest": _request("input", {"type": ["string", "array"]}),
    "BackendAnswer": {"type": "object",
                      "description": "The backend's OpenAI-shaped answer, passed through."},
    "RouteDecision": {
        "type": "object",
        "required": ["backend", "model", "reason", "estimated_tokens", "gaming_mode", "force_big",
                     "candidates"],
        "properties": {
            "backend": _nullable("string"), "model": _nullable("string"),
            "reason": _nullable("string"), "estimated_tokens": {"type": "integer"},
            "gaming_mode": {"type": "boolean"}, "force_big": {"type": "boolean"},
            "candidates": {"type": "array", "items": {"type": "string"}},
            "skipped": {"type": "object"}},
    },
    "ModelList": {
        "type": "object", "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {
            "type": "object", "required": ["id", "object", "created", "owned_by"],
            "properties": {"id": {"type": "string"}, "object": {"const": "model"},
                           "created": {"type": "integer"}, "owned_by": {"type": "string"},
                           "max_model_len": {"type": "integer"}}}}},
    },
    "Status": {
        "type": "object",
        "required": ["gaming_mode", "small_token_threshold", "medium_token_threshold", "backends"],
        "properties": {
            "gaming_mode": {"type": "boolean"},
            "small_token_threshold": {"type": "integer"},
            "medium_token_threshold": {"type": "integer"},
            "backends": {"type": "array", "items": {
                "type": "object",
                "required": ["name", "url", "healthy", "gated", "models", "latency_ms", "last_error"],
                "properties": {
                    "name": {"type": "string"},
                    "url": {"type": "string", "description": "Credentials are shown as ***."},
                    "healthy": {"type": "boolean"}, "gated": {"type": "boolean"},
                    "models": {"type": "array", "items": {"type": "object"}},
                    "latency_ms": _nullable("number"), "last_error": _nullable("string")}}},
            "decision_log": {"type": "object"}},
    },
    "GamingMode": {"type": "object", "required": ["enabled"],
                   "properties": {"enabled": {"type": "boolean"},
                                  "backend": {"type": ["string", "null"],
                                              "description": "One gaming backend (default: all)."},
                                  "backends": {"type": "object",
                                               "additionalProperties": {"type": "boolean"}}}},
    "GamingModeChange": {
        "type": "object", "required": ["enabled", "applied", "message"],
        "properties": {"enabled": {"type": "boolean"}, "applied": {"type": "boolean"},
                       "message": {"type": "string"},
                       "backends": {"type": "object", "additionalProperties": {"type": "boolean"}}}},
    "Reload": {
        "type": "object", "required": ["reloaded", "config", "backends", "message"],
        "properties": {"reloaded": {"type": "boolean"}, "config": {"type": "string"},
                       "backends": {"type": "array", "items": {"type": "string"}},
                       "changed": {"type": "array", "items": {"type": "string"}},
                       "removed": {"type": "array", "items": {"type": "string"}},
                       "restart_needed": {"type": "array", "items": {"type": "string"}},
                       "message": {"type": "string"}}},
}

# Backends' own client errors (e.g. 422 for a field vLLM rejects) are passed through as sent.
_PROXY_ERRORS = {
    "400": _error("Malformed JSON or a field of the wrong type."),
    "401": _error("ROUTER_API_KEYS is set and the key is missing or wrong."),
    "404": _error("Unknown model."),
    "413": _error("Body larger than MAX_BODY_BYTES."),
    "429": _error("Rate limited (per key, or every candidate backend)."),
    "4XX": _error("A backend's own client error, passed through."),
    "502": _error("The backend failed."),
    "503": _error("No backend can serve the request; the message says why."),
}


def _proxy(summary: str, schema: str, stream: bool) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": {"$ref": "#/components/schemas/BackendAnswer"}}}
    if stream:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    return {
        "summary": summary,
        "security": [{}, {"apiKey": []}],
        "requestBody": {"required": True,
                        "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}},
        "responses": {"200": {"description": "The backend's answer (SSE when stream is true).",
                              "headers": ROUTED_HEADERS, "content": content},
                      **_PROXY_ERRORS},
    }


def spec() -> dict[str, Any]:
    """The OpenAPI document (a new dict each call; callers may mutate it)."""
    admin_errors = {"401": _error("Missing or wrong admin token."),
                    "403": _error("ROUTER_ADMIN_TOKEN is not set: admin endpoints are off.")}
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {"title": "local-ai-router", "version": "1",
                 "description": "One OpenAI-compatible entry point routing to the 3070, the "
                                "3090 and OpenCode, with a decision log."},
        "paths": {
            "/v1/chat/completions": {"post": _proxy("Chat completion, routed.",
                                                    "ChatCompletionRequest", True)},
            "/v1/completions": {"post": _proxy("Text completion, routed.", "CompletionRequest",
                                               True)},
            "/v1/embeddings": {"post": _proxy("Embeddings, routed.", "EmbeddingRequest", False)},
            **openapi_agents.paths(ROUTED_HEADERS),
            **openapi_ui.paths(),  # the dashboard
            "/v1/route": {"post": {
                "summary": "Where a chat request would go (dry run, nothing is forwarded).",
                "security": [{}, {"apiKey": []}],
                "requestBody": {"required": True, "content": {JSON: {"schema": {
                    "$ref": "#/components/schemas/ChatCompletionRequest"}}}},
                "responses": {
                    "200": _json("The decision.", {"$ref": "#/components/schemas/RouteDecision"}),
                    "400": _PROXY_ERRORS["400"], "401": _PROXY_ERRORS["401"],
                    "404": _PROXY_ERRORS["404"], "413": _PROXY_ERRORS["413"]}}},
            "/v1/models": {"get": {
                "summary": "auto, the aliases and every backend model.",
                "security": [{}, {"apiKey": []}],
                "responses": {"200": _json("Models.", {"$ref": "#/components/schemas/ModelList"}),
                              "401": _PROXY_ERRORS["401"]}}},
            "/health": {"get": {"summary": "Liveness.", "responses": {"200": _json(
                "Alive.", {"type": "object", "required": ["status"],
                           "properties": {"status": {"const": "ok"}}})}}},
            "/status": {"get": {"summary": "Backends, gaming mode and thresholds.",
                                "responses": {"200": _json(
                                    "Status.", {"$ref": "#/components/schemas/Status"})}}},
            "/metrics": {"get": {"summary": "Prometheus metrics.", "responses": {"200": {
                "description": "Prometheus text format.",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/admin/gaming-mode": {
                "get": {"summary": "Is gaming mode on?", "security": [{"adminToken": []}],
                        "responses": {"200": _json("State.",
                                                   {"$ref": "#/components/schemas/GamingMode"}),
                                      **admin_errors}},
                "post": {"summary": "Turn gaming mode on or off (also on the gaming PC).",
                         "security": [{"adminToken": []}],
                         "requestBody": {"required": True, "content": {JSON: {"schema": {
                             "$ref": "#/components/schemas/GamingMode"}}}},
                         "responses": {"200": _json("The change.", {
                             "$ref": "#/components/schemas/GamingModeChange"}),
                             "400": _error("Body is not {\"enabled\": bool}."),
                             "404": _error("No gaming backend has that name."), **admin_errors}},
            },
            "/admin/reload": {
                "post": {"summary": "Re-read the home-lab file (ROUTER_CONFIG) for new requests.",
                         "security": [{"adminToken": []}],
                         "responses": {"200": _json("What changed.",
                                                    {"$ref": "#/components/schemas/Reload"}),
                                       "400": _error("The file is invalid; nothing changed."),
                                       **admin_errors}},
            },
            "/openapi.json": {"get": {"summary": "This document.", "responses": {
                "200": _json("OpenAPI 3.1.", {"type": "object", "required": ["openapi"]})}}},
        },
        "components": {
            "schemas": {**SCHEMAS, **openapi_agents.SCHEMAS},
            "securitySchemes": {
                **openapi_agents.SECURITY,
                "apiKey": {"type": "http", "scheme": "bearer",
                           "description": "A key from ROUTER_API_KEYS (only when it is set)."},
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": "ROUTER_ADMIN_TOKEN."},
            },
        },
    })
