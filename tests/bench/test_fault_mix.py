"""The fault-mix benchmark: its jobs and faults, its counting and report on made-up runs, and one
tiny real run of both ways (nothing asserts a speed)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.fault_mix import (
    LARGE,
    SMALL,
    FaultMixResult,
    Options,
    Way,
    follow,
    in_flight,
    run,
)
from bench.ledger import LedgerSummary
from localrun.azurite import azurite_bin
from loopserver.testing import missing_service

ROOT = Path(__file__).resolve().parents[2]


def test_the_jobs_are_the_small_then_the_large_each_with_a_prompt_of_its_own():
    bodies = Options(small=2, large=1).bodies()
    assert [b["size"] for b in bodies] == ["1024x1024", "1024x1024", "2048x2048"]
    assert bodies[0]["partial_images"] == SMALL["partial_images"] == 1
    assert bodies[2]["partial_images"] == LARGE["partial_images"] == 0
    assert len({b["prompt"] for b in bodies}) == 3
    assert Options(small=2, large=1).jobs == 3


def test_the_faults_are_the_storm_then_the_mid_stream_errors_on_small_streams():
    storm, mid = Options(storm=5, mid_stream=2).faults()
    assert storm == {"kind": "rate_limited", "retry_after_s": 10.0, "count": 5}
    assert mid["kind"] == "mid_stream_error"
    assert mid["count"] == 2
    assert mid["match"] == {"size": "1024x1024"}
    assert Options(storm=0, mid_stream=0).faults() == []


def ledger(billable: int, requests: int, rate_limited: int = 0) -> LedgerSummary:
    entries: list[dict[str, Any]] = [
        {
            "received_at": float(i),
            "billable": i < billable,
            "status": 429 if i >= requests - rate_limited else 200,
        }
        for i in range(requests)
    ]
    return LedgerSummary.of(entries)


def test_lost_duplicates_and_those_beyond_the_kill():
    # One generation in flight at the kill, billed and sent again: the only duplicate.
    ours = Way("this service", 12, 12, 25.0, ledger(13, 30, 12), at_kill=1)
    assert ours.lost == 0
    assert ours.duplicates == 1
    assert ours.avoidable == 0
    assert ours.per_saved == pytest.approx(13 / 12)
    assert ours.met
    # A second duplicate that no kill explains: missed.
    assert not Way("this service", 12, 12, 25.0, ledger(14, 30, 12), at_kill=1).met
    theirs = Way("SDK loop, default retries", 12, 8, 17.0, ledger(33, 48, 12), at_kill=8)
    assert theirs.lost == 4
    assert theirs.duplicates == 25
    assert theirs.avoidable == 17
    assert not theirs.met
    # Nothing saved: no ratio, and every generation billed is a duplicate.
    none = Way("SDK loop, default retries", 2, 0, 5.0, ledger(3, 3))
    assert none.per_saved is None
    assert none.duplicates == 3
    assert none.avoidable == 3
    assert not none.met


def test_the_report_shows_both_ways_their_notes_and_the_targets():
    result = FaultMixResult(
        Options(),
        [
            Way(
                "SDK loop, default retries",
                12,
                8,
                17.4,
                ledger(33, 48, 12),
                ("worker killed at 6.0 s",),
                at_kill=8,
            ),
            Way(
                "this service",
                12,
                12,
                25.0,
                ledger(13, 28, 12),
                ("storage down at 2.0 s",),
                at_kill=2,
            ),
        ],
        "2026-11-30 12:00 UTC",
    )
    text = "\n".join(result.lines())
    assert (
        "| SDK loop, default retries | 8/12 | 4 | 48 | 33 | 4.12 | 25 | 8 | 17 | 12 | 17.4 |"
        in text
    )
    assert "| this service | 12/12 | 0 | 28 | 13 | 1.08 | 1 | 2 | 0 | 12 | 25.0 |" in text
    assert "- SDK loop, default retries: worker killed at 6.0 s" in text
    assert (
        "targets: images lost <= 0: 0; duplicates beyond the generations in flight at the "
        "worker kill <= 0: 0 (met)"
    ) in text
    assert result.way("SDK loop") is result.ways[0]


@pytest.mark.bench
@pytest.mark.subprocess
@pytest.mark.azurite
def test_a_tiny_run_counts_both_ways():
    if azurite_bin(ROOT) is None:
        missing_service("Azurite", "run `make setup` (npm ci installs azurite 3.35.0)")
    options = Options(
        small=2,
        large=0,
        storm=2,
        mid_stream=1,
        outage_at_s=0.5,
        outage_s=0.5,
        kill_at_s=1.0,
        kill_in_flight=False,
        deadline_s=60.0,
    )
    started = time.monotonic()
    result = run(options, log=lambda _: None)
    assert [w.name for w in result.ways] == ["SDK loop, default retries", "this service"]
    for way in result.ways:
        assert way.jobs == 2
        assert 0 <= way.saved <= 2
        assert way.ledger.requests >= 2
        assert way.ledger.billable >= 0
        assert any("worker killed" in note for note in way.notes), way.notes
        assert any("storage down" in note for note in way.notes), way.notes
    assert "fault mix" in result.lines()[0]
    print(f"tiny fault mix: {time.monotonic() - started:.1f} s")


def test_generations_in_flight_at_the_kill_are_counted_from_the_ledger():
    entries: list[dict[str, Any]] = [
        {"generation_started": True, "received_at": 1.0, "upstream_done_at": 5.0},
        {"generation_started": True, "received_at": 2.0, "upstream_done_at": 2.5},
        {"generation_started": True, "received_at": 3.5, "upstream_done_at": None},
        {"generation_started": False, "received_at": 2.0, "upstream_done_at": None},
    ]
    assert in_flight(entries, 3.0) == 1
    assert in_flight(entries, 4.0) == 2
    assert in_flight(entries, None) is None


def test_in_flight_can_count_one_size():
    entries: list[dict[str, Any]] = [
        {"generation_started": True, "received_at": 1.0, "shape": {"size": "2048x2048"}},
        {"generation_started": True, "received_at": 1.0, "shape": {"size": "1024x1024"}},
    ]
    assert in_flight(entries, 2.0, size="2048x2048") == 1
    assert in_flight(entries, 2.0) == 2


def test_follow_retries_failed_polls_and_counts_them():
    answers: Iterator[int | str] = iter([503, "down", 202, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if answer == "down":
            raise httpx.ConnectError("devhost is down", request=request)
        body = {"state": "saved", "attempt": 2} if answer == 200 else {"state": "generating"}
        return httpx.Response(int(answer), json=body)

    attempts: dict[str, int] = {}
    failed: Counter[str] = Counter()
    with httpx.Client(base_url="http://test", transport=httpx.MockTransport(handler)) as http:
        states = follow(http, ["job"], time.monotonic() + 30, attempts, failed)
    assert states == {"job": "saved"}
    assert attempts == {"job": 2}
    assert failed == Counter({"503": 1, "no answer": 1})
