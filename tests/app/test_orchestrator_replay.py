"""The image job orchestrator, replayed through the SDK's handle from hand-built histories."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from orchestrators.image_job import CANCEL_EVENT, FINISH, GENERATE, bp
from rules.job_records import JobInput
from rules.outcome import AttemptResult, Failure, FailureKind, Layer, Preview, StoredImage, Timings
from rules.request import ImageJobRequest
from rules.retry import RetryPolicy
from rules.send_plan import SendPlan

from .durable_history import History, activities, new_actions, orchestrator_handle, timers

REQUEST = {
    "prompt": "a red apple on a white background",
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


def saved(attempt: int) -> dict[str, Any]:
    return AttemptResult(
        attempt=attempt,
        ok=True,
        timings=Timings(final_image_ms=21_000, http_status=200),
        images=(StoredImage("job-1/image.png", "image/png", 9, 1024, 1024),),
        previews=(Preview(0, 0, f"job-1/preview-{attempt}-0.png", 9, stored=True),),
        usage={"output_tokens": 272},
        cost_usd=0.00816,
    ).to_json()


def failed(attempt: int, failure: Failure) -> dict[str, Any]:
    return AttemptResult(attempt=attempt, ok=False, failure=failure).to_json()


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


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def test_a_first_attempt_that_succeeds_is_finished_and_saved(handle):
    history = History(handle, "job-1", job_input())
    state = history.episode()
    actions = new_actions(state, 0)
    generate = only(activities(actions, GENERATE))
    assert generate["input"]["attempt"] == 1
    assert generate["input"]["send"]["partial_images"] == 1
    assert generate["input"]["job_created_at"] == "2026-05-07T13:46:12.000Z"
    assert [a["actionType"] for a in actions] == [0, 6]  # the activity, and the cancel wait
    assert state["customStatus"] == {"phase": "generating", "attempt": 1}
    assert "apple" not in str(state["customStatus"])

    history.complete_activity(0, GENERATE, saved(1), after_s=22)
    state = history.episode()
    finish = only(activities(new_actions(state, 1), FINISH))
    assert finish["input"]["outcome"]["state"] == "saved"
    assert state["customStatus"] == {
        "phase": "finishing",
        "attempt": 1,
        "state": "saved",
        "failure": None,
    }

    history.complete_activity(1, FINISH, {"metadata_blob": "job-1/metadata.json"}, after_s=0.2)
    state = history.episode()
    assert state["isDone"] is True
    assert state["output"]["state"] == "saved"
    assert state["output"]["retry_count"] == 0
    assert state["output"]["images"][0]["width"] == 1024


def test_a_429_waits_at_least_what_the_server_asked_on_a_durable_timer(handle):
    history = History(handle, "job-1", job_input())
    history.episode()
    history.complete_activity(0, GENERATE, failed(1, RATE_LIMITED), after_s=1)
    state = history.episode()
    timer = only(timers(new_actions(state, 1)))
    fire_at = datetime.strptime(timer["fireAt"][:26], "%Y-%m-%dT%H:%M:%S.%f")
    waited = (fire_at - history.now.replace(tzinfo=None)).total_seconds()
    assert 12.0 <= waited <= 12.0 * 1.2
    assert state["customStatus"]["phase"] == "waiting_to_retry"
    assert "12s" in state["customStatus"]["reason"]

    history.fire_timer(1, timer["fireAt"])
    state = history.episode()
    retry = only(activities(new_actions(state, 2), GENERATE))
    assert retry["input"]["attempt"] == 2

    history.complete_activity(2, GENERATE, saved(2), after_s=22)
    history.episode()
    history.complete_activity(3, FINISH, {}, after_s=0.1)
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
    history.episode()
    history.complete_activity(0, GENERATE, failed(1, blocked), after_s=3)
    state = history.episode()
    finish = only(activities(new_actions(state, 1), FINISH))
    outcome = finish["input"]["outcome"]
    assert outcome["state"] == "failed"
    assert outcome["failure"] == "returned_error"
    assert outcome["error"]["code"] == "moderation_blocked"
    assert finish["input"]["attempts"][0]["decision"]["retry"] is False


def test_replays_are_deterministic(handle):
    first = History(handle, "job-1", job_input())
    first.episode()
    first.complete_activity(0, GENERATE, failed(1, RATE_LIMITED), after_s=1)
    second = History(handle, "job-1", job_input())
    second.episode()
    second.complete_activity(0, GENERATE, failed(1, RATE_LIMITED), after_s=1)
    assert first.episode()["actions"] == second.episode()["actions"]


def test_a_cancel_while_waiting_to_retry_ends_the_job_without_another_attempt(handle):
    history = History(handle, "job-1", job_input())
    history.episode()
    history.complete_activity(0, GENERATE, failed(1, RATE_LIMITED), after_s=1)
    state = history.episode()
    timer = only(timers(new_actions(state, 1)))
    history.schedule_timer(1, timer["fireAt"])
    history.raise_event(CANCEL_EVENT, "{}", after_s=2)
    state = history.episode()
    actions = new_actions(state, 2)
    assert activities(actions, GENERATE) == []
    finish = only(activities(actions, FINISH))
    assert finish["input"]["outcome"]["state"] == "cancelled"


def test_a_cancel_while_generating_waits_for_the_attempt_to_stop(handle):
    history = History(handle, "job-1", job_input())
    history.episode()
    history.schedule_activity(0, GENERATE)
    history.raise_event(CANCEL_EVENT, "{}", after_s=5)
    state = history.episode()
    assert state["customStatus"]["phase"] == "cancelling"
    assert activities(new_actions(state, 1), FINISH) == []  # not before the attempt stops

    history.activity_result(0, failed(1, CANCELLED), after_s=1)
    state = history.episode()
    finish = only(activities(new_actions(state, 1), FINISH))
    assert finish["input"]["outcome"]["state"] == "cancelled"
    assert finish["input"]["outcome"]["error"] is None


def test_a_cancel_that_comes_after_the_image_was_stored_reports_it_saved(handle):
    history = History(handle, "job-1", job_input())
    history.episode()
    history.schedule_activity(0, GENERATE)
    history.raise_event(CANCEL_EVENT, "{}", after_s=5)
    history.episode()
    history.activity_result(0, saved(1), after_s=1)
    state = history.episode()
    finish = only(activities(new_actions(state, 1), FINISH))
    assert finish["input"]["outcome"]["state"] == "saved"


def test_the_send_plan_from_the_starter_reaches_the_activity(handle):
    send = SendPlan(stream=False, partial_images=0, notes=("sent without streaming",))
    history = History(handle, "job-1", job_input(send))
    generate = only(activities(new_actions(history.episode(), 0), GENERATE))
    assert generate["input"]["send"]["stream"] is False
    assert generate["input"]["send"]["send_notes"] == ["sent without streaming"]


def test_an_activity_that_raised_becomes_a_recorded_failure_not_a_crash(handle):
    history = History(handle, "job-1", job_input())
    history.episode()
    history.schedule_activity(0, GENERATE)
    history.task_failed(0, "boom", "Traceback ...", after_s=1)
    state = history.episode()
    assert not state.get("error")
    timer = only(timers(new_actions(state, 1)))
    assert timer["actionType"] == 5
    assert state["customStatus"]["phase"] == "waiting_to_retry"
    assert (
        "post" not in state["customStatus"]["reason"] or "sent" in state["customStatus"]["reason"]
    )


def test_a_cancelled_attempt_ends_cancelled_even_before_the_event_arrives(handle):
    history = History(handle, "job-1", job_input())
    history.episode()
    history.complete_activity(0, GENERATE, failed(1, CANCELLED), after_s=1)
    state = history.episode()
    finish = only(activities(new_actions(state, 1), FINISH))
    assert finish["input"]["outcome"]["state"] == "cancelled"


def test_a_failed_finish_never_turns_a_saved_image_into_a_failed_job(handle):
    history = History(handle, "job-1", job_input())
    history.episode()
    history.complete_activity(0, GENERATE, saved(1), after_s=22)
    state = history.episode()
    finish = only(activities(new_actions(state, 1), FINISH))
    assert finish["actionType"] == 1  # with retry: the host retries it
    assert finish["retryOptions"]["maxNumberOfAttempts"] == 5
    # The host retries it: after each of the 5 failures a retry timer, then the task again.
    for failure in range(5):
        task_id = 1 + 2 * failure
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
    history.episode()
    history.complete_activity(0, GENERATE, failed(1, asked), after_s=1)
    state = history.episode()
    finish = only(activities(new_actions(state, 1), FINISH))
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
    history.episode()
    history.complete_activity(0, GENERATE, failed(1, killed), after_s=60)
    state = history.episode()
    timer = only(timers(new_actions(state, 1)))
    history.fire_timer(1, timer["fireAt"])
    state = history.episode()
    resend = only(activities(new_actions(state, 2), GENERATE))
    assert resend["input"]["attempt"] == 2
    assert resend["input"]["send"]["stream"] is False
    assert resend["input"]["send"]["read_idle_s"] == 470.0


def test_other_failures_keep_the_planned_shape(handle):
    unstreamed = SendPlan(stream=False, partial_images=0, read_idle_s=470.0)
    history = History(handle, "job-1", job_input(after_silence=unstreamed))
    history.episode()
    history.complete_activity(0, GENERATE, failed(1, RATE_LIMITED), after_s=1)
    state = history.episode()
    timer = only(timers(new_actions(state, 1)))
    history.fire_timer(1, timer["fireAt"])
    retry = only(activities(new_actions(history.episode(), 2), GENERATE))
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
    history.episode()
    history.complete_activity(0, GENERATE, failed(1, killed), after_s=60)
    state = history.episode()
    assert timers(new_actions(state, 1)) == []
    finish = only(activities(new_actions(state, 1), FINISH))
    assert finish["input"]["outcome"]["state"] == "failed"
    decision = finish["input"]["attempts"][0]["decision"]
    assert decision["retry"] is False
    assert "no other request shape" in decision["reason"]
