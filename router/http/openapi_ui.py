"""OpenAPI description of the dashboard's routes (router/http/ui.py), merged into
`router.http.openapi.spec()`. Response schemas are as loose as the page needs and as strict as
the handlers guarantee, so schemathesis can check them. Pure data.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"
ERROR = {"$ref": "#/components/schemas/Error"}
KEYED: list[dict[str, list[str]]] = [{}, {"apiKey": []}]


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ERROR}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


_PAGE = {"get": {"summary": "The dashboard (HTML; loads without a key).", "responses": {
    "200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}}}}
_DECISION = {"type": "object", "required": ["request_id", "created_at", "candidates", "skipped",
                                            "failures"],
             "properties": {"request_id": {"type": "string"}, "created_at": {"type": "string"},
                            "candidates": {"type": "array", "items": {"type": "string"}},
                            "skipped": {"type": "object"}, "failures": {"type": "array"}}}
_SERIES = {"type": "array", "items": {"type": ["number", "null"]}}
_ADMIN_ERRORS = {"400": _error("The body is not {\"model\": \"<id>\"}."),
                 "401": _error("Missing or wrong admin token."),
                 "403": _error("ROUTER_ADMIN_TOKEN is not set: admin endpoints are off."),
                 "404": _error("No backend has that name."),
                 "409": _error("The backend is not an inference agent."),
                 "502": _error("The agent could not be reached or refused (its reason).")}
_NAME = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
          "example": "3070"}]
_AGENT_RESULT = _json("What was done, and the agent's status.", {
    "type": "object", "required": ["message", "agent"],
    "properties": {"message": {"type": "string"}, "agent": {"type": "object"}}})


def paths() -> dict[str, Any]:
    return {
        "/ui": _PAGE,
        "/ui/": _PAGE,
        "/ui/static/{path}": {"get": {
            "summary": "The page's static files (its script, styles, vendored uPlot).",
            "parameters": [{"name": "path", "in": "path", "required": True,
                            "schema": {"type": "string"}, "example": "app.js"}],
            "responses": {"200": {"description": "A file."},
                          "404": _error("No such file.")}}},
        "/ui/api/status": {"get": {
            "summary": "/status plus context windows and each inference agent's models and GPU.",
            "security": KEYED,
            "responses": {"200": _json("Status for the dashboard.", {
                "type": "object",
                "required": ["gaming_mode", "backends", "admin_enabled", "api_key_required"],
                "properties": {"backends": {"type": "array", "items": {
                    "type": "object", "required": ["name", "healthy", "agent"],
                    "properties": {"agent": {"type": ["object", "null"]}}}}}}),
                "401": _error("Missing or wrong API key (ROUTER_API_KEYS is set).")}}},
        "/ui/api/decisions": {"get": {
            "summary": "The newest decision rows, newest first.",
            "security": KEYED,
            "parameters": [{"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
            "responses": {"200": _json("Rows.", {
                "type": "object", "required": ["data"],
                "properties": {"data": {"type": "array", "items": _DECISION}}}),
                "400": _error("limit is not an integer from 1 to 1000."),
                "401": _error("Missing or wrong API key (ROUTER_API_KEYS is set).")}}},
        "/ui/api/stats": {"get": {
            "summary": "Per-backend buckets: requests, tokens, errors, fallbacks, p50/p95 ms.",
            "security": KEYED,
            "parameters": [{"name": "window", "in": "query", "required": False,
                            "schema": {"enum": ["24h", "7d"]}}],
            "responses": {"200": _json("Time series.", {
                "type": "object", "required": ["window", "bucket_seconds", "buckets", "backends"],
                "properties": {
                    "buckets": {"type": "array", "items": {"type": "integer"}},
                    "backends": {"type": "object", "additionalProperties": {
                        "type": "object",
                        "required": ["requests", "tokens", "fallbacks", "errors", "p50_ms",
                                     "p95_ms"],
                        "additionalProperties": _SERIES}}}}),
                "400": _error("window is not 24h or 7d."),
                "401": _error("Missing or wrong API key (ROUTER_API_KEYS is set).")}}},
        "/ui/events": {"get": {
            "summary": "Live feed (Server-Sent Events, never ends by itself): `decision`, "
                       "`backend` and `gaming` events.",
            "security": KEYED,
            "responses": {"200": {"description": "An event stream.", "content": {
                "text/event-stream": {"schema": {
                    "type": "object", "required": ["event", "data"],
                    "properties": {"event": {"enum": ["hello", "decision", "backend", "gaming"]},
                                   "data": {"type": "string"}}}}}},
                "401": _error("Missing or wrong API key (ROUTER_API_KEYS is set).")}}},
        "/admin/backends/{name}/load": {"post": {
            "summary": "Load a model through the backend's inference agent (waits until ready).",
            "security": [{"adminToken": []}],
            "parameters": _NAME,
            "requestBody": {"required": True, "content": {JSON: {"schema": {
                "type": "object", "required": ["model"],
                "properties": {"model": {"type": "string", "minLength": 1}}}}}},
            "responses": {"200": _AGENT_RESULT, **_ADMIN_ERRORS}}},
        "/admin/backends/{name}/stop": {"post": {
            "summary": "Stop every model on the backend's inference agent.",
            "security": [{"adminToken": []}],
            "parameters": _NAME,
            "responses": {"200": _AGENT_RESULT, **_ADMIN_ERRORS}}},
    }
