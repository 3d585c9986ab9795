"""The image job orchestrator replayed through the SDK when its slot on the route was claimed by
another attempt (FailureKind.SLOT_TAKEN, rules.route_records.SlotClaim): the governor's slot
claim reaches the activity, and an attempt that lost its slot reports it and asks again as the
same attempt, keeping its place, without a retry counted and without ever being sent however
late (only lateness counts towards that)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrators.image_job import FINISH, GENERATE, STALE_ADMISSIONS_MAX
from orchestrators.route_entity import ADMIT, REPORT
from rules.outcome import Failure, FailureKind, Layer
from rules.route_records import Admission, AdmitRequest, AttemptReport, SlotClaim

from . import test_orchestrator_replay as replay
from .durable_history import History, activities, entity_calls, entity_signals
from .test_orchestrator_replay import EXPECTED, GRACE_S, ROUTE, failed, job_input, only, saved

# Its fixtures: only its settings, and its orchestrator's handle.
app_settings = replay.app_settings
handle = replay.handle

TAKEN = Failure(
    kind=FailureKind.SLOT_TAKEN,
    layer=Layer.WORKER,
    message="another attempt claimed this attempt's slot on the route first",
    sent=False,
)


def admit_with_claim(history: History, task_id: int, key: str) -> float:
    at = history.now + timedelta(seconds=0.05)
    answer = Admission(
        admitted=True,
        position=0,
        start_at=at.timestamp(),
        ask_again_at=None,
        reason=None,
        expected=EXPECTED,
        claim=SlotClaim(key, first=False),
    )
    history.call_entity(task_id, ROUTE, ADMIT, answer.to_json(), after_s=0.05)
    return at.timestamp()


def test_a_lost_slot_is_asked_for_again_as_the_same_attempt_keeping_its_place(handle):
    history = History(handle, "job-1", job_input())
    _, actions = history.step()
    first_ask = AdmitRequest.from_json(only(entity_calls(actions, ADMIT))["input"])
    admit_with_claim(history, 0, "job-1.1.1")
    _, actions = history.step()
    generate = only(activities(actions, GENERATE))["input"]
    assert generate["claim"] == {"key": "job-1.1.1", "first": False}

    task = 1
    for lost in range(1, STALE_ADMISSIONS_MAX + 2):  # more often than lateness may happen
        history.complete_activity(task, GENERATE, failed(1, TAKEN), after_s=1)
        state, actions = history.step()
        report = AttemptReport.from_json(only(entity_signals(actions, REPORT))["input"])
        assert (report.attempt, report.failure_kind, report.sent_at) == (1, "slot_taken", None)
        ask = AdmitRequest.from_json(only(entity_calls(actions, ADMIT))["input"])
        assert ask.attempt == 1
        assert ask.queued_since == first_ask.queued_since  # its place in the queue is kept
        assert ask.lost_slots == lost  # given no other slot once it lost one (rules.pacing)
        assert activities(actions, FINISH) == []
        assert state["customStatus"]["phase"] == "generating"
        history.signal_sent(task + 1, ROUTE, REPORT)
        start = admit_with_claim(history, task + 2, f"job-1.1.{lost + 1}")
        _, actions = history.step()
        generate = only(activities(actions, GENERATE))["input"]
        assert generate["attempt"] == 1
        assert generate["claim"]["key"] == f"job-1.1.{lost + 1}"
        # Losing a slot is not lateness: the send-by time stays, however often it happens.
        assert generate["send_by"] == pytest.approx(start + GRACE_S)
        task += 3

    assert first_ask.lost_slots == 0
    history.complete_activity(task, GENERATE, saved(1), after_s=22)
    _, actions = history.step()
    finish = only(activities(actions, FINISH))["input"]
    assert finish["outcome"]["state"] == "saved"
    assert finish["outcome"]["retry_count"] == 0
    assert [a["attempt"] for a in finish["attempts"]] == [1]
