"""Smoke run of the devhost benchmark: it runs end to end and reports sane figures (no timing)."""

from __future__ import annotations

import pytest

from devhost.bench import run

pytestmark = [pytest.mark.bench, pytest.mark.subprocess]


def test_the_benchmark_runs_and_reports_every_figure():
    result = run(samples=5, count=5, concurrency=2)
    assert result.latency_samples == 5
    assert 0 < result.latency_p50_ms <= result.latency_p99_ms
    assert result.orchestrations == 5
    assert result.per_second > 0
    assert "POST-to-202 latency" in result.lines()[0]
