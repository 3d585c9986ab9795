"""The image job orchestrator, replayed through the SDK's handle from hand-built histories.

Every attempt first asks the route's governor (the ``route`` entity, key ``azure``): its call is
task 0 of a job, the attempt's activity task 1, the report signalled after it task 2, and so on
(tasks, timers, calls and signals draw their ids from one counter).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import wiring
from orchestrators.image_job import CANCEL_EVENT, FINISH, GENERATE, STALE_ADMISSIONS_MAX, bp
from orchestrators.route_entity import ADMIT, LEAVE, REPORT, SUMMARY
from rules import route_model
from rules.job_records import FailoverDecided, JobDecided, JobInput, RouteDecided
from rules.outcome import AttemptResult, Failure, FailureKind, Layer, Preview, StoredImage, Timings
from rules.pacing import Pace
from rules.request import ImageJobRequest
from rules.retry import RetryPolicy
from rules.route_model import RouteState
from rules.route_records import Admission, AdmitRequest, AttemptReport, Expectation, RouteSummary
from rules.send_plan import SendPlan
from rules.timing import iso_utc

from .app_settings import only_settings
from .durable_history import (
    T0,
    History,
    activities,
    entity_calls,
    entity_signals,
    orchestrator_handle,
    timers,
)

PROMPT = "a red apple on a white background"
REQUEST = {
    "prompt": PROMPT,
    "size": "1024x1024",
    "quality": "low",
    "output_format": "png",
    "output_compression": None,
    "background": "auto",
    "moderation": "auto",
    "n": 1,
    "partial_images": 1,
    "route": "azure",
}
# The route entity of REQUEST's route, as the SDK names it in its actions.
ROUTE = "@route@azure"
# The smallest valid app settings with the one route the jobs go through.
SETTINGS = {
    "IMAGE_ROUTES": "azure",
    "IMAGE_ROUTE_AZURE_BASE_URL": "http://127.0.0.1:8089",
    "IMAGE_ROUTE_AZURE_DEPLOYMENT": "gpt-image-2",
    "IMAGE_ROUTE_AZURE_AUTH": "none",
    "IMAGES_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    "IMAGE_JOB_ID_SECRET": "test-only-secret-0123456789",
}
# What the route expects of the attempts' shape class (its answers carry it): the calibration's
# guess (no samples yet), so the starter's send plan stands.
EXPECTED = Expectation(
    first_byte_s=2.0, first_partial_s=8.0, total_s=20.0, early_s=15.0, late_s=30.0, samples=0
)
# What it has measured, once it has: the first attempt's send is planned on it.
LEARNED = replace(EXPECTED, samples=12)
# The grace an admitted send has with the route's default pace (image_job.SEND_GRACE_S).
GRACE_S = 2.0
T0_S = T0.timestamp()


@pytest.fixture(autouse=True)
def app_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The orchestrator reads the app settings (wiring.settings, cached): only SETTINGS."""
    with only_settings(monkeypatch, SETTINGS):
        yield


def job_input(
    send: SendPlan | None = None, after_silence: SendPlan | None = None
) -> dict[str, Any]:
    return JobInput(
        request=ImageJobRequest.from_json(REQUEST),
        send=send or SendPlan(stream=True, partial_images=1),
        send_after_gateway_kill=after_silence,
        send_after_read_idle=after_silence,
        policy=RetryPolicy(),
        caller="caller-digest",
        fingerprint="fingerprint",
        created_at="2026-05-07T13:46:12.000Z",
    ).to_json()


@pytest.fixture(scope="module")
def handle():
    return orchestrator_handle(bp, "image_job")


def admitted(at: datetime, expected: Expectation = EXPECTED) -> dict[str, Any]:
    """The governor's answer: send at ``at``."""
    return Admission(
        admitted=True,
        position=0,
        start_at=at.timestamp(),
        ask_again_at=None,
        reason=None,
        expected=expected,
    ).to_json()


def queued(*, position: int, start_in_s: float, ask_in_s: float, now: datetime) -> Admission:
    return Admission(
        admitted=False,
        position=position,
        start_at=(now + timedelta(seconds=start_in_s)).timestamp(),
        ask_again_at=(now + timedelta(seconds=ask_in_s)).timestamp(),
        reason="the route's 1 concurrent requests are in use",
        expected=EXPECTED,
    )


def admit(history: History, task_id: int) -> float:
    """The attempt's admit call (task ``task_id``) is answered: admitted, send at once. The
    admitted send time (epoch s) is returned."""
    at = history.now + timedelta(seconds=0.05)
    history.call_entity(task_id, ROUTE, ADMIT, admitted(at), after_s=0.05)
    return at.timestamp()


def fire_at(action: dict[str, Any]) -> datetime:
    return datetime.strptime(action["fireAt"][:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)


def epoch(moment: str) -> float:
    return datetime.fromisoformat(moment).timestamp()


def iso(epoch_s: float) -> str:
    return iso_utc(datetime.fromtimestamp(epoch_s, UTC))


def saved(attempt: int, *, started_at: str | None = None) -> dict[str, Any]:
    return AttemptResult(
        attempt=attempt,
        ok=True,
        timings=Timings(request_started_at=started_at, final_image_ms=21_000, http_status=200),
        images=(StoredImage("job-1/image.png", "image/png", 9, 1024, 1024),),
        previews=(Preview(0, 0, f"job-1/preview-{attempt}-0.png", 9, stored=True),),
        usage={"output_tokens": 272},
        cost_usd=0.00816,
    ).to_json()


def failed(attempt: int, failure: Failure, timings: Timings | None = None) -> dict[str, Any]:
    return AttemptResult(
        attempt=attempt, ok=False, failure=failure, timings=timings or Timings()
    ).to_json()


RATE_LIMITED = Failure(
    kind=FailureKind.RATE_LIMITED,
    layer=Layer.ROUTE,
    message="Rate limit reached. Please try again in 12s.",
    sent=True,
    http_status=429,
    error_type="requests",
    code="rate_limit_exceeded",
    retry_after_s=12.0,
    retry_after_source="retry-after-ms",
)
CANCELLED = Failure(
    kind=FailureKind.CANCELLED, layer=Layer.CALLER, message="cancelled by the caller", sent=True
)
EXPIRED = Failure(
    kind=FailureKind.ADMISSION_EXPIRED,
    layer=Layer.WORKER,
    message="the worker started after its admission's send-by time",
    sent=False,
)


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def test_a_first_attempt_that_succeeds_is_finished_and_saved(handle):
    history = History(handle, "job-1", job_input())
    state, actions = history.step()
    ask = only(entity_calls(actions, ADMIT))
    assert ask["instanceId"] == ROUTE
    assert [a["actionType"] for a in actions] == [7]  # the governor is asked before anything
    assert state.get("customStatus") is None  # no status: not started (queued)

    start = admit(history, 0)
    state, actions = history.step()
    generate = only(activities(actions, GENERATE))
    assert generate["input"]["attempt"] == 1
    assert generate["input"]["send"]["partial_images"] == 1
    assert generate["input"]["job_created_at"] == "2026-05-07T13:46:12.000Z"
    assert [a["actionType"] for a in actions] == [0, 6]  # the activity, and the cancel wait
    assert state["customStatus"] == {
        "phase": "generating",
        "attempt": 1,
        "eta": iso(start + EXPECTED.total_s),
        "etaEarly": iso(start + EXPECTED.early_s),
    }
    assert "apple" not in str(state["customStatus"])

    history.complete_activity(1, GENERATE, saved(1), after_s=22)
    state, actions = history.step()
    only(entity_signals(actions, REPORT))
    finish = only(activities(actions, FINISH))
    assert finish["input"]["outcome"]["state"] == "saved"
    assert state["customStatus"] == {
        "phase": "finishing",
        "attempt": 1,
        "state": "saved",
        "failure": None,
    }

    history.signal_sent(2, ROUTE, REPORT)
    history.complete_activity(3, FINISH, {"metadata_blob": "job-1/metadata.json"}, after_s=0.2)
    state = history.episode()
    assert state["isDone"] is True
    assert state["output"]["state"] == "saved"
    assert state["output"]["retry_count"] == 0
    assert state["output"]["images"][0]["width"] == 1024


def test_a_429_waits_at_least_what_the_server_asked_on_a_durable_timer(handle):
    history = History(handle, "job-1", job_input())
    history.step()
    admit(history, 0)
    history.step()
    history.complete_activity(1, GENERATE, failed(1, RATE_LIMITED), after_s=1)
    state, actions = history.step()
    timer = only(timers(actions))
    waited = (fire_at(timer) - history.now).total_seconds()
    assert 12.0 <= waited <= 12.0 * 1.2
    assert state["customStatus"]["phase"] == "waiting_to_retry"
    assert "12s" in state["customStatus"]["reason"]

    history.signal_sent(2, ROUTE, REPORT)
    history.fire_timer(3, timer["fireAt"])
    state, actions = history.step()
    assert only(entity_calls(actions, ADMIT))["input"]["attempt"] == 2  # asked again first
    admit(history, 4)
    state, actions = history.step()
    retry = only(activities(actions, GENERATE))
    assert retry["input"]["attempt"] == 2

    history.complete_activity(5, GENERATE, saved(2), after_s=22)
    history.step()
    history.signal_sent(6, ROUTE, REPORT)
    history.complete_activity(7, FINISH, {}, after_s=0.1)
    state = history.episode()
    assert state["output"]["state"] == "saved"
    assert state["output"]["retry_count"] == 1
    assert "rate limited" in state["output"]["retry_reason"]


def test_a_moderation_block_is_never_retried(handle):
    blocked = Failure(
        kind=FailureKind.REJECTED,
        layer=Layer.ROUTE,
        message="Your request was rejected by the safety system.",
        sent=True,
        http_status=400,
        error_type="image_generation_user_error",
        code="moderation_blocked",
    )
    history = History(handle, "job-1", job_input())
    history.step()
    admit(history, 0)
    history.step()
    history.complete_activity(1, GENERATE, failed(1, blocked), after_s=3)
    _, actions = history.step()
    finish = only(activities(actions, FINISH))
    outcome = finish["input"]["outcome"]
    assert outcome["state"] == "failed"
    assert outcome["failure"] == "returned_error"
    assert outcome["error"]["code"] == "moderation_blocked"
    assert finish["input"]["attempts"][0]["decision"]["retry"] is False


def test_replays_are_deterministic(handle):
    def replayed() -> dict[str, Any]:
        history = History(handle, "job-1", job_input())
        history.episode()
        admit(history, 0)
        history.episode()
        history.complete_activity(1, GENERATE, failed(1, RATE_LIMITED), after_s=1)
        return history.episode()

    assert replayed()["actions"] == replayed()["actions"]


def test_a_cancel_while_waiting_to_retry_ends_the_job_without_another_attempt(handle):
    history = History(handle, "job-1", job_input())
    history.step()
    admit(history, 0)
    history.step()
    history.complete_activity(1, GENERATE, failed(1, RATE_LIMITED), after_s=1)
    _, actions = history.step()
    timer = only(timers(actions))
    history.signal_sent(2, ROUTE, REPORT)
    history.schedule_timer(3, timer["fireAt"])
    history.raise_event(CANCEL_EVENT, "{}", after_s=2)
    _, actions = history.step()
    assert activities(actions, GENERATE) == []
    assert entity_calls(actions, ADMIT) == []
    finish = only(activities(actions, FINISH))
    assert finish["input"]["outcome"]["state"] == "cancelled"


def test_a_cancel_while_generating_waits_for_the_attempt_to_stop(handle):
    history = History(handle, "job-1", job_input())
    history.step()
    admit(history, 0)
    history.step()
    history.schedule_activity(1, GENERATE)
    history.raise_event(CANCEL_EVENT, "{}", after_s=5)
    state, actions = history.step()
    assert state["customStatus"]["phase"] == "cancelling"
    assert activities(actions, FINISH) == []  # not before the attempt stops

    history.activity_result(1, failed(1, CANCELLED), after_s=1)
    state, actions = history.step()
    finish = only(activities(actions, FINISH))
    assert finish["input"]["outcome"]["state"] == "cancelled"
    assert finish["input"]["outcome"]["error"] is None


def test_a_cancel_that_comes_after_the_image_was_stored_reports_it_saved(handle):
    history = History(handle, "job-1", job_input())
    history.step()
    admit(history, 0)
    history.step()
    history.schedule_activity(1, GENERATE)
    history.raise_event(CANCEL_EVENT, "{}", after_s=5)
    history.step()
    history.activity_result(1, saved(1), after_s=1)
    _, actions = history.step()
    finish = only(activities(actions, FINISH))
    assert finish["input"]["outcome"]["state"] == "saved"


def test_the_send_plan_from_the_starter_reaches_the_activity(handle):
    send = SendPlan(stream=False, partial_images=0, notes=("sent without streaming",))
    history = History(handle, "job-1", job_input(send))
    history.step()
    admit(history, 0)
    generate = only(activities(history.step()[1], GENERATE))
    assert generate["input"]["send"]["stream"] is False
    assert generate["input"]["send"]["send_notes"] == ["sent without streaming"]


def test_once_the_route_has_measured_the_class_the_first_send_is_planned_on_it(handle):
    # The starter planned no streaming; the route measured 30 s at the slow end, which fits
    # every limit streamed as asked (one partial image).
    send = SendPlan(stream=False, partial_images=0, notes=("sent without streaming",))
    history = History(handle, "job-1", job_input(send))
    history.step()
    history.call_entity(0, ROUTE, ADMIT, admitted(history.now, LEARNED), after_s=0.01)
    generate = only(activities(history.step()[1], GENERATE))
    assert (generate["input"]["send"]["stream"], generate["input"]["send"]["partial_images"]) == (
        True,
        1,
    )


def test_an_activity_that_raised_becomes_a_recorded_failure_not_a_crash(handle):
    history = History(handle, "job-1", job_input())
    history.step()
    admit(history, 0)
    history.step()
    history.schedule_activity(1, GENERATE)
    history.task_failed(1, "boom", "Traceback ...", after_s=1)
    state, actions = history.step()
    assert not state.get("error")
    timer = only(timers(actions))
    assert timer["actionType"] == 5
    assert state["customStatus"]["phase"] == "waiting_to_retry"
    assert (
        "post" not in state["customStatus"]["reason"] or "sent" in state["customStatus"]["reason"]
    )


@pytest.mark.parametrize(
    ("ending", "counted"),
    [
        ("raised", False),  # a worker crash: read as a possible send, with no timings
        (Failure(FailureKind.STORAGE_FAILED, Layer.STORAGE, "blob down", sent=False), False),
        (Failure(FailureKind.CONNECTION_LOST, Layer.NETWORK, "refused", sent=False), True),
    ],
)
def test_only_the_route_refusing_before_the_send_lowers_its_health(handle, ending, counted):
    """The report says whether the route refused (rules.route_stats.refused_by_route): a
    failure of ours before or without a send never counts against the route, as the entity
    reads the report."""
    history = History(handle, "job-1", job_input())
    history.step()
    admit(history, 0)
    history.step()
    history.schedule_activity(1, GENERATE)
    if ending == "raised":
        history.task_failed(1, "boom", "Traceback ...", after_s=1)
    else:
        history.activity_result(1, failed(1, ending), after_s=1)
    _, actions = history.step()
    report = AttemptReport.from_json(only(entity_signals(actions, REPORT))["input"])
    assert (report.sent_at, report.refused) == (None, counted)
    state = route_model.on_report(RouteState(), Pace(), report, T0_S)
    assert route_model.summary(state, T0_S + 1).unsent_failures == (1 if counted else 0)


def test_a_cancelled_attempt_ends_cancelled_even_before_the_event_arrives(handle):
    history = History(handle, "job-1", job_input())
    history.step()
    admit(history, 0)
    history.step()
    history.complete_activity(1, GENERATE, failed(1, CANCELLED), after_s=1)
    _, actions = history.step()
    finish = only(activities(actions, FINISH))
    assert finish["input"]["outcome"]["state"] == "cancelled"


def test_a_failed_finish_never_turns_a_saved_image_into_a_failed_job(handle):
    history = History(handle, "job-1", job_input())
    history.step()
    admit(history, 0)
    history.step()
    history.complete_activity(1, GENERATE, saved(1), after_s=22)
    state, actions = history.step()
    finish = only(activities(actions, FINISH))
    assert finish["actionType"] == 1  # with retry: the host retries it
    assert finish["retryOptions"]["maxNumberOfAttempts"] == 5
    history.signal_sent(2, ROUTE, REPORT)
    # The host retries it: after each of the 5 failures a retry timer, then the task again.
    for failure in range(5):
        task_id = 3 + 2 * failure
        history.schedule_activity(task_id, FINISH)
        history.task_failed(task_id, "storage down", "", after_s=1)
        history.fire_timer(task_id + 1, "2026-05-07T14:00:00.0000000Z")
    state = history.episode()
    assert state["isDone"] is True
    assert state["output"]["state"] == "saved"
    assert state["output"]["metadata_blob"] is None


def test_a_huge_server_wait_ends_the_job_with_its_reason(handle):
    asked = Failure(
        kind=FailureKind.RATE_LIMITED,
        layer=Layer.ROUTE,
        message="m",
        sent=True,
        http_status=429,
        retry_after_s=86_400.0,
        retry_after_source="retry-after",
    )
    history = History(handle, "job-1", job_input())
    history.step()
    admit(history, 0)
    history.step()
    history.complete_activity(1, GENERATE, failed(1, asked), after_s=1)
    _, actions = history.step()
    finish = only(activities(actions, FINISH))
    assert finish["input"]["outcome"]["state"] == "failed"
    assert "86400s" in finish["input"]["attempts"][0]["decision"]["reason"]


def test_a_resend_after_a_gateway_silence_kill_goes_out_in_the_other_shape(handle):
    killed = Failure(
        kind=FailureKind.GATEWAY_TIMEOUT,
        layer=Layer.GATEWAY,
        message="the gateway gave up on a silent stream",
        sent=True,
        http_status=408,
    )
    unstreamed = SendPlan(stream=False, partial_images=0, read_idle_s=470.0)
    history = History(handle, "job-1", job_input(after_silence=unstreamed))
    history.step()
    admit(history, 0)
    history.step()
    history.complete_activity(1, GENERATE, failed(1, killed), after_s=60)
    _, actions = history.step()
    timer = only(timers(actions))
    history.signal_sent(2, ROUTE, REPORT)
    history.fire_timer(3, timer["fireAt"])
    _, actions = history.step()
    # The resend asks the governor as its own shape class.
    assert only(entity_calls(actions, ADMIT))["input"]["shape"].endswith("/plain")
    admit(history, 4)
    _, actions = history.step()
    resend = only(activities(actions, GENERATE))
    assert resend["input"]["attempt"] == 2
    assert resend["input"]["send"]["stream"] is False
    assert resend["input"]["send"]["read_idle_s"] == 470.0


def test_other_failures_keep_the_planned_shape(handle):
    unstreamed = SendPlan(stream=False, partial_images=0, read_idle_s=470.0)
    history = History(handle, "job-1", job_input(after_silence=unstreamed))
    history.step()
    admit(history, 0)
    history.step()
    history.complete_activity(1, GENERATE, failed(1, RATE_LIMITED), after_s=1)
    _, actions = history.step()
    timer = only(timers(actions))
    history.signal_sent(2, ROUTE, REPORT)
    history.fire_timer(3, timer["fireAt"])
    history.step()
    admit(history, 4)
    retry = only(activities(history.step()[1], GENERATE))
    assert retry["input"]["send"]["stream"] is True


def test_a_gateway_kill_with_no_other_shape_is_not_sent_again(handle):
    killed = Failure(
        kind=FailureKind.GATEWAY_TIMEOUT,
        layer=Layer.GATEWAY,
        message="the gateway gave up on a silent request",
        sent=True,
        http_status=408,
    )
    history = History(handle, "job-1", job_input())  # no resend shapes
    history.step()
    admit(history, 0)
    history.step()
    history.complete_activity(1, GENERATE, failed(1, killed), after_s=60)
    _, actions = history.step()
    assert timers(actions) == []
    finish = only(activities(actions, FINISH))
    assert finish["input"]["outcome"]["state"] == "failed"
    decision = finish["input"]["attempts"][0]["decision"]
    assert decision["retry"] is False
    assert "no other request shape" in decision["reason"]


# --- the route's governor -----------------------------------------------------------------------


def test_a_queued_attempt_waits_on_a_timer_with_its_place_then_asks_again(handle):
    history = History(handle, "job-1", job_input())
    state, actions = history.step()
    first = AdmitRequest.from_json(only(entity_calls(actions, ADMIT))["input"])
    assert (first.job_id, first.attempt, first.images) == ("job-1", 1, 1)
    assert first.queued_since == T0_S

    answer = queued(position=2, start_in_s=30, ask_in_s=29, now=history.now)
    history.call_entity(0, ROUTE, ADMIT, answer.to_json(), after_s=0.05)
    state, actions = history.step()
    assert state["customStatus"] == {
        "phase": "queued",
        "attempt": 1,
        "queuePosition": 2,
        "reason": "the route's 1 concurrent requests are in use",
        "eta": iso(answer.start_at + EXPECTED.total_s),
        "etaEarly": iso(answer.start_at + EXPECTED.early_s),
    }
    assert activities(actions, GENERATE) == []
    timer = only(timers(actions))
    assert answer.ask_again_at is not None
    assert fire_at(timer) == datetime.fromtimestamp(answer.ask_again_at, UTC)
    assert [a["actionType"] for a in actions] == [5, 6]  # the timer, raced by the cancel wait

    history.fire_timer(1, timer["fireAt"])
    state, actions = history.step()
    again = AdmitRequest.from_json(only(entity_calls(actions, ADMIT))["input"])
    # The same attempt, and its place in the queue kept from the first ask.
    assert (again.attempt, again.queued_since) == (1, first.queued_since)
    assert activities(actions, GENERATE) == []

    start = admit(history, 2)
    state, actions = history.step()
    generate = only(activities(actions, GENERATE))
    assert generate["input"]["attempt"] == 1
    assert generate["input"]["send_at"] == start
    assert generate["input"]["send_by"] == pytest.approx(start + GRACE_S)
    assert state["customStatus"] == {
        "phase": "generating",
        "attempt": 1,
        "eta": iso(start + EXPECTED.total_s),
        "etaEarly": iso(start + EXPECTED.early_s),
    }


def test_an_admission_without_an_ask_again_time_asks_a_lead_before_the_expected_start(handle):
    history = History(handle, "job-1", job_input())
    history.step()
    answer = Admission(
        admitted=False,
        position=1,
        start_at=(history.now + timedelta(seconds=40)).timestamp(),
        ask_again_at=None,
        reason="the route asked for a pause (429)",
        expected=None,  # nothing learned yet: the calibration's guess gives the ETA
    )
    history.call_entity(0, ROUTE, ADMIT, answer.to_json(), after_s=0.05)
    state, actions = history.step()
    assert fire_at(only(timers(actions))) == datetime.fromtimestamp(answer.start_at - 1.0, UTC)
    assert state["customStatus"]["eta"] > iso(answer.start_at)


def test_a_cancel_while_queued_ends_the_job_unsent_and_leaves_the_queue(handle):
    history = History(handle, "job-1", job_input())
    history.step()
    answer = queued(position=3, start_in_s=60, ask_in_s=59, now=history.now)
    history.call_entity(0, ROUTE, ADMIT, answer.to_json(), after_s=0.05)
    state, actions = history.step()
    timer = only(timers(actions))
    history.schedule_timer(1, timer["fireAt"])
    history.raise_event(CANCEL_EVENT, "{}", after_s=4)
    state, actions = history.step()
    assert activities(actions, GENERATE) == []
    assert entity_calls(actions, ADMIT) == []
    leave = only(entity_signals(actions, LEAVE))
    assert leave["instanceId"] == ROUTE
    assert leave["input"] == "job-1"
    assert entity_signals(actions, REPORT) == []  # nothing was sent, nothing to learn
    finish = only(activities(actions, FINISH))
    outcome = finish["input"]["outcome"]
    assert outcome["state"] == "cancelled"
    assert outcome["error"] is None
    assert outcome["cost_usd"] is None
    assert finish["input"]["attempts"] == []
    assert state["customStatus"]["phase"] == "finishing"

    history.signal_sent(2, ROUTE, LEAVE, "job-1")
    history.complete_activity(3, FINISH, {}, after_s=0.1)
    state = history.episode()
    assert state["isDone"] is True
    assert state["output"]["state"] == "cancelled"
    assert state["output"]["retry_count"] == 0


def test_every_attempt_is_reported_to_the_route_without_the_prompt(handle):
    refused = Failure(
        kind=FailureKind.CONNECTION_LOST,
        layer=Layer.NETWORK,
        message="connection refused",
        sent=False,
    )
    history = History(handle, "job-1", job_input())
    _, actions = history.step()
    shape = only(entity_calls(actions, ADMIT))["input"]["shape"]
    reports: list[dict[str, Any]] = []

    # Attempt 1: never left (refused); attempt 2: a 429; attempt 3: saved.
    start = admit(history, 0)
    history.step()
    history.complete_activity(1, GENERATE, failed(1, refused), after_s=0.5)
    _, actions = history.step()
    reports.append(only(entity_signals(actions, REPORT)))
    history.signal_sent(2, ROUTE, REPORT)
    history.fire_timer(3, only(timers(actions))["fireAt"])
    history.step()

    start = admit(history, 4)
    history.step()
    limited_at = iso(start + 0.2)
    limited = Timings(
        request_started_at=limited_at,
        connect_ms=250,
        first_byte_ms=300,
        http_status=429,
        rate_limit={"x-ratelimit-remaining-requests": "0"},
    )
    history.complete_activity(5, GENERATE, failed(2, RATE_LIMITED, limited), after_s=1)
    _, actions = history.step()
    reports.append(only(entity_signals(actions, REPORT)))
    history.signal_sent(6, ROUTE, REPORT)
    history.fire_timer(7, only(timers(actions))["fireAt"])
    history.step()

    start = admit(history, 8)
    history.step()
    saved_at = iso(start + 0.1)
    history.complete_activity(9, GENERATE, saved(3, started_at=saved_at), after_s=22)
    _, actions = history.step()
    reports.append(only(entity_signals(actions, REPORT)))
    ended = history.now.timestamp()
    only(activities(actions, FINISH))

    for report in reports:
        assert report["instanceId"] == ROUTE
        assert PROMPT not in json.dumps(report)
        assert "apple" not in json.dumps(report)
    never, rate_limited, ok = (AttemptReport.from_json(r["input"]) for r in reports)
    assert [r.attempt for r in (never, rate_limited, ok)] == [1, 2, 3]
    assert {r.job_id for r in (never, rate_limited, ok)} == {"job-1"}
    assert {r.shape for r in (never, rate_limited, ok)} == {shape}

    assert never.failure_kind == "connection_lost"
    assert never.sent_at is None
    assert never.total_s is None

    assert rate_limited.failure_kind == "rate_limited"
    # It left once its new connection was up (250 ms); its headers came 300 ms after the start.
    assert rate_limited.sent_at == pytest.approx(epoch(limited_at) + 0.25)
    assert rate_limited.total_s is None  # no image: nothing to learn of the clock
    assert rate_limited.retry_after_s == 12.0
    assert rate_limited.first_byte_s == 0.3
    assert rate_limited.rate_limit == {"x-ratelimit-remaining-requests": "0"}
    assert rate_limited.headers_at == pytest.approx(epoch(limited_at) + 0.3)

    assert ok.failure_kind is None
    assert ok.sent_at == pytest.approx(epoch(saved_at))
    # From the send until the image was stored, on the activity's clock: its final image at
    # 21 s (the saved result's timings; no upload time recorded).
    assert ok.total_s == pytest.approx(21.0)
    assert ok.ended_at == pytest.approx(ended)


def test_a_stale_admission_asks_again_as_the_same_attempt_and_then_sends_however_late(handle):
    history = History(handle, "job-1", job_input())
    history.step()
    admit(history, 0)
    _, actions = history.step()
    assert only(activities(actions, GENERATE))["input"]["send_by"] is not None

    # Each stale admission: report (never sent), ask again; no timer, no retry.
    task = 1
    for stale in range(1, STALE_ADMISSIONS_MAX + 1):
        history.complete_activity(task, GENERATE, failed(1, EXPIRED), after_s=30)
        state, actions = history.step()
        report = AttemptReport.from_json(only(entity_signals(actions, REPORT))["input"])
        assert (report.attempt, report.failure_kind, report.sent_at) == (
            1,
            "admission_expired",
            None,
        )
        assert AdmitRequest.from_json(only(entity_calls(actions, ADMIT))["input"]).attempt == 1
        assert timers(actions) == []
        assert activities(actions, FINISH) == []
        assert state["customStatus"]["phase"] == "generating"
        history.signal_sent(task + 1, ROUTE, REPORT)
        start = admit(history, task + 2)
        _, actions = history.step()
        generate = only(activities(actions, GENERATE))["input"]
        assert generate["attempt"] == 1
        assert generate["send_at"] == start
        if stale < STALE_ADMISSIONS_MAX:
            assert generate["send_by"] == pytest.approx(start + GRACE_S)
        else:
            assert generate["send_by"] is None  # sent however late: never stuck asking
        task += 3

    history.complete_activity(task, GENERATE, saved(1), after_s=22)
    _, actions = history.step()
    finish = only(activities(actions, FINISH))["input"]
    assert finish["outcome"]["state"] == "saved"
    assert finish["outcome"]["retry_count"] == 0
    assert finish["outcome"]["attempt"] == 1
    assert [a["attempt"] for a in finish["attempts"]] == [1]


def test_a_stale_admission_then_a_failure_counts_one_attempt_not_two(handle):
    history = History(handle, "job-1", job_input())
    history.step()
    admit(history, 0)
    history.step()
    history.complete_activity(1, GENERATE, failed(1, EXPIRED), after_s=30)
    history.step()
    history.signal_sent(2, ROUTE, REPORT)
    admit(history, 3)
    history.step()
    history.complete_activity(4, GENERATE, failed(1, RATE_LIMITED), after_s=1)
    state, actions = history.step()
    only(timers(actions))
    assert state["customStatus"]["attempt"] == 1
    assert "12s" in state["customStatus"]["reason"]  # the first failure's wait, not a later one


def test_the_prompt_never_reaches_the_route_entity_nor_the_custom_status(handle):
    seen: list[Any] = []

    def step(history: History) -> list[dict[str, Any]]:
        state, actions = history.step()
        seen.append(state.get("customStatus"))
        seen.extend(a for a in actions if a["actionType"] in (7, 9))
        return actions

    # Queued, admitted, a 429, stale once, saved.
    history = History(handle, "job-1", job_input())
    step(history)
    answer = queued(position=1, start_in_s=10, ask_in_s=9, now=history.now)
    history.call_entity(0, ROUTE, ADMIT, answer.to_json(), after_s=0.05)
    actions = step(history)
    history.fire_timer(1, only(timers(actions))["fireAt"])
    step(history)
    admit(history, 2)
    step(history)
    history.complete_activity(3, GENERATE, failed(1, RATE_LIMITED), after_s=1)
    actions = step(history)
    history.signal_sent(4, ROUTE, REPORT)
    history.fire_timer(5, only(timers(actions))["fireAt"])
    step(history)
    admit(history, 6)
    step(history)
    history.complete_activity(7, GENERATE, failed(2, EXPIRED), after_s=5)
    step(history)
    history.signal_sent(8, ROUTE, REPORT)
    admit(history, 9)
    step(history)
    history.complete_activity(10, GENERATE, saved(2, started_at=iso_utc(history.now)), after_s=20)
    step(history)
    # Another job, cancelled while queued.
    cancelled = History(handle, "job-2", job_input())
    step(cancelled)
    answer = queued(position=2, start_in_s=10, ask_in_s=9, now=cancelled.now)
    cancelled.call_entity(0, ROUTE, ADMIT, answer.to_json(), after_s=0.05)
    actions = step(cancelled)
    cancelled.schedule_timer(1, only(timers(actions))["fireAt"])
    cancelled.raise_event(CANCEL_EVENT, "{}", after_s=1)
    step(cancelled)

    operations = [a["operation"] for a in seen if isinstance(a, dict) and "operation" in a]
    assert sorted(set(operations)) == [ADMIT, LEAVE, REPORT]
    phases = {s["phase"] for s in seen if isinstance(s, dict) and "phase" in s}
    assert phases == {"queued", "generating", "waiting_to_retry", "finishing"}
    text = json.dumps(seen)
    assert PROMPT not in text
    assert "apple" not in text


def test_a_cancel_during_the_admit_call_lets_the_activity_stop_unsent_and_frees_the_slot(handle):
    history = History(handle, "job-1", job_input())
    history.step()
    history.entity_sent(0, ROUTE, ADMIT, signal=False)
    history.raise_event(CANCEL_EVENT, "{}", after_s=0.02)
    state, actions = history.step()
    assert actions == []  # still waiting for the governor's answer

    history.entity_answer(0, admitted(history.now), after_s=0.03)
    state, actions = history.step()
    # Admitted: the activity is scheduled (it checks the cancel marker before any send) and
    # waited for, so the slot the governor gave is reported back.
    only(activities(actions, GENERATE))
    assert state["customStatus"]["phase"] == "cancelling"
    unsent = Failure(
        kind=FailureKind.CANCELLED, layer=Layer.CALLER, message="cancelled", sent=False
    )
    history.complete_activity(1, GENERATE, failed(1, unsent), after_s=0.5)
    state, actions = history.step()
    report = AttemptReport.from_json(only(entity_signals(actions, REPORT))["input"])
    assert (report.failure_kind, report.sent_at) == ("cancelled", None)
    assert only(activities(actions, FINISH))["input"]["outcome"]["state"] == "cancelled"


def admit_fails(history: History, task_id: int, message: str) -> int:
    """The attempt's admit call (task ``task_id``, already sent) fails: the job looks, on a
    timer that fires at once (task ``task_id + 1``), whether a cancel had come. The next task
    id is returned."""
    history.entity_answer(task_id, message, after_s=0.05, failed=True)
    _, actions = history.step()
    timer = only(timers(actions))
    assert fire_at(timer) == history.now
    history.fire_timer(task_id + 1, timer["fireAt"])
    return task_id + 2


def test_a_failed_admit_after_a_cancel_ends_the_job_cancelled_not_failed(handle):
    history = History(handle, "job-1", job_input())
    history.step()
    history.entity_sent(0, ROUTE, ADMIT, signal=False)
    history.raise_event(CANCEL_EVENT, "{}", after_s=0.02)
    history.step()
    history.entity_answer(0, "route entity: the state is unreadable", after_s=0.05, failed=True)
    _state, actions = history.step()
    # The cancel that came is found at once (the timer beside it never waited on).
    assert activities(actions, GENERATE) == []
    outcome = only(activities(actions, FINISH))["input"]["outcome"]
    assert (outcome["state"], outcome["failure"], outcome["error"]) == ("cancelled", None, None)
    history.schedule_timer(1, only(timers(actions))["fireAt"])
    history.complete_activity(2, FINISH, {}, after_s=0.1)
    assert history.episode()["output"]["state"] == "cancelled"


def test_a_failed_admit_operation_ends_the_job_through_finish_before_any_send(handle):
    history = History(handle, "job-1", job_input())
    history.step()
    history.entity_sent(0, ROUTE, ADMIT, signal=False)
    task = admit_fails(history, 0, "route entity: the state is unreadable")
    state, actions = history.step()
    # Never a bare orchestration failure: the job ends failed through its own record.
    assert activities(actions, GENERATE) == []
    finish = only(activities(actions, FINISH))["input"]
    assert finish["outcome"]["state"] == "failed"
    assert finish["outcome"]["failure"] == "internal_error"
    assert "governor" in finish["outcome"]["error"]["message"]
    assert state["customStatus"]["phase"] == "finishing"
    history.complete_activity(task, FINISH, {"metadata_blob": "job-1/metadata.json"}, after_s=0.2)
    state = history.episode()
    assert state["isDone"] is True
    assert state["output"]["state"] == "failed"
    assert state["output"]["metadata_blob"] == "job-1/metadata.json"


# --- what a job decides by, frozen in its input (rules.job_records.JobDecided) ------------------

OPENAI = "@route@openai"
# The app's settings once the job's route ``azure`` has been removed.
WITHOUT_AZURE = {
    "IMAGE_ROUTES": "openai",
    "IMAGE_ROUTE_OPENAI_BASE_URL": "http://127.0.0.1:8089/v1",
    "IMAGE_ROUTE_OPENAI_AUTH": "none",
}
PARTNER_SEND = SendPlan(stream=False, partial_images=0)
DECIDED = JobDecided(
    route=RouteDecided("azure", "gpt-image-2", spacing_s=6.0, time_scale=1.0),
    failover=FailoverDecided(
        RouteDecided("openai", "gpt-image-2", spacing_s=1.0, time_scale=1.0),
        send=PARTNER_SEND,
        send_after_gateway_kill=None,
        send_after_read_idle=None,
    ),
)
REFUSED = Failure(
    kind=FailureKind.CONNECTION_LOST,
    layer=Layer.NETWORK,
    message="connection refused",
    sent=False,
)


def frozen_input(decided: JobDecided = DECIDED) -> dict[str, Any]:
    data = job_input()
    data.update(v=4, decided=decided.to_json())
    return data


def settings_now(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    """The app's settings change while the job runs (a new deployment, an edited setting)."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**SETTINGS, **values}.items():
        monkeypatch.setenv(name, value)
    wiring.settings.cache_clear()


def test_a_removed_route_ends_an_older_job_through_finish_not_a_bare_failure(handle, monkeypatch):
    settings_now(monkeypatch, WITHOUT_AZURE)
    history = History(handle, "job-1", job_input())  # version 1: nothing frozen
    _state, actions = history.step()
    assert entity_calls(actions, ADMIT) == []
    finish = only(activities(actions, FINISH))["input"]
    assert finish["outcome"]["state"] == "failed"
    assert "no longer" in finish["outcome"]["error"]["message"]
    history.complete_activity(0, FINISH, {}, after_s=0.1)
    assert history.episode()["output"]["state"] == "failed"


def removed_route_answer(monkeypatch: pytest.MonkeyPatch) -> str:
    """What the real route entity (orchestrators.route_entity) answers an admit for route
    ``azure`` once the settings no longer name it: the operation fails (its message)."""
    from orchestrators import route_entity

    from .test_route_entity import ask

    settings_now(monkeypatch, WITHOUT_AZURE)
    entity = orchestrator_handle(route_entity.bp, "route")
    request = {
        "self": {"name": "route", "key": "azure"},
        "exists": False,
        "state": None,
        "batch": [ask("job-1")],
    }
    result = only(json.loads(entity(json.dumps(request)))["results"])
    assert result["isError"] is True
    message: str = json.loads(result["result"])
    assert "no route named 'azure'" in message
    return message


def test_a_job_with_its_decisions_frozen_ends_through_finish_once_its_route_is_removed(
    handle, monkeypatch
):
    """The settings name the job's route no more: the job still asks its route's governor (its
    input decides, not the settings), the governor fails the admit as the real entity does for
    a route it has no settings of, and the job ends failed through FINISH, with its record."""
    refused = removed_route_answer(monkeypatch)
    history = History(handle, "job-1", frozen_input())
    _, actions = history.step()
    only(entity_calls(actions, ADMIT))
    history.entity_sent(0, ROUTE, ADMIT, signal=False)
    task = admit_fails(history, 0, refused)
    state, actions = history.step()
    assert not state.get("error")
    assert activities(actions, GENERATE) == []
    finish = only(activities(actions, FINISH))["input"]
    assert finish["outcome"]["state"] == "failed"
    assert finish["outcome"]["failure"] == "internal_error"
    history.complete_activity(task, FINISH, {}, after_s=0.1)
    state = history.episode()
    assert state["isDone"] is True
    assert state["output"]["state"] == "failed"


def test_a_frozen_job_sends_with_the_grace_of_its_route_as_it_was_at_the_start(handle):
    history = History(handle, "job-1", frozen_input())
    _, actions = history.step()
    only(entity_calls(actions, ADMIT))
    start = admit(history, 0)
    _state, actions = history.step()
    generate = only(activities(actions, GENERATE))["input"]
    # The grace of a late worker is the route's spacing as it was when the job started.
    assert generate["send_by"] == pytest.approx(start + 6.0)


READ_IDLE = Failure(
    kind=FailureKind.LOCAL_TIMEOUT,
    layer=Layer.WORKER,
    message="no byte arrived within the read idle limit",
    sent=True,
    timeout="read_idle",
)


def test_a_frozen_job_replays_its_learned_plan_the_same_after_its_route_is_removed(
    handle, monkeypatch
):
    """The first attempt is planned again on the route's measured clocks, and that plan says
    whether a read-idle kill is sent again. Planned from the job's frozen basis, every replay
    decides the same: the route removed while the retry timer runs changes nothing (planned
    from the settings of the moment, the replay found no route, took the starter's plan, which
    has no resend after a read-idle kill, and ended the job where history holds a timer)."""
    refused = removed_route_answer(monkeypatch)
    settings_now(monkeypatch, {})
    history = History(handle, "job-1", frozen_input())
    history.step()
    history.call_entity(0, ROUTE, ADMIT, admitted(history.now, LEARNED), after_s=0.01)
    _, actions = history.step()
    only(activities(actions, GENERATE))
    history.complete_activity(1, GENERATE, failed(1, READ_IDLE), after_s=1)
    state, actions = history.step()
    assert state["customStatus"]["phase"] == "waiting_to_retry"
    timer = only(timers(actions))
    history.signal_sent(2, ROUTE, REPORT)
    settings_now(monkeypatch, WITHOUT_AZURE)  # the route is removed while the timer runs
    history.fire_timer(3, timer["fireAt"])
    state, actions = history.step()
    assert not state.get("error")
    assert only(entity_calls(actions, ADMIT))["instanceId"] == ROUTE
    history.entity_sent(4, ROUTE, ADMIT, signal=False)
    admit_fails(history, 4, refused)
    state, actions = history.step()
    assert not state.get("error")
    finish = only(activities(actions, FINISH))["input"]
    assert finish["outcome"]["state"] == "failed"
    assert len(finish["attempts"]) == 1


def test_a_frozen_job_never_reads_the_settings(handle, monkeypatch):
    """Malformed settings (no route at all) fail no job of version 4: it decides by its input,
    through its learned plan, its attempt and its retry."""
    settings_now(monkeypatch, {"IMAGE_ROUTES": ""})
    with pytest.raises(Exception, match="IMAGE_ROUTES"):
        wiring.settings()
    history = History(handle, "job-1", frozen_input())
    history.step()
    history.call_entity(0, ROUTE, ADMIT, admitted(history.now, LEARNED), after_s=0.01)
    state, actions = history.step()
    assert not state.get("error")
    send = only(activities(actions, GENERATE))["input"]["send"]
    assert (send["stream"], send["partial_images"]) == (True, 1)
    history.complete_activity(1, GENERATE, failed(1, READ_IDLE), after_s=1)
    state, actions = history.step()
    assert not state.get("error")
    only(timers(actions))
    history.signal_sent(2, ROUTE, REPORT)
    history.fire_timer(3, only(timers(actions))["fireAt"])
    state, actions = history.step()
    assert not state.get("error")
    only(entity_calls(actions, ADMIT))


def test_failover_goes_by_the_partner_frozen_at_the_start_not_the_settings_of_now(
    handle, monkeypatch
):
    """The settings name no partner now (and no longer the partner's route): the job still
    fails over as decided when it started, once its route keeps refusing."""
    history = History(handle, "job-1", frozen_input())
    history.step()
    admit(history, 0)
    history.step()
    settings_now(monkeypatch, {})  # no FAILOVER_TO, one route
    history.complete_activity(1, GENERATE, failed(1, REFUSED), after_s=0.1)
    _, actions = history.step()
    asked = entity_calls(actions, SUMMARY)
    assert [a["instanceId"] for a in asked] == [ROUTE, OPENAI]

    # The governors' answers, as their states give them: azure's record of sent attempts is
    # perfect, but it has just refused (rules.route_model.summary counts that), openai saved 9
    # of its last 10.
    refusing = RouteState()
    for n in range(5):
        sent = AttemptReport(f"job-{n + 1}", 1, "shape", None, T0_S - 100, total_s=20.0)
        refusing = route_model.on_report(refusing, Pace(), sent, T0_S - 80)
    refused = AttemptReport("job-0", 1, "shape", "connection_lost", None, ended_at=T0_S)
    refusing = route_model.on_report(refusing, Pace(), refused, T0_S)
    here = route_model.summary(refusing, T0_S + 1)
    assert here.unsent_failures == 1
    assert here.recent_success_rate == pytest.approx(5 / 6)
    partner = RouteState()
    for n in range(10):
        kind = "server_error" if n == 0 else None
        sent = AttemptReport(f"job-p{n}", 1, "shape", kind, T0_S - 100, total_s=20.0)
        partner = route_model.on_report(partner, Pace(), sent, T0_S - 80)
    there = route_model.summary(partner, T0_S + 1)
    assert there.recent_success_rate == 0.9  # worse than azure's sent record, better than now
    history.signal_sent(2, ROUTE, REPORT)
    history.call_entity(3, ROUTE, SUMMARY, here.to_json(), after_s=0.01)
    history.entity_sent(4, OPENAI, SUMMARY, signal=False)
    history.entity_answer(4, there.to_json(), after_s=0.01)
    state, actions = history.step()
    assert "failover" in state["customStatus"]["reason"]
    timer = only(timers(actions))
    history.fire_timer(5, timer["fireAt"])
    _, actions = history.step()
    ask = only(entity_calls(actions, ADMIT))
    assert ask["instanceId"] == OPENAI
    admit_at = history.now + timedelta(seconds=0.05)
    history.call_entity(6, OPENAI, ADMIT, admitted(admit_at), after_s=0.05)
    _, actions = history.step()
    generate = only(activities(actions, GENERATE))["input"]
    assert generate["request"]["route"] == "openai"
    assert generate["send"] == PARTNER_SEND.to_json()
    assert generate["send_by"] == pytest.approx(admit_at.timestamp() + GRACE_S)


def test_a_failure_after_the_send_never_asks_for_a_failover(handle):
    history = History(handle, "job-1", frozen_input())
    history.step()
    admit(history, 0)
    history.step()
    after_send = replace(REFUSED, kind=FailureKind.SERVER_ERROR, sent=True, http_status=500)
    history.complete_activity(1, GENERATE, failed(1, after_send), after_s=1)
    _state, actions = history.step()
    assert entity_calls(actions, SUMMARY) == []
    timer = only(timers(actions))
    history.signal_sent(2, ROUTE, REPORT)
    history.fire_timer(3, timer["fireAt"])
    _, actions = history.step()
    assert only(entity_calls(actions, ADMIT))["instanceId"] == ROUTE


def test_a_summary_that_fails_keeps_the_job_on_its_route(handle):
    history = History(handle, "job-1", frozen_input())
    history.step()
    admit(history, 0)
    history.step()
    history.complete_activity(1, GENERATE, failed(1, REFUSED), after_s=0.1)
    history.step()
    history.signal_sent(2, ROUTE, REPORT)
    history.entity_sent(3, ROUTE, SUMMARY, signal=False)
    history.entity_sent(4, OPENAI, SUMMARY, signal=False)
    history.entity_answer(3, "route entity: the state is unreadable", after_s=0.01, failed=True)
    history.entity_answer(4, RouteSummary(None, False).to_json(), after_s=0.01)
    state, actions = history.step()
    assert "failover" not in state["customStatus"]["reason"]
    timer = only(timers(actions))
    history.fire_timer(5, timer["fireAt"])
    _, actions = history.step()
    assert only(entity_calls(actions, ADMIT))["instanceId"] == ROUTE
