"""LimitedBackend: requests per minute and concurrency, refusing with a retriable 429."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from router.backends.base import HealthReport, ModelInfo, Upstream, UpstreamError
from router.backends.limits import LimitedBackend


class StubBackend:
    name = "opencode"
    url = "http://stub"

    def __init__(self) -> None:
        self.released = 0
        self.fail: UpstreamError | None = None

    async def send(self, path, body, *, stream, headers, header_timeout=None) -> Upstream:
        if self.fail:
            raise self.fail

        async def chunks() -> AsyncIterator[bytes]:
            yield b"{}"

        async def release() -> None:
            self.released += 1

        return Upstream(200, "application/json", chunks(), release)

    async def check_health(self) -> HealthReport:
        return HealthReport(True, models=(ModelInfo("a/b"),))

    def resolve_model(self, hint, models) -> str:
        return "a/b"

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def send(backend):
    return await backend.send("/v1/chat/completions", {}, stream=False, headers={})


async def test_concurrency_slot_is_held_until_release():
    inner = StubBackend()
    limited = LimitedBackend(inner, concurrency=1)
    first = await send(limited)
    with pytest.raises(UpstreamError) as err:
        await send(limited)
    assert err.value.status == 429 and err.value.retriable and err.value.retry_after == "1"
    assert b"rate_limit_exceeded" in err.value.body and "OPENCODE_CONCURRENCY" in err.value.message
    await first.release()
    assert inner.released == 1
    await (await send(limited)).release()


async def test_failed_send_gives_the_slot_back():
    inner = StubBackend()
    inner.fail = UpstreamError("down")
    limited = LimitedBackend(inner, concurrency=1)
    for _ in range(3):
        with pytest.raises(UpstreamError, match="down"):
            await send(limited)
    assert limited.in_flight == 0


async def test_rpm_window_slides_and_reports_retry_after():
    clock = Clock()
    limited = LimitedBackend(StubBackend(), rpm=2, clock=clock)
    await (await send(limited)).release()
    clock.now += 20
    await (await send(limited)).release()
    clock.now += 10
    with pytest.raises(UpstreamError) as err:
        await send(limited)
    assert err.value.status == 429 and err.value.retry_after == "30"
    assert "OPENCODE_RPM" in err.value.message
    clock.now += 30
    await (await send(limited)).release()


async def test_zero_means_unlimited_and_the_rest_is_delegated():
    limited = LimitedBackend(StubBackend())
    upstreams = [await send(limited) for _ in range(50)]
    assert limited.in_flight == 50
    for upstream in upstreams:
        await upstream.release()
    assert limited.in_flight == 0
    assert (await limited.check_health()).models[0].id == "a/b"
    assert limited.resolve_model("glm", ()) == "a/b" and limited.name == "opencode"
