"""The pieces the hot path was rebuilt from (issue 10's speed work), each on its own: the
first-byte watchdog and its shared clock, remembered token counts, request ids, usage read off an
answer's tail, and the event loop `serve` picks. The router-level behaviour (fail-over from a hung
backend, cold starts) is tested end to end in test_fallback.py and tests/coldstart."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from router.clock import WatchClock
from router.core import tokens
from router.core.waiting import Watchdog
from router.http.serving import loop_factory
from router.logs import new_request_id
from router.settings import ConfigError, Settings
from router.wire.usage import UsageMeter

# -- the watchdog -----------------------------------------------------------------------------


def _probe(alive: bool, calls: list[float]):  # type: ignore[no-untyped-def]
    async def probe() -> bool:
        calls.append(time.monotonic())
        return alive
    return probe


async def test_a_silent_backend_that_fails_its_probe_is_hung() -> None:
    clock, calls = WatchClock(asyncio.get_running_loop()), []
    started = time.monotonic()
    watchdog = Watchdog(clock, 0.2, 30, _probe(False, calls))
    with pytest.raises(TimeoutError):
        async with watchdog:
            await asyncio.sleep(10)
    assert "did not answer a health check (hung)" in watchdog.verdict
    assert len(calls) == 1 and 0.2 <= calls[0] - started < 2.0  # generous: a busy 2-core CI


async def test_a_busy_backend_is_waited_for_until_its_limit() -> None:
    clock, calls = WatchClock(asyncio.get_running_loop()), []
    started = time.monotonic()
    watchdog = Watchdog(clock, 0.15, 0.7, _probe(True, calls))
    with pytest.raises(TimeoutError):
        async with watchdog:
            await asyncio.sleep(10)
    elapsed = time.monotonic() - started
    assert watchdog.verdict == "sent nothing before its time ran out"
    assert len(calls) >= 2  # probed after each silence, answered every time
    assert 0.7 <= elapsed < 3.0


async def test_signs_of_life_defer_the_probe_and_an_allowance_extends_the_limit() -> None:
    clock, calls = WatchClock(asyncio.get_running_loop()), []
    async with Watchdog(clock, 0.2, 0.3, _probe(False, calls)) as watchdog:
        for i in range(8):  # 0.8 s in all: past the silence and the first limit
            await asyncio.sleep(0.1)
            watchdog.touch(1.0 if i == 0 else None)
    assert calls == []  # never silent for 0.2 s, so never probed


async def test_a_block_that_finishes_in_time_is_untouched_and_the_clock_goes_idle() -> None:
    loop = asyncio.get_running_loop()
    clock = WatchClock(loop)
    async with Watchdog(clock, 5, 30, _probe(False, [])):
        await asyncio.sleep(0.01)
    await asyncio.sleep(2 * WatchClock.TICK)
    assert clock._handle is None  # nothing watched: no tick keeps the loop busy


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    clock = WatchClock(asyncio.get_running_loop())

    async def wait() -> None:
        async with Watchdog(clock, 5, 30, _probe(False, [])):
            await asyncio.sleep(10)

    task = asyncio.create_task(wait())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- remembered token counts ------------------------------------------------------------------


async def test_a_repeated_prompt_is_counted_once_and_on_the_loop(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    tokens.forget_counts()
    big = {"messages": [{"role": "system", "content": "word " * 3000},
                        {"role": "user", "content": "hello"}]}
    first = await tokens.estimate(big)
    threads: list[object] = []
    real = asyncio.to_thread

    async def counting_to_thread(fn, *args):  # type: ignore[no-untyped-def]
        threads.append(fn)
        return await real(fn, *args)

    monkeypatch.setattr(asyncio, "to_thread", counting_to_thread)
    again = await tokens.estimate({"messages": [dict(m) for m in big["messages"]]})
    assert again == first and threads == []  # every text known: no worker thread needed
    grown = {"messages": [*big["messages"], {"role": "user", "content": "word " * 2000}]}
    assert await tokens.estimate(grown) > first and len(threads) == 1  # only new text is new


def test_remembered_counts_are_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(tokens, "COUNT_CACHE_SIZE", 10)
    tokens.forget_counts()
    for i in range(25):
        assert tokens.count_text(f"text number {i}") > 0
    assert 0 < len(tokens._counts) <= 10


# -- request ids ------------------------------------------------------------------------------


def test_request_ids_look_like_uuid_hex_and_never_repeat() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


# -- usage read off an answer -----------------------------------------------------------------


@pytest.mark.parametrize("body,expected", [
    # usage last, with a nested object, and the text "usage" quoted inside the content
    (b'{"id":"c","choices":[{"message":{"content":"the \\"usage\\": {\\"prompt_tokens\\":99}"}}],'
     b'"usage":{"prompt_tokens":12,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":2}}}',
     (12, 7)),
    # usage first (Anthropic's order), followed by other keys
    (b'{"id":"m","usage":{"input_tokens":5,"output_tokens":6},"content":[{"type":"text","text":"hi"}]}',
     (5, 6)),
    # usage nested in a Responses object: the tail is not an object of its own, so all is parsed
    (b'{"type":"response","response":{"usage":{"input_tokens":3,"output_tokens":4}},"x":1}', (3, 4)),
    # no usage at all
    (b'{"id":"c","choices":[]}', (None, None)),
])
def test_usage_is_read_from_whole_answers(body: bytes, expected: tuple[int | None, int | None]) -> None:
    meter = UsageMeter()
    meter.feed(body)
    assert (meter.prompt_tokens, meter.completion_tokens) == expected


# -- the event loop `serve` runs on -----------------------------------------------------------


def test_the_event_loop_setting() -> None:
    import uvloop

    assert Settings.from_env({}).event_loop == "auto"
    assert loop_factory("auto") is uvloop.new_event_loop  # a dependency on Linux and macOS
    assert loop_factory("uvloop") is uvloop.new_event_loop
    assert loop_factory("asyncio") is None
    with pytest.raises(ConfigError, match="EVENT_LOOP must be auto, uvloop or asyncio"):
        Settings.from_env({"EVENT_LOOP": "trio"})
