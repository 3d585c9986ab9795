"""The route entity's state and operations (rules.route_model): its JSON and version rule, a drain
stored as JSON at every step, a 429 that cools the whole route down, rate-limit headers that
tighten the pace, jobs that leave, learning per shape class and the health figures."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest

from rules import pacing, route_model
from rules.pacing import LEAD_S, Pace
from rules.records import RecordUnreadable
from rules.route_model import STATE_VERSION, RouteState
from rules.route_records import AttemptReport, Expectation, Priority
from rules.route_stats import MIN_SAMPLES, ClassStats, calibrated

from .route_clock import (
    EPS,
    SHAPE,
    Attempt,
    Drain,
    all_at_once,
    ask,
    most_in_a_window,
    saved,
    stored,
)

RPM10 = Pace(requests_per_minute=10, window_s=60.0)
SPACING = 6.0 * 1.02


def iso(epoch_s: float) -> str:
    return f"@{epoch_s:.3f}"


def rate_limited(
    job_id: str, sent_at: float, ended_at: float | None, retry_after_s: float | None
) -> AttemptReport:
    return AttemptReport(
        job_id=job_id,
        attempt=1,
        shape=SHAPE,
        failure_kind="rate_limited",
        sent_at=sent_at,
        retry_after_s=retry_after_s,
        ended_at=ended_at,
    )


# --- the state as JSON ---------------------------------------------------------------------


def busy_state() -> RouteState:
    """A state with something in every part: sends, a slot, a queue, a cool-down, a hint and
    learned classes."""
    state = RouteState()
    pace = Pace(requests_per_minute=10, concurrency=1)
    state, _ = route_model.on_admit(state, pace, ask("a", 0.0), 0.0)
    state, _ = route_model.on_admit(state, pace, ask("b", 0.5, priority=Priority.INTERACTIVE), 0.5)
    report = saved("z", 0.25, 12.5, first_byte_s=1.5, first_partial_s=6.25)
    report = replace(report, rate_limit={"x-ratelimit-limit-requests": "8"}, headers_at=1.0)
    state = route_model.on_report(state, pace, report, 1.0)
    state = route_model.on_report(state, pace, rate_limited("y", 0.5, 1.5, 4.0), 1.5)
    assert state.pacer.sends
    assert state.pacer.slots
    assert state.pacer.queue
    assert state.pacer.hint is not None
    assert state.pacer.cool_until == 5.5
    return state


def test_the_state_round_trips_through_json_and_json_text():
    state = busy_state()
    assert RouteState.from_json(state.to_json()) == state
    assert RouteState.from_json(json.dumps(state.to_json())) == state
    assert state.to_json()["v"] == STATE_VERSION == 1
    assert RouteState.from_json(RouteState().to_json()) == RouteState()


@pytest.mark.parametrize("nothing", [None, ""])
def test_a_route_never_asked_about_starts_empty(nothing):
    assert RouteState.from_json(nothing) == RouteState()


def test_a_state_without_a_version_is_read_as_version_zero():
    written = busy_state().to_json()
    del written["v"]
    assert RouteState.from_json(written) == busy_state()
    assert RouteState.from_json({}) == RouteState()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"v": STATE_VERSION + 1}, "newer"),
        ({"v": "1"}, "not a version"),
        ({"v": True}, "not a version"),
        ({"v": -1}, "not a version"),
        ({"pacer": {"slots": []}}, "'sends' is missing"),
        ({"pacer": {"sends": [["a", 1, "soon", 1]]}}, "malformed"),
        ({"classes": [SHAPE]}, "malformed"),
        ({"classes": {SHAPE: []}}, "malformed"),
        ({"classes": {SHAPE: {"total": ["slow"]}}}, "malformed"),
        ({"last_report_at": "yesterday"}, "malformed"),
    ],
)
def test_a_state_that_breaks_its_shape_is_unreadable(change, says):
    written = dict(busy_state().to_json(), **change)
    with pytest.raises(RecordUnreadable) as caught:
        RouteState.from_json(written)
    assert caught.value.kind in ("route state", "route pacer")
    assert says in str(caught.value)


@pytest.mark.parametrize("value", [[], "not json", "[1, 2]", 7])
def test_a_state_that_is_not_an_object_is_unreadable(value):
    with pytest.raises(RecordUnreadable):
        RouteState.from_json(value)


# --- a drain stored at every step ----------------------------------------------------------


def test_a_drain_stored_as_json_at_every_step_decides_as_one_kept_in_memory():
    kept = all_at_once(RPM10, 100)
    stored_run = all_at_once(RPM10, 100, through_json=True)  # each step's JSON checked
    assert stored_run.sends.keys() == kept.sends.keys()
    for job, at in kept.sends.items():
        assert stored_run.sends[job] == pytest.approx(at, abs=1e-3)
    assert stored_run.state.pacer.admitted == 100


def test_a_drain_with_reports_slots_and_a_429_stored_at_every_step():
    pace = Pace(requests_per_minute=20, concurrency=2, burst=2)
    attempts = [
        Attempt(
            f"job-{i:02d}",
            arrives_at=float(i % 7),
            priority=Priority.INTERACTIVE if i % 3 == 0 else Priority.BATCH,
            images=1 + i % 2,
            runs_s=5.0 + (i * 7) % 30,
        )
        for i in range(30)
    ]

    def refused(state: RouteState, now: float) -> RouteState:
        return route_model.on_report(state, pace, rate_limited("gone", 1.0, now, 15.0), now)

    events = [(40.0, refused)]
    kept = Drain(pace).run(attempts, events)
    stored_run = Drain(pace, through_json=True).run(attempts, events)
    for job, at in kept.sends.items():
        assert stored_run.sends[job] == pytest.approx(at, abs=1e-3)
    running = [(kept.sends[job], kept.ends[job]) for job in kept.sends]
    for start, _ in running:
        assert sum(1 for s, e in running if s <= start < e) <= 2
    assert not any(40.0 + LEAD_S < at < 55.0 for at in kept.sends.values())


# --- a 429 ---------------------------------------------------------------------------------


def test_a_429_stops_every_admission_until_its_wait_ends():
    t = 30.0

    def refused(state: RouteState, now: float) -> RouteState:
        return route_model.on_report(state, RPM10, rate_limited("job-000", 0.0, t, 20.0), now)

    attempts = [Attempt(f"job-{i:03d}") for i in range(12)]
    attempts.append(Attempt("interactive", arrives_at=t + 5, priority=Priority.INTERACTIVE))
    drain = Drain(RPM10).run(attempts, [(t, refused)])
    for asked in drain.log:
        if asked.at >= t and asked.answer.admitted and asked.at < t + 20:
            assert asked.at >= t + 20 - LEAD_S
            assert asked.answer.start_at >= t + 20
    after = sorted(at for at in drain.sends.values() if at > t + LEAD_S)
    assert after[0] == pytest.approx(t + 20)
    assert drain.sends["interactive"] == pytest.approx(t + 20)  # first after the pause
    assert min(b - a for a, b in itertools.pairwise(after)) >= SPACING - EPS


def test_health_shows_the_cool_down_while_it_lasts():
    state = route_model.on_report(RouteState(), RPM10, rate_limited("a", 0.0, 30.0, 20.0), 31.0)
    shown = route_model.health("azure", state, RPM10, 31.0).to_json(iso)
    assert shown["pace"]["coolDownUntil"] == "@50.000"
    assert "429" in shown["pace"]["coolDownReason"]
    assert "20.0s" in shown["pace"]["coolDownReason"]
    assert shown["pace"]["nextSendAt"] == "@50.000"
    assert shown["errors"] == {"rate_limited": 1}
    later = route_model.health("azure", state, RPM10, 50.0).to_json(iso)
    assert (later["pace"]["coolDownUntil"], later["pace"]["coolDownReason"]) == (None, None)


@pytest.mark.parametrize(
    ("pace", "ended_at", "until"),
    [
        (RPM10, 30.0, 40.0),  # no wait named: ten route seconds
        (Pace(requests_per_minute=2), 30.0, 30.0 + 30.0 * 1.02),  # or a spacing, when longer
        (Pace(requests_per_minute=10, window_s=6.0), 30.0, 31.0),  # a scaled run: scaled
        (RPM10, None, 45.0),  # no end said: from the report's arrival
    ],
)
def test_a_429_without_a_wait_cools_down_by_default(pace, ended_at, until):
    state = route_model.on_report(RouteState(), pace, rate_limited("a", 0.0, ended_at, None), 35.0)
    assert state.pacer.cool_until == pytest.approx(until)


def test_an_older_429_does_not_shorten_a_cool_down():
    state = route_model.on_report(RouteState(), RPM10, rate_limited("a", 0.0, 30.0, 60.0), 30.0)
    state = route_model.on_report(state, RPM10, rate_limited("b", 0.0, 31.0, 5.0), 31.0)
    assert state.pacer.cool_until == 90.0


# --- rate-limit headers --------------------------------------------------------------------

OPENAI_HEADERS = {
    "x-ratelimit-limit-requests": "5",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "6s",
}


def test_headers_lower_the_limit_and_hold_sends_until_their_reset():
    t = 100.0

    def answered(state: RouteState, now: float) -> RouteState:
        report = saved("first", 0.0, 20.0, rate_limit=OPENAI_HEADERS, headers_at=t)
        return route_model.on_report(state, RPM10, report, now)

    attempts = [Attempt("first")] + [Attempt(f"job-{i:02d}", arrives_at=t + 0.5) for i in range(12)]
    drain = Drain(RPM10).run(attempts, [(t, answered)])
    after = sorted(at for at in drain.sends.values() if at > t)
    assert after[0] == pytest.approx(t + 6)  # nothing remains until the reset
    gaps = [b - a for a, b in itertools.pairwise(after)]
    assert min(gaps) == pytest.approx(60 / 5 * 1.02)  # five a minute, after the reset too
    assert most_in_a_window(after, 60 * 1.02) == 5
    shown = route_model.health("openai", drain.state, RPM10, drain.times[-1]).to_json(iso)
    assert shown["pace"]["requestsPerMinute"] == 5
    assert shown["pace"]["spacingS"] == pytest.approx(12.24)


def test_a_lowered_limit_counts_the_sends_of_the_last_minute():
    """Ten a minute went out before the route said five: the next waits for the window."""
    t = 100.0

    def answered(state: RouteState, now: float) -> RouteState:
        report = saved("job-000", 0.0, 20.0, rate_limit=OPENAI_HEADERS, headers_at=t)
        return route_model.on_report(state, RPM10, report, now)

    drain = Drain(RPM10).run([Attempt(f"job-{i:03d}") for i in range(30)], [(t, answered)])
    assert most_in_a_window([at for at in drain.sends.values() if at > t - 60], 61.2) <= 10
    after = sorted(at for at in drain.sends.values() if at > t + LEAD_S)
    assert after[0] >= t + 6
    assert most_in_a_window(after, 60 * 1.02) <= 5


def test_a_headers_hint_is_read_at_the_time_the_headers_were_seen():
    report = saved("a", 0.0, 20.0, rate_limit=OPENAI_HEADERS, headers_at=100.0)
    state = route_model.on_report(RouteState(), RPM10, report, 103.0)
    assert state.pacer.hint is not None
    assert (state.pacer.hint.observed_at, state.pacer.hint.until) == (100.0, 106.0)
    state, answer = route_model.on_admit(state, RPM10, ask("b", 103.0), 103.0)
    assert (answer.admitted, answer.start_at) == (False, 106.0)
    # Without the moment they were seen, headers are not read.
    state = route_model.on_report(RouteState(), RPM10, replace(report, headers_at=None), 103.0)
    assert state.pacer.hint is None


def test_azure_minus_one_headers_are_ignored():
    azure = {
        "x-ratelimit-limit-requests": "-1",
        "x-ratelimit-remaining-requests": "-1",
        "x-ratelimit-reset-requests": "-1",
    }
    report = saved("a", 0.0, 20.0, rate_limit=azure, headers_at=20.0)
    state = route_model.on_report(RouteState(), RPM10, report, 20.0)
    assert state.pacer.hint is None
    assert pacing.limits(RPM10, state.pacer.hint).requests_per_minute == 10
    state, answer = route_model.on_admit(state, RPM10, ask("b", 20.0), 20.0)
    assert answer.admitted


# --- reports, leaving, queue positions -----------------------------------------------------


def test_a_report_frees_the_slot_and_counts_the_real_send_time():
    pace = Pace(requests_per_minute=10, concurrency=1)
    state, first = route_model.on_admit(RouteState(), pace, ask("a", 0.0), 0.0)
    assert first.admitted
    state, waiting = route_model.on_admit(state, pace, ask("b", 1.0), 1.0)
    assert waiting.admitted is False
    # a's request really left at 4 s (a late worker): it holds the route's window from then,
    # while the even pace stays on its admitted time (a late worker does not push every send).
    state = route_model.on_report(state, pace, saved("a", 4.0, 3.0), 7.0)
    assert state.pacer.slots == ()
    assert [(s.at, s.left) for s in state.pacer.sends] == [(0.0, 4.0)]
    assert waiting.ask_again_at is not None
    assert waiting.ask_again_at > 7.0
    state, second = route_model.on_admit(state, pace, ask("b", 1.0), waiting.ask_again_at)
    assert second.admitted
    assert second.start_at == pytest.approx(waiting.ask_again_at)
    # An early report never moves a send's window place earlier than its admitted time.
    early = route_model.on_report(RouteState(), pace, saved("a", 0.0, 3.0), 8.5)
    assert early.pacer.sends == ()


def test_a_job_that_leaves_leaves_the_queue():
    state = RouteState()
    for job in ("a", "b", "c"):
        state, _ = route_model.on_admit(state, RPM10, ask(job, 0.0), 0.0)
    assert route_model.queue_position(state, RPM10, "b", 0.0) == 1
    assert route_model.queue_position(state, RPM10, "c", 0.0) == 2
    state = route_model.on_leave(state, "b")
    assert route_model.queue_position(state, RPM10, "b", 0.0) is None
    assert route_model.queue_position(state, RPM10, "c", 0.0) == 1
    assert route_model.queue_position(state, RPM10, "a", 0.0) is None  # admitted, not queued
    state, answer = route_model.on_admit(state, RPM10, ask("c", 0.0), SPACING - LEAD_S)
    assert answer.admitted


def test_a_waiter_that_never_comes_back_drops_out_of_the_queue_positions():
    state, _ = route_model.on_admit(RouteState(), RPM10, ask("a", 0.0), 0.0)
    state, gone = route_model.on_admit(state, RPM10, ask("gone", 0.0), 0.0)
    state, _ = route_model.on_admit(state, RPM10, ask("next", 0.0), 0.0)
    assert gone.ask_again_at is not None
    grace = max(pacing.STALE_S, 2 * SPACING)
    at_grace = gone.ask_again_at + grace
    assert route_model.queue_position(state, RPM10, "next", at_grace) == 2
    assert route_model.queue_position(state, RPM10, "next", at_grace + 0.01) == 1
    assert route_model.queue_position(state, RPM10, "gone", at_grace + 0.01) is None
    state, answer = route_model.on_admit(state, RPM10, ask("next", 0.0), at_grace + 0.01)
    assert answer.admitted


# --- learning ------------------------------------------------------------------------------


def test_expectations_come_from_the_calibration_until_enough_attempts_were_saved():
    request = ask("x", 0.0, total_s=40.0)
    totals = [30.0, 10.0, 50.0, 20.0, 40.0, 35.0]
    state = RouteState()
    for i, total in enumerate(totals):
        _, answer = route_model.on_admit(state, RPM10, request, 1000.0 * i)
        assert answer.expected is not None
        if i < MIN_SAMPLES:
            assert answer.expected == request.calibrated
            assert request.calibrated == calibrated(40.0, first_partial_share=None)
        report = saved(f"j{i}", 1000.0 * i, total, first_byte_s=1.0 + i)
        state = route_model.on_report(state, RPM10, report, 1000.0 * i + total)
        other = replace(report, shape="gpt-image-2/4mp/high/png/plain", total_s=500.0)
        state = route_model.on_report(state, RPM10, other, 1000.0 * i + total)
    _, answer = route_model.on_admit(state, RPM10, request, 9000.0)
    # Six samples, sorted 10 20 30 35 40 50; a percentile is the sample at index
    # round(share * 5) (numpy's "nearest"): 0.5 -> round(2.5) = 2, 0.1 -> 0, 0.9 -> round(4.5) = 4.
    assert answer.expected == Expectation(
        first_byte_s=3.0,  # 1 2 3 4 5 6: index 2
        first_partial_s=None,
        total_s=30.0,
        early_s=10.0,
        late_s=40.0,
        samples=6,
    )


def test_the_learned_expectation_sizes_the_slot():
    pace = Pace(concurrency=1)
    state = RouteState()
    for i in range(MIN_SAMPLES):
        state = route_model.on_report(state, pace, saved(f"j{i}", 0.0, 8.0), 10.0)
    state, answer = route_model.on_admit(state, pace, ask("a", 10.0, total_s=100.0), 10.0)
    assert answer.expected is not None
    assert answer.expected.total_s == 8.0
    assert state.pacer.slots[0].expected_end == 18.0


def test_never_sent_reports_teach_nothing_and_failures_count_by_kind():
    state = RouteState()
    never_sent = AttemptReport("a", 1, SHAPE, "connect_failed", sent_at=None, total_s=1.0)
    state = route_model.on_report(state, RPM10, never_sent, 1.0)
    assert state.classes.get(SHAPE, ClassStats()) == ClassStats()
    for kind in ("server_error", "timeout", "server_error"):
        failed = AttemptReport("b", 1, SHAPE, kind, sent_at=2.0, total_s=3.0)
        state = route_model.on_report(state, RPM10, failed, 5.0)
    stats = state.classes[SHAPE]
    assert (stats.sent, stats.saved, stats.total) == (3, 0, ())
    assert dict(stats.failures) == {"server_error": 2, "timeout": 1}


def test_health_figures_match_hand_computed_ones():
    state = RouteState()
    totals = [30.0, 10.0, 50.0, 20.0, 40.0]
    for i, total in enumerate(totals):
        state = route_model.on_report(
            state, RPM10, saved(f"s{i}", 0.0, total, first_byte_s=float(i + 1)), 1.0
        )
    for kind in ("server_error", "timeout", "server_error"):
        state = route_model.on_report(
            state, RPM10, AttemptReport("f", 1, SHAPE, kind, sent_at=0.5), 1.0
        )
    other = "gpt-image-2/2mp/high/webp/stream-2"
    state = route_model.on_report(state, RPM10, replace(saved("o", 0.0, 90.0), shape=other), 1.0)
    state, _ = route_model.on_admit(state, RPM10, ask("a", 2.0), 2.0)
    state, _ = route_model.on_admit(state, RPM10, ask("b", 2.0), 2.0)
    state, _ = route_model.on_admit(state, RPM10, ask("c", 2.0, priority=Priority.INTERACTIVE), 2.0)

    shown = route_model.health("azure", state, RPM10, 3.0).to_json(iso)
    assert (shown["route"], shown["sent"], shown["saved"]) == ("azure", 9, 6)
    assert shown["successRate"] == round(6 / 9, 4) == 0.6667
    assert shown["errors"] == {"server_error": 2, "timeout": 1}
    assert shown["queued"] == {"interactive": 1, "batch": 1}
    assert (shown["running"], shown["expiredSlots"]) == (1, 0)
    assert shown["pace"] == {
        "requestsPerMinute": 10,
        "imagesPerMinute": None,
        "concurrency": None,
        "burst": 1,
        "spacingS": 6.12,
        "sendsLastWindow": 1,
        "nextSendAt": iso(2.0 + 3 * SPACING),  # after a, then c and b in the queue
        "coolDownUntil": None,
        "coolDownReason": None,
    }
    first, second = shown["shapes"]
    assert first == {
        "shape": SHAPE,
        "sent": 8,
        "saved": 5,
        "successRate": 0.625,
        "recentSuccessRate": 0.625,
        "errors": {"server_error": 2, "timeout": 1},
        # first byte 1..5: p50 index round(2) = 2 -> 3, p95 index round(3.8) = 4 -> 5
        "firstByteS": {"p50": 3.0, "p95": 5.0},
        "firstPartialImageS": None,
        # totals sorted 10 20 30 40 50: p50 30, p95 50
        "totalS": {"p50": 30.0, "p95": 50.0},
        "samples": 5,
    }
    assert second["shape"] == other
    assert (second["sent"], second["successRate"], second["totalS"]) == (
        1,
        1.0,
        {"p50": 90.0, "p95": 90.0},
    )


def test_health_of_an_unlimited_route_nobody_used():
    shown = route_model.health("gateway", RouteState(), Pace(), 0.0).to_json(iso)
    assert (shown["sent"], shown["successRate"], shown["shapes"]) == (0, None, [])
    assert (shown["pace"]["spacingS"], shown["pace"]["nextSendAt"]) == (None, None)


def test_expired_slots_show_in_health():
    pace = Pace(concurrency=2, lease_s=100.0)
    state, _ = route_model.on_admit(RouteState(), pace, ask("a", 0.0), 0.0)
    assert route_model.health("r", state, pace, 50.0).running == 1
    shown = route_model.health("r", state, pace, 100.0)
    assert (shown.running, shown.expired_slots) == (0, 1)


def test_the_entity_state_survives_every_operation_as_json():
    state = stored(busy_state())
    state = stored(route_model.on_leave(state, "b"))
    state = stored(route_model.on_report(state, RPM10, saved("a", 0.0, 9.0), 9.0))
    assert state.classes[SHAPE].saved == 2
