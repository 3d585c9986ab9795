"""An admitted attempt that did not send (it came too late, or read a 429's pause) gives its
send back: asking again gets a slot of its own, never the same one handed back."""

from __future__ import annotations

import pytest

from rules.pacing import Pace
from rules.route_model import RouteState, on_admit, on_report
from rules.route_records import AdmitRequest, AttemptReport, Expectation, Priority

SHAPE = "gpt-image-2/1mp/low/png/stream-1"
PACE = Pace(requests_per_minute=6)
T = 1_800_000_000.0
GUESS = Expectation(None, None, total_s=22.0, early_s=13.0, late_s=26.0, samples=0)


def ask(job_id: str, at: float) -> AdmitRequest:
    return AdmitRequest(job_id, 1, Priority.BATCH, 1, SHAPE, GUESS, queued_since=at)


def test_an_attempt_sent_back_by_a_pause_asks_again_and_waits_for_its_end():
    state, first = on_admit(RouteState(), PACE, ask("img-a", T), T)
    assert first.admitted
    # Another job's 429 (30 s) reaches the governor; img-a's worker read the pause and did
    # not send.
    refused = AttemptReport(
        "img-z", 1, SHAPE, "rate_limited", T - 1, retry_after_s=30.0, ended_at=T
    )
    state = on_report(state, PACE, refused, T)
    unsent = AttemptReport("img-a", 1, SHAPE, "admission_expired", None, ended_at=T + 0.5)
    state = on_report(state, PACE, unsent, T + 0.5)
    assert state.pacer.sends == ()

    state, again = on_admit(state, PACE, ask("img-a", T), T + 0.6)

    assert not again.admitted
    assert again.start_at == pytest.approx(T + 30)  # the 429's end


def test_a_send_that_never_left_does_not_hold_back_the_next_one():
    state, _ = on_admit(RouteState(), PACE, ask("img-a", T), T)
    late = AttemptReport("img-a", 1, SHAPE, "admission_expired", None, ended_at=T + 3)
    state = on_report(state, PACE, late, T + 3)

    state, other = on_admit(state, PACE, ask("img-b", T + 3), T + 3)

    assert other.admitted
    assert other.start_at == pytest.approx(T + 3)
