"""A small client for the inference agents' control API (`local-ai-inference` on a GPU host).

The agent listens on the same base URL as the backend (`LOCAL_3070_URL`, `GAMING_PC_URL`) and
offers `POST /models/{id}/load` (waits until the model is ready) and `POST /stop-all`. Both answer
the agent's status JSON. Every failure becomes an `AgentError` whose message is a whole sentence.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["AgentClient", "AgentError"]


class AgentError(Exception):
    """The agent could not be reached or refused the request; `message` says why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class AgentClient:
    """Talks to inference agents. Safe to use from many tasks; `close()` once at shutdown.

    `load_timeout` bounds a load (the agent answers only once vLLM is ready, which can take
    minutes); `transport` lets tests swap in an `httpx.MockTransport`.
    """

    def __init__(self, *, timeout: float = 30.0, load_timeout: float = 900.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._load_timeout = load_timeout

    async def load(self, base_url: str, model_id: str) -> dict[str, Any]:
        """Start `model_id` on the agent at `base_url` and wait until it is ready."""
        url = f"{base_url.rstrip('/')}/models/{quote(model_id, safe='')}/load"
        return await self._post(url, f"load {model_id}", self._load_timeout)

    async def stop_all(self, base_url: str) -> dict[str, Any]:
        """Stop every model on the agent at `base_url` (frees the GPU)."""
        return await self._post(f"{base_url.rstrip('/')}/stop-all", "stop all models", None)

    async def _post(self, url: str, what: str, timeout: float | None) -> dict[str, Any]:
        try:
            response = await self._client.post(
                url, timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
        except httpx.TimeoutException:
            raise AgentError(f"The inference agent did not answer '{what}' in time ({url}).") \
                from None
        except httpx.HTTPError as exc:
            raise AgentError(f"The inference agent at {url} could not be reached to {what}: "
                             f"{type(exc).__name__}.") from None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400:
            raise AgentError(f"The inference agent refused to {what} (HTTP "
                             f"{response.status_code}): {_error_message(payload, response.text)}",
                             response.status_code)
        return payload if isinstance(payload, dict) else {}

    async def close(self) -> None:
        await self._client.aclose()


def _error_message(payload: Any, text: str) -> str:
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return text.strip()[:300] or "no details."
