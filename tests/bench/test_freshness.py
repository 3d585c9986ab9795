"""The freshness benchmark: its reading of the ledger, its arithmetic and report on made-up
rounds, and one tiny real run (nothing asserts a speed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.freshness import (
    ANCHOR_CHARS,
    BASE_CHARS,
    FreshnessResult,
    Options,
    Sample,
    Seen,
    partial_left_at,
    prompt,
    run,
    samples_of,
)
from localrun.azurite import azurite_bin
from loopserver.testing import missing_service

ROOT = Path(__file__).resolve().parents[2]


def test_each_prompt_has_its_length_and_round():
    assert len(prompt(ANCHOR_CHARS, 3)) == ANCHOR_CHARS
    assert len(prompt(BASE_CHARS + 2, 3)) == BASE_CHARS + 2
    assert prompt(BASE_CHARS, 1) != prompt(BASE_CHARS, 2)
    with pytest.raises(ValueError, match="cannot hold"):
        prompt(10, 1)


def test_rounds_cover_every_job():
    assert Options(jobs=20, concurrency=4).rounds == 5
    assert Options(jobs=5, concurrency=4).rounds == 2
    assert Options(jobs=1, concurrency=4).rounds == 1


def test_a_partial_leaves_at_arrival_plus_first_byte_and_only_when_sent():
    entries: list[dict[str, Any]] = [
        {
            "shape": {"prompt_chars": 90},
            "received_at": 100.0,
            "first_byte_s": 0.8,
            "partials_sent": 1,
        },
        {
            "shape": {"prompt_chars": 100},
            "received_at": 100.1,
            "first_byte_s": 0.9,
            "partials_sent": 1,
        },
        # a 429: no partial ever left
        {
            "shape": {"prompt_chars": 101},
            "received_at": 100.1,
            "first_byte_s": None,
            "partials_sent": 0,
        },
        {"shape": None, "received_at": 100.2},
    ]
    assert partial_left_at(entries) == pytest.approx({90: 100.8, 100: 101.0})


def test_samples_subtract_the_moment_it_left_and_mark_the_anchor():
    seen = [
        Seen(ANCHOR_CHARS, 100.83),
        Seen(100, 101.25, 101.3, polls=12, job_id="a", state="saved"),
        Seen(101, None, None, polls=30, job_id="b", state="failed"),
    ]
    found = samples_of(2, seen, {90: 100.8, 100: 101.0, 101: 101.0})
    assert [s.anchor for s in found] == [True, False, False]
    assert found[0].visible_s == pytest.approx(0.03)
    assert found[1].visible_s == pytest.approx(0.25)
    assert found[1].fetched_s == pytest.approx(0.3)
    assert found[2].visible_s is None


def made_up(visible: list[float | None], anchor: list[float]) -> FreshnessResult:
    samples = [Sample(0, True, a, None) for a in anchor]
    samples += [Sample(0, False, v, None if v is None else v + 0.01) for v in visible]
    jobs = [Seen(100 + i, 1.0, 1.0, polls=10, state="saved") for i in range(len(visible))]
    return FreshnessResult(Options(jobs=len(visible), concurrency=2), samples, jobs, "today")


def test_the_report_gives_percentiles_the_ratio_and_the_target():
    # Nearest rank: p50 of five is the third, p95 the fifth.
    result = made_up([0.2, 0.4, 0.25, 0.3, 0.35], [0.02, 0.03, 0.04])
    assert result.p(0.5) == pytest.approx(0.3)
    assert result.p(0.95) == pytest.approx(0.4)
    assert result.p(0.5, anchor=True) == pytest.approx(0.03)
    assert result.met
    text = "\n".join(result.lines())
    assert (
        "| the status answer listing it (this service, the poller) | 5 | 300 | 400 | 400 |" in text
    )
    assert "| ... and its bytes fetched from the link | 5 | 310 | 410 | 410 |" in text
    assert "| the SDK's partial_image event decoded (direct call) | 3 | 30 | 40 | 40 |" in text
    assert "ratio to the direct call: p50 10x, p95 10x" in text
    assert "target: p95 <= 2 s (a preview shows within 2 s): 0.40 s (met)" in text
    assert "jobs: 5/5 saved" in text


def test_a_slow_or_never_seen_preview_misses_the_target():
    assert not made_up([0.2, 2.5], [0.02]).met
    never = made_up([0.2, None], [0.02])
    assert never.missed() == 1
    assert not never.met
    assert "previews never seen: 1" in "\n".join(never.lines())


@pytest.mark.bench
@pytest.mark.subprocess
@pytest.mark.azurite
def test_a_tiny_run_measures_every_preview():
    if azurite_bin(ROOT) is None:
        missing_service("Azurite", "run `make setup` (npm ci installs azurite 3.35.0)")
    result = run(Options(jobs=2, concurrency=2, time_scale=10.0), log=lambda _: None)
    assert len(result.visible(anchor=False)) == 2
    assert len(result.visible(anchor=True)) == 1
    assert all(v > 0 for v in result.visible(anchor=False))
    assert [s.state for s in result.jobs] == ["saved", "saved"]
    assert "freshness" in result.lines()[0]
