"""One backend whose health check raises (against the `Backend.check_health` contract,
e.g. OpenCode answering `/config/providers` in an unexpected shape) must not stop the others'
health from being applied, nor crash start-up or the scheduled check."""

from __future__ import annotations

from router.backends.base import HealthReport
from router.core.registry import BackendRegistry


class _Fake:
    def __init__(self, name: str, report: HealthReport | Exception) -> None:
        self.name = name
        self.url = f"http://{name}.invalid"
        self._report = report

    async def check_health(self) -> HealthReport:
        if isinstance(self._report, Exception):
            raise self._report
        return self._report

    async def send(self, *_a, **_k):  # pragma: no cover - not used
        raise NotImplementedError

    def resolve_model(self, hint, models):  # pragma: no cover - not used
        return hint or "m"

    async def close(self) -> None:
        pass


async def test_a_raising_health_check_marks_only_that_backend_down() -> None:
    registry = BackendRegistry([
        _Fake("3070", HealthReport(True)),
        _Fake("opencode", AttributeError("'list' object has no attribute 'items'")),
    ])
    await registry.check_all()
    assert registry.states["3070"].healthy is True
    assert registry.states["opencode"].healthy is False
    assert "AttributeError" in (registry.states["opencode"].last_error or "")
