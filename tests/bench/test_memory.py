"""The memory benchmark: its arithmetic and report on made-up samples, its reading of
/proc/self/status, and a smoke run of one small job (nothing asserts an amount of memory)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.memory import MemoryResult, Options, Sample, proc_status_kib, report, run
from localrun.azurite import azurite_bin
from loopserver.testing import missing_service

ROOT = Path(__file__).resolve().parents[2]
MIB_KIB = 1024


def sample(jobs: int, over_mib: float, *, image: int = 15_759_360) -> Sample:
    return Sample(
        jobs=jobs,
        idle_kib=80 * MIB_KIB,
        peak_kib=int((80 + over_mib) * MIB_KIB),
        after_kib=84 * MIB_KIB,
        peak_reset=True,
        wall_s=15.0,
        saved=jobs,
        image_bytes=(image,) * jobs,
        preview_bytes=(image,) * jobs,
        failures=(),
    )


def test_the_ratio_is_the_peak_over_idle_against_every_stored_image():
    one = sample(1, 30.0)
    assert one.over_idle_bytes == 30 * 1024 * 1024
    assert one.per_image() == pytest.approx(30 * 1024 * 1024 / 15_759_360)
    four = sample(4, 60.0)
    assert four.per_image() == pytest.approx(60 * 1024 * 1024 / (4 * 15_759_360))
    assert Sample.from_json(four.to_json()) == four


def test_the_report_gives_each_row_and_the_target():
    result = MemoryResult(
        Options(repetitions=2),
        datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        {1: [sample(1, 19.0), sample(1, 21.0)], 20: [sample(20, 290.0), sample(20, 280.0)]},
    )
    text = "\n".join(report(result))
    assert "memory, 2026-12-01 09:00 UTC" in text
    assert "3840x2160 high png, partial_images 1, route openai" in text
    assert "| 1 | 80.0 | 20.0 (19.0-21.0) | 15.0 (15,759,360 B) | 15.0 x 1 |" in text
    assert "| 20 | 80.0 | 285.0 (280.0-290.0) |" in text
    assert "target: one job <= 3x its image's bytes: 1.40x (met)" in text
    missed = MemoryResult(
        Options(repetitions=1, jobs=(1,)), result.started_at, {1: [sample(1, 60)]}
    )
    assert "(MISSED)" in "\n".join(report(missed))


def test_status_lines_are_read_in_kib():
    status = "Name:\tpython\nVmHWM:\t  123456 kB\nVmRSS:\t   98765 kB\n"
    assert proc_status_kib("VmHWM", status) == 123456
    assert proc_status_kib("VmRSS", status) == 98765
    with pytest.raises(KeyError):
        proc_status_kib("VmSwap", status)
    assert proc_status_kib("VmRSS") > 0  # this process's own


@pytest.mark.bench
@pytest.mark.subprocess
@pytest.mark.azurite
def test_the_benchmark_runs_one_small_job_in_a_worker_and_reports_it():
    if azurite_bin(ROOT) is None:
        missing_service("Azurite", "run `make setup` (npm ci installs azurite 3.35.0)")
    options = Options(repetitions=1, jobs=(1,), size="1024x1024", quality="low")
    result = run(options)
    [measured] = result.samples[1]
    assert measured.saved == 1, measured.failures
    assert measured.peak_reset
    assert measured.peak_kib >= measured.idle_kib > 0
    [image] = measured.image_bytes
    assert image > 1_000_000  # the simulator's 1024x1024 PNG, padded to a real one's size
    assert len(measured.preview_bytes) == 1
    assert "target: one job <= 3x" in "\n".join(report(result))
