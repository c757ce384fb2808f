"""The router's exception tree and the one helper that turns any of them into an OpenAI error body.

Every error a client can see is a `RouterError` with an HTTP status, an OpenAI `type` and `code`,
and a message that is a whole sentence saying what is wrong. HTTP handlers and the bot convert
them in exactly one place (`error_body`).
"""

from __future__ import annotations

from typing import Any


class RouterError(Exception):
    """Base of every error the router reports to a client."""

    status = 500
    type = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}


class BadRequest(RouterError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class Unauthorized(RouterError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(RouterError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(RouterError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(RouterError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class BodyTooLarge(RouterError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(RouterError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class ContextLengthExceeded(RouterError):
    """No configured backend's context window could ever hold the prompt (not worth a retry)."""

    status = 400
    type = "invalid_request_error"
    code = "context_length_exceeded"


class NoBackendAvailable(RouterError):
    status = 503
    type = "server_error"
    code = "no_backend_available"


class UpstreamFailed(RouterError):
    """Every candidate failed; carries the last upstream status when there was one."""

    status = 502
    type = "server_error"
    code = "upstream_error"

    def __init__(self, message: str, *, status: int = 502, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status


# OpenAI's error `type` for each HTTP status (anything else: invalid_request_error below 500,
# server_error from 500). Anthropic's own table is in router/wire/messages.py.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "invalid_request_error", 413: "invalid_request_error",
               429: "rate_limit_error"}


def error_type(status: int) -> str:
    """The OpenAI error `type` for an HTTP status."""
    return ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_body(message: str, type_: str = "server_error", code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    """The OpenAI error envelope: every one the router builds comes from here."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def body_for(exc: RouterError) -> dict[str, Any]:
    return error_body(exc.message, exc.type, exc.code, exc.param)


# Failures between the router and a backend. They never reach a client as they are: the service
# turns them into fallback, a RouterError, or an error event on a stream.

class UpstreamError(Exception):
    """The backend could not give a usable answer before the first byte.

    `retriable` says whether the next candidate should be tried (refused, timed out, 5xx, 429).
    """

    def __init__(self, message: str, *, status: int | None = None, retriable: bool = True,
                 body: bytes | None = None, retry_after: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retriable = retriable
        self.body = body
        self.retry_after = retry_after
        self.code = code  # the backend's error code, e.g. "gaming_mode" from a gaming PC's agent


class StreamBroken(Exception):
    """The upstream failed after the first byte (connection lost, timeout, bad data)."""
