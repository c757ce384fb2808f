"""vLLM's sleep-mode endpoints, as three calls the process state machine makes.

vLLM serves `POST /sleep?level=1`, `POST /wake_up` and `GET /is_sleeping` only when it runs with
`VLLM_SERVER_DEV_MODE=1` and `--enable-sleep-mode`, and sleep works on CUDA builds only. An engine
that answers `POST /sleep` with an HTTP error (404/405: no such endpoint, dev mode off; 5xx: an
engine that cannot sleep, such as the CPU build) or that does not report sleeping afterwards raises
`SleepUnsupported`, which the agent remembers so it stops that model instead from then on; a
transport failure (timeout, connection) raises `SleepFailed` and counts once. Each call blocks
for one HTTP round trip (wake: until `/is_sleeping` says false or the deadline passes); none of
them retries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

SLEEP_LEVEL = 1
# Level-1 sleep copies the weights to host memory: seconds on a 3090, so allow a generous bound.
SLEEP_TIMEOUT = aiohttp.ClientTimeout(total=120)
POLL_TIMEOUT = aiohttp.ClientTimeout(total=5)
WAKE_POLL_SECONDS = 0.25
_NO_ENDPOINT = (404, 405, 501)


class SleepFailed(Exception):
    """A sleep or wake call failed; the message is a whole sentence."""


class SleepUnsupported(SleepFailed):
    """The engine has no sleep mode (the endpoints do not exist)."""


async def is_sleeping(session: aiohttp.ClientSession, base_url: str) -> bool:
    """vLLM's `GET /is_sleeping`; raises `SleepUnsupported` (404) or `SleepFailed`."""
    try:
        async with session.get(f"{base_url}/is_sleeping", timeout=POLL_TIMEOUT) as resp:
            if resp.status in _NO_ENDPOINT:
                raise SleepUnsupported(f"GET /is_sleeping answered {resp.status}.")
            if resp.status != 200:
                raise SleepFailed(f"GET /is_sleeping answered {resp.status}.")
            body = await resp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        raise SleepFailed(f"GET /is_sleeping failed: {exc.__class__.__name__}: {exc}.") from None
    if not isinstance(body, dict) or not isinstance(body.get("is_sleeping"), bool):
        raise SleepFailed(f"GET /is_sleeping answered {body!r}, not {{\"is_sleeping\": bool}}.")
    return bool(body["is_sleeping"])


async def put_to_sleep(session: aiohttp.ClientSession, base_url: str) -> None:
    """`POST /sleep?level=1`, then check `/is_sleeping`; raises `SleepUnsupported`/`SleepFailed`."""
    try:
        async with session.post(f"{base_url}/sleep", params={"level": str(SLEEP_LEVEL)},
                                timeout=SLEEP_TIMEOUT) as resp:
            if resp.status in _NO_ENDPOINT:
                raise SleepUnsupported(f"POST /sleep answered {resp.status}")
            if resp.status >= 300:
                text = (await resp.text())[:200].strip()
                raise SleepUnsupported(f"POST /sleep answered {resp.status}: {text}")
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise SleepFailed(f"POST /sleep failed: {exc.__class__.__name__}: {exc}.") from None
    if not await is_sleeping(session, base_url):
        raise SleepUnsupported("POST /sleep succeeded but GET /is_sleeping still says false")


async def wake_up(
    session: aiohttp.ClientSession,
    base_url: str,
    timeout: float,
    exited: Callable[[], bool],
) -> None:
    """`POST /wake_up`, then poll `/is_sleeping` until false; raises `SleepFailed`.

    Gives up after `timeout` seconds, or at once when `exited()` says the process is gone.
    """
    deadline = time.monotonic() + timeout
    try:
        async with session.post(f"{base_url}/wake_up",
                                timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status >= 300:
                raise SleepFailed(f"POST /wake_up answered {resp.status}.")
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise SleepFailed(f"POST /wake_up failed: {exc.__class__.__name__}: {exc}.") from None
    while await is_sleeping(session, base_url):
        if exited():
            raise SleepFailed("The engine exited while waking up.")
        if time.monotonic() >= deadline:
            raise SleepFailed(f"The engine was still asleep {timeout:g} seconds after /wake_up.")
        await asyncio.sleep(WAKE_POLL_SECONDS)
