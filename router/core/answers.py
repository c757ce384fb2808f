"""What counts as an answer from a backend, and the error a client gets when none came.

`not_an_answer` looks at a first chunk only (cheap, on every request); `client_error` turns the
last upstream failure into the RouterError the client sees, in the OpenAI shape.
"""

from __future__ import annotations

import orjson

from router.errors import RateLimited, RouterError, UpstreamError, UpstreamFailed, error_type

INVALID_ANSWER = "invalid_answer"  # UpstreamError.code: a body that is not an OpenAI answer


_SSE_FIELDS = (b"data:", b":", b"event:", b"id:", b"retry:")


def not_an_answer(first: bytes, stream: bool, content_type: str) -> str | None:
    """What is wrong with a first chunk that cannot be an OpenAI answer (an HTML page from a
    reverse proxy, say), or None. Cheap: it looks at the first line only."""
    head = first.lstrip()
    if stream:
        if head.startswith(_SSE_FIELDS):
            return None
        what = "a first line that is not an SSE field"
    else:
        if head[:1] in (b"{", b"["):
            return None
        what = f"a {content_type.partition(';')[0] or 'non-JSON'} body, not JSON"
    return f"{what} ({snippet(head)!r})"


def snippet(body: bytes) -> str:
    """The first line of `body`, shortened, for an error message."""
    lines = body.lstrip()[:80].decode("utf-8", "replace").splitlines()
    return lines[0] if lines else ""


def _is_openai_error(body: bytes) -> bool:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(payload, dict) and isinstance(payload.get("error"), dict)


class PassThrough(RouterError):
    """A backend's own non-retriable error (e.g. 400), passed to the client as it sent it."""

    def __init__(self, status: int, body: bytes, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.raw = body


def client_error(last: UpstreamError, failures: list[str]) -> RouterError:
    """The error for the client when every candidate failed (`failures`: one line each)."""
    if not last.retriable and last.status is not None and last.body:
        if _is_openai_error(last.body):
            return PassThrough(last.status, last.body, last.message)
        # Not an OpenAI error body (an HTML page from a proxy, plain text): keep the status,
        # but answer in the OpenAI shape the SPEC promises for every error.
        text = last.body[:200].decode("utf-8", "replace").strip()
        wrapped = UpstreamFailed(f"The {last.message}: {text}", status=last.status)
        wrapped.type = error_type(last.status)
        return wrapped
    if last.status == 429:
        return RateLimited("Every candidate backend is rate limited: " + "; ".join(failures) + ".",
                           headers={"Retry-After": last.retry_after or "5"})
    # A backend that answered, but with something that is not an answer, is a bad gateway;
    # backends that could not answer at all leave the service unavailable.
    return UpstreamFailed("No backend could serve this request: " + "; ".join(failures) + ".",
                          status=502 if last.code == INVALID_ANSWER else 503)
