"""Smoke run of the edge-latency benchmark: it runs end to end and reports every figure."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.edge_latency import Options, run
from localrun.azurite import azurite_bin
from loopserver.testing import missing_service

pytestmark = [pytest.mark.bench, pytest.mark.subprocess, pytest.mark.azurite]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("jobs", ["queued", "attempt"])
def test_the_benchmark_runs_and_reports_every_figure(jobs):
    if azurite_bin(ROOT) is None:
        missing_service("Azurite", "run `make setup` (npm ci installs azurite 3.35.0)")
    result = run(Options(sequential=3, concurrency=3, rounds=1, warmup=1, trace=True, jobs=jobs))
    assert [f.name for f in result.figures] == [
        "start, sequential",
        "status, sequential",
        "start, 3 concurrent",
        "status, 3 pollers during the starts",
    ]
    for figure in result.figures:
        for side in (figure.ours, figure.anchor):
            assert side.n > 0
            assert 0 < side.p50_ms <= side.p99_ms
        assert figure.p50_ratio > 0
        assert figure.p99_ratio > 0
    assert result.figures[0].ours.n == 3
    assert result.figures[2].ours.n == 3
    text = "\n".join(result.lines())
    assert "| start, sequential |" in text
    assert "ratio p50 / p99" in text
    # --trace: this app's round trips, timed inside the host, and devhost's per-function lines.
    rounds = result.trace["start, sequential"]
    assert rounds["durable client: get_status"]
    assert rounds["durable client: start_new(image_job)"]
    assert result.functions["start, sequential"]["start_image_job"]
    assert result.cpu["start, sequential"]["devhost"] >= 0
