"""The Retry-After benchmark's helpers and its report, on made-up rounds: nothing is started and
nothing is timed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bench.devhost_log import JobClocks
from bench.history import JobHistory
from bench.retry_after import (
    CHARS,
    Direct,
    Options,
    Polled,
    RetryAfterResult,
    Round,
    corrected,
    generation_by_way,
    median_ratio,
    paired_ratios,
    prompt,
    retry_after,
)


def test_each_way_has_a_prompt_length_of_its_own():
    assert len(set(CHARS.values())) == len(CHARS)
    for way, chars in CHARS.items():
        assert len(prompt(way, 7)) == chars
    assert prompt("direct", 1) != prompt("direct", 2)


def test_retry_after_is_read_in_seconds_and_required():
    assert retry_after(httpx.Headers({"Retry-After": "2"})) == 2.0
    with pytest.raises(RuntimeError, match="no Retry-After"):
        retry_after(httpx.Headers({}))


def test_the_jitter_correction_swaps_the_generation_and_keeps_the_rest():
    # The service took 25 s of which 24 s generating; the direct call's generation was 22 s.
    assert corrected(25.0, 24.0, 22.0) == pytest.approx(23.0)


def test_ratios_of_medians_and_paired():
    assert median_ratio([23.0, 24.0, 30.0], [22.0, 24.0, 26.0]) == pytest.approx(1.0)
    assert median_ratio([24.0], [20.0]) == pytest.approx(1.2)
    assert paired_ratios([23.0, 24.0], [23.0, 12.0]) == pytest.approx([1.0, 2.0])
    with pytest.raises(ValueError, match="longer"):
        paired_ratios([1.0], [1.0, 2.0])


def test_each_ways_generation_is_found_by_prompt_length():
    entries: list[dict[str, Any]] = [
        {"shape": {"prompt_chars": CHARS["direct"]}, "generation_s": 22.0},
        {"shape": {"prompt_chars": CHARS["retry-after"]}, "generation_s": 23.0},
        {"shape": {"prompt_chars": CHARS["100 ms"]}, "generation_s": 21.0},
        {"shape": {"prompt_chars": 5}, "generation_s": 99.0},
        {"shape": None, "generation_s": None},
    ]
    assert generation_by_way(entries) == {"direct": 22.0, "retry-after": 23.0, "100 ms": 21.0}


def polled(job: str, took: float, waits: tuple[float, ...]) -> Polled:
    return Polled(
        job_id=job,
        posted_at=1000.0,
        took_s=took,
        image_s=took + 0.02,
        polls=len(waits),
        waits=waits,
        sent_at=1000.03,
    )


def test_the_report_shows_medians_ratios_and_where_the_time_goes():
    rounds = [
        Round(
            index=i,
            direct=Direct(22.0 + i),
            retry_after=polled(f"b{i}", 22.5 + i, (2.0, 18.0, 1.0, 1.0)),
            poller=polled(f"c{i}", 22.2 + i, (0.1,) * 220),
            generation_s={"direct": 21.9 + i, "retry-after": 22.0 + i, "100 ms": 22.0 + i},
        )
        for i in range(3)
    ]
    clocks = {
        f"{way}{i}": JobClocks(None, None, 1000.0 + 22.1 + i) for way in "bc" for i in range(3)
    }
    result = RetryAfterResult(
        options=Options(rounds=3, warmup=8),
        rounds=rounds,
        clocks=clocks,
        histories=[JobHistory((0.004, 0.006), {"ok": 1})],
        learned_samples=8,
        date="2026-11-30 09:00 UTC",
    )
    text = "\n".join(result.lines())
    assert "(the route's class had 8 learned samples)" in text
    # Medians: (a) 23.0, (b) 23.5, (c) 23.2.
    assert "| 23.50 | 22.50-24.50 | 1.022x |" in text
    assert "| 23.20 | 22.20-24.20 | 1.009x |" in text
    # Jitter out: (b) 23.5 - 23.0 + 22.9 = 23.4 against 23.0.
    assert "1.017x" in text
    assert "target: (b) within 1.03x of (a): 1.022x (met)" in text
    assert "| 0 | 22.00 | 22.50 | 2+18+1+1 | 0.40 |" in text
    assert "Retry-After client saw the final answer 0.40 after it was final" in text
    assert "route entity round trips (durable history): 2, p50 5 ms" in text
