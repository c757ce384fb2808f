"""The agent's exception tree and the one helper that builds every OpenAI error envelope.

Every failure a client can see is an `AgentError` subclass carrying its HTTP status, OpenAI error
`type` and `code`; `error_body` / `error_response` turn it into
`{"error": {"message", "type", "param", "code"}}`. Only the app's middleware and the proxy (for
errors after the first streamed byte) call them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


def error_body(
    message: str,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """The OpenAI error envelope as a dict."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An OpenAI-shaped JSON error response with `status`."""
    return web.json_response(
        error_body(message, type_, code, param), status=status, headers=headers
    )


class AgentError(Exception):
    """Base of every error the agent reports to a client; the message is a whole sentence."""

    status = 500
    type_ = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def to_response(self) -> web.Response:
        return error_response(self.status, self.message, self.type_, self.code, self.param)


class BadRequest(AgentError):
    """The request body or a field is malformed."""

    status = 400
    type_ = "invalid_request_error"
    code = "invalid_request"


class ModelNotFound(AgentError):
    """The requested model id is not configured on this host."""

    status = 404
    type_ = "invalid_request_error"
    code = "model_not_found"


class GamingModeRefused(AgentError):
    """Gaming mode is on and the request did not carry `X-Force-Big: true`."""

    status = 503
    type_ = "service_unavailable"
    code = "gaming_mode"


class ModelStartFailed(AgentError):
    """vLLM exited early, never became healthy in time, or was stopped while starting."""

    status = 503
    type_ = "service_unavailable"
    code = "model_start_failed"


class ModelUnavailable(AgentError):
    """A ready model could not be reached (crashed or stopped during the request)."""

    status = 503
    type_ = "service_unavailable"
    code = "model_unavailable"
