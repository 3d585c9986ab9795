"""Percentiles and the Markdown table the benchmarks print."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..1) of ``values``; no interpolation."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True)
class Summary:
    """p50 and p99 of one set of latencies, in milliseconds."""

    n: int
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, latencies_ms: Sequence[float]) -> Summary:
        return cls(len(latencies_ms), percentile(latencies_ms, 0.5), percentile(latencies_ms, 0.99))

    def cell(self) -> str:
        return f"{self.p50_ms:.1f} / {self.p99_ms:.1f}"


def ratio(ours: float, anchor: float) -> float:
    return ours / anchor if anchor > 0 else float("inf")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table, one string per line."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines
