"""The drain benchmark's arithmetic, its reading of the ledger, the durable history and devhost's
log, and its report, on made-up runs: nothing is started and nothing is timed."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from bench import drain
from bench.devhost_log import JobClocks, invocations, load, log_time
from bench.drain import (
    DrainResult,
    Options,
    Posted,
    SdkRun,
    ServiceRun,
    burst_minimum_s,
    chars,
    even_minimum_s,
    gaps_in_spacings,
    interactive_offsets,
    outcome_of,
    prompt,
    ratio_cell,
    service_env,
    simulator_config,
    slot_s,
    spacing_s,
)
from bench.history import JobHistory, event_time
from bench.ledger import LedgerSummary
from rules.settings import AppSettings
from simulator.config import config_from_dict
from tests.rules.conftest import ENV


def test_the_spacing_is_a_route_minute_over_the_rate():
    assert spacing_s(10, 1) == 6.0
    assert slot_s(10, 1) == pytest.approx(6.12)  # the governor's slot: 2 % of slack
    assert spacing_s(10, 15) == pytest.approx(0.4)


def test_the_even_minimum_spaces_every_request_then_adds_one_generation():
    # 110 requests at 10/min, time scale 15: 109 spacings of 0.4 s, then the last generation.
    assert even_minimum_s(110, 10, 15, 1.5) == pytest.approx(109 * 0.4 + 1.5)
    assert even_minimum_s(1, 10, 1, 22.0) == 22.0
    assert even_minimum_s(0, 10, 1, 22.0) == 22.0


def test_the_burst_minimum_sends_a_minute_of_requests_at_once():
    # 110 requests, 10 a minute: 11 bursts, the last 10 minutes after the first.
    assert burst_minimum_s(110, 10, 15, 1.5) == pytest.approx(10 * 4.0 + 1.5)
    assert burst_minimum_s(100, 10, 1, 22.0) == pytest.approx(9 * 60 + 22.0)
    assert burst_minimum_s(10, 10, 1, 22.0) == 22.0
    assert burst_minimum_s(110, 10, 15, 1.5) < even_minimum_s(110, 10, 15, 1.5)


def test_interactive_jobs_are_spread_evenly_inside_the_span():
    offsets = interactive_offsets(10, 44.0)
    assert offsets[0] == pytest.approx(2.2)
    assert offsets[-1] == pytest.approx(41.8)
    assert {round(b - a, 6) for a, b in itertools.pairwise(offsets)} == {4.4}
    assert interactive_offsets(0, 44.0) == []


def test_each_jobs_prompt_has_a_length_of_its_own():
    lengths = [chars("batch", i, 100) for i in range(100)]
    lengths += [chars("interactive", k, 100) for k in range(10)]
    assert lengths == list(range(drain.BASE_CHARS, drain.BASE_CHARS + 110))
    prompts = {prompt("batch", i, n) for i, n in enumerate(lengths[:100])}
    prompts |= {prompt("interactive", k, n) for k, n in enumerate(lengths[100:])}
    assert sorted(len(p) for p in prompts) == lengths
    with pytest.raises(ValueError, match="cannot hold"):
        prompt("batch", 1, 10)


def test_the_simulator_and_the_app_read_the_same_limit():
    o = Options(rpm=10, time_scale=15)
    config = config_from_dict(simulator_config(o))
    deployment = config.deployment(drain.DEPLOYMENT)
    assert deployment is not None
    assert deployment.rate_limit is not None
    assert deployment.rate_limit.requests_per_minute == 10
    assert deployment.rate_limit.images_per_minute == 10
    settings = AppSettings.from_env({**ENV, **service_env(o), "IMAGE_TIME_SCALE": "15"})
    pace = settings.pace(drain.ROUTE)
    assert pace.requests_per_minute == 10
    assert pace.window_s == pytest.approx(4.0)


def test_gaps_and_ratios():
    assert gaps_in_spacings([0.0, 0.4, 1.2, 1.3], 0.4) == pytest.approx([1.0, 2.0, 0.25])
    assert gaps_in_spacings([5.0], 0.4) == []
    assert ratio_cell(82.3, 45.15) == "1.82x"
    assert ratio_cell(None, 45.15) == "n/a"
    assert ratio_cell(1.0, 0.0) == "infx"


def test_a_terminated_jobs_outcome_is_its_status():
    saved = {"runtimeStatus": "Completed", "output": {"state": "saved", "attempt": 1}}
    assert outcome_of(saved) == {"state": "saved", "attempt": 1}
    ended = {"runtimeStatus": "Terminated", "output": "bench.drain gave up"}
    assert outcome_of(ended) == {"state": "terminated"}


def entry(
    seq: int,
    at: float,
    *,
    status: int = 200,
    chars: int = 100,
    generation: float = 1.5,
    billable: bool = True,
) -> dict[str, Any]:
    """A ledger entry as GET /_sim/ledger gives it (the fields the benchmarks read)."""
    refused = status == 429
    return {
        "seq": seq,
        "received_at": at,
        "status": status,
        "outcome": "rate_limited" if refused else "completed",
        "generation_started": not refused,
        "billable": billable and not refused,
        "generation_s": None if refused else generation,
        "upstream_done_at": None if refused else at + generation,
        "shape": {"prompt_chars": chars, "size": "1024x1024"},
    }


def test_the_ledger_summary_counts_refusals_sends_and_first_arrivals():
    entries = [
        entry(1, 100.0, generation=1.4),
        entry(2, 100.4, chars=101, generation=1.6),
        entry(3, 100.5, status=429, chars=102),
        entry(4, 101.0, chars=102, generation=1.5),
        entry(5, 99.0, status=429, chars=103),
    ]
    summary = LedgerSummary.of(entries)
    assert summary.requests == 5
    assert summary.rate_limited == 2
    assert summary.billable == 3
    assert summary.sends == (100.0, 100.4, 101.0)
    assert summary.refusals == (99.0, 100.5)
    assert summary.median_generation_s == pytest.approx(1.5)
    # The first request with a prompt of that length, refused or not.
    assert summary.first_arrival == {100: 100.0, 101: 100.4, 102: 100.5, 103: 99.0}
    assert summary.accepted_arrival == {100: 100.0, 101: 100.4, 102: 101.0}
    assert summary.accepted == ((100.0, 100), (100.4, 101), (101.0, 102))
    assert summary.billable_per_saved(3) == 1.0
    assert summary.billable_per_saved(0) is None
    assert LedgerSummary.of([]).median_generation_s is None


def sent(at: str) -> dict[str, Any]:
    return {"EventType": "EventSent", "Timestamp": at, "InstanceId": "@route@azure", "Name": "op"}


def raised(at: str, name: str) -> dict[str, Any]:
    return {"EventType": "EventRaised", "Timestamp": at, "Name": name}


def completed(function: str, result: object) -> dict[str, Any]:
    return {"EventType": "TaskCompleted", "FunctionName": function, "Result": result}


def test_the_history_gives_entity_round_trips_and_activity_results():
    answer = "5a4c7ef9-7036-58c6-b416-2f35c1581551"  # an entity's answer: the call's id
    expired = {"attempt": 1, "ok": False, "failure": {"kind": "admission_expired"}}
    events = [
        {"EventType": "ExecutionStarted", "Timestamp": "2026-11-30T09:21:22.0000000Z"},
        sent("2026-11-30T09:21:22.8351180Z"),
        raised("2026-11-30T09:21:22.9773330Z", answer),
        completed("generate_image", expired),
        # The report (a signal, no answer), then the next call and its answer.
        sent("2026-11-30T09:21:23.0000000Z"),
        {
            "EventType": "TimerFired",
            "Timestamp": "2026-11-30T09:21:23.4300000Z",
            "FireAt": "2026-11-30T09:21:23.4000000Z",
        },
        sent("2026-11-30T09:21:23.5000000Z"),
        raised("2026-11-30T09:21:23.5400000Z", answer),
        raised("2026-11-30T09:21:24.0000000Z", "cancel"),
        completed("generate_image", json.dumps({"attempt": 1, "ok": True})),  # as text too
        completed("finish_job", {"ok": True}),
    ]
    history = JobHistory.of(events)
    assert history.entity_round_trips_s == pytest.approx((0.142215, 0.04))
    assert history.activity_results == {"admission_expired": 1, "ok": 1}
    assert history.timer_lateness_s == pytest.approx((0.03,))
    later = event_time("2026-11-30T09:21:22.5000000Z")
    assert later - event_time("2026-11-30T09:21:22Z") == pytest.approx(0.5)


ENGINE = "devhost.engine INFO: function={} invocationId=x instanceId={} durationMs={} outcome={}"
LOG = [
    "[2026-11-30 09:20:08,792] " + ENGINE.format("image_job", "img-1", "1.1", "Running"),
    "[2026-11-30 09:20:08,796] imagejobs.http INFO: image job img-1 started on route azure",
    "[2026-11-30 09:20:08,800] " + ENGINE.format("route", "@route@azure", "4.0", "Succeeded"),
    "[2026-11-30 09:20:11,794] " + ENGINE.format("generate_image", "img-1", "2884.7", "Succeeded"),
    "[2026-11-30 09:20:11,825] " + ENGINE.format("image_job", "img-1", "2.3", "Completed"),
]


def test_the_devhost_log_gives_each_jobs_moments_and_each_functions_load():
    found = invocations(LOG)
    assert [i.function for i in found] == ["image_job", "route", "generate_image", "image_job"]
    clocks = JobClocks.of(found, "img-1", "image_job")
    t = log_time("2026-11-30 09:20:11,794")
    assert clocks.activity_start == pytest.approx(t - 2.8847)
    assert clocks.completed == pytest.approx(log_time("2026-11-30 09:20:11,825"))
    assert clocks.first_episode_end == pytest.approx(log_time("2026-11-30 09:20:08,792"))
    assert JobClocks.of(found, "img-2", "image_job") == JobClocks(None, None, None)
    loads = {f.function: f for f in load(found, 0, t + 60)}
    assert loads["image_job"].count == 2
    assert loads["generate_image"].total_s == pytest.approx(2.8847)


def made_up_result(*, stalled: bool = False) -> DrainResult:
    o = Options(jobs=2, interactive=1, rpm=10, time_scale=15, anchors=True)
    run = ServiceRun(started_at=1000.0)
    run.posts = {
        "b0": Posted("b0", "batch", 0, 100, 1000.0, 1000.05),
        "b1": Posted("b1", "batch", 1, 102, 1000.0, 1000.06),
        "i0": Posted("i0", "interactive", 0, 101, 1000.5, 1000.52),
    }
    run.ended_at = {"b0": 1002.0, "b1": 1002.4, "i0": 1002.9}
    run.outcomes = {
        job: {
            "state": "saved",
            "attempt": 1,
            "retry_count": 0,
            "timings": {"request_started_at": sent},
        }
        for job, sent in (
            ("b0", "1970-01-01T00:16:40.100Z"),
            ("b1", "1970-01-01T00:16:40.500Z"),
            ("i0", "1970-01-01T00:16:40.900Z"),
        )
    }
    run.histories = {"b0": JobHistory((0.01,), {"ok": 1})}
    if stalled:
        run.stalled_at = 1003.0
        run.unfinished = {"b1": "generating"}
    ledger = LedgerSummary.of(
        [entry(1, 1000.1), entry(2, 1000.52, chars=102), entry(3, 1000.9, chars=101)]
    )
    anchor = SdkRun("SDK, sequential for-loop", 4.5, 2, LedgerSummary.of([entry(1, 1.0)]))
    return DrainResult(o, run, ledger, [anchor], "2026-11-30 09:00 UTC")


def test_the_report_shows_the_minimums_the_ratios_and_the_targets():
    result = made_up_result()
    assert result.requests == 3
    assert result.even_minimum_s == pytest.approx(2 * 0.4 + 1.5)
    [job] = result.interactive()
    assert job.since_post(job.first_arrival) == pytest.approx(0.4)
    assert job.since_post(job.request_started) == pytest.approx(0.4)
    assert job.attempts == 1
    text = "\n".join(result.lines())
    assert "= 2.30 s" in text  # the even minimum
    assert "| theoretical minimum, even pace | 2.30 |" in text
    assert "| this service | 2.90 | 3/3 | 3 | 0 | 1.00 | 1.26x the even minimum, 1.93x" in text
    assert "| 0.64x this loop's wall |" in text
    assert (
        "interactive within 1 slot of the route's pace (0.408 s): 1/1, worst 0.98 "
        "(met; within 60/rpm: 1/1, worst 1.00)"
    ) in text
    assert "429s <= 1: 0 (met)" in text
    assert "(MISSED)" in text  # 1.26x the minimum
    # b1 reported its send at 0.50 s; its request reached the simulator 20 ms later.
    assert "-> at the simulator: p50 0 ms, p90 20 ms, max 20 ms" in text


def test_a_drain_given_up_says_so():
    result = made_up_result(stalled=True)
    text = "\n".join(result.lines())
    assert "> 3.00 (gave up)" in text
    assert "UNFINISHED when given up: 1 jobs (generating 1)" in text


def test_a_manifests_report_is_held_against_what_the_ledger_billed_for_its_items():
    run = ServiceRun(started_at=0.0)
    run.posts = {
        "b0": Posted("b0", "batch", 0, 101, 0.0, 0.0),
        "b1": Posted("b1", "batch", 1, 102, 0.0, 0.0),
        "i0": Posted("i0", "interactive", 0, 201, 0.0, 0.0),
    }
    run.batch_totals = drain.BatchTotals(report_cost_usd=0.012, report_saved=2)

    def entry(chars: int, cost: float, billable: bool = True) -> dict[str, Any]:
        return {"billable": billable, "cost_usd": cost, "shape": {"prompt_chars": chars}}

    # The interactive job's entry and a refused (unbilled) one are not the batch's.
    entries = [entry(101, 0.006), entry(102, 0.006), entry(201, 0.5), entry(101, 0.0, False)]
    totals = drain.billed_items(run, entries)
    assert (totals.ledger_cost_usd, totals.ledger_billable) == (0.012, 2)
    assert totals.match
    assert totals.line().endswith("they match")
    # A second billed generation for one item is caught.
    again = drain.billed_items(run, [*entries, entry(102, 0.006)])
    assert not again.match
    assert again.line().endswith("MISMATCH")
