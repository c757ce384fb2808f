"""Turn the benchmark's measurements into one Markdown table with targets and pass/fail."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    figure: str
    value: str
    target: str
    passed: bool | None  # None: a reference figure without a target

    @property
    def verdict(self) -> str:
        return "—" if self.passed is None else ("PASS" if self.passed else "**FAIL**")


def ms(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f} ms"


def ratio(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if value < 1:  # three places, so 0.495 against a bound of 0.50 does not print as "0.50×"
        return f"{value:.3f}×"
    return f"{value:.2f}×" if value < 10 else f"{value:.0f}×"


def check(value: float, ok: bool) -> bool | None:
    return None if math.isnan(value) else ok


def table(rows: list[Row]) -> str:
    lines = ["| figure | value | target | result |", "| --- | ---: | --- | --- |"]
    lines += [f"| {r.figure} | {r.value} | {r.target} | {r.verdict} |" for r in rows]
    return "\n".join(lines)
