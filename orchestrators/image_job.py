"""The image job orchestrator: attempt -> decide (pure policy) -> durable timer -> attempt ...

It holds no worker while it waits: retries are waited out with durable timers, so a 429's
retry-after is honoured exactly, and every attempt is recorded with the wait chosen and why. It
sets the custom status at each step; the status endpoint derives the job's state from it. Jitter
comes from ``context.new_uuid()``, the only randomness a replay reproduces.

Cancel arrives as the external event ``cancel`` (the HTTP endpoint also leaves a marker in Blob,
which the running activity watches so that it closes its stream). A cancel while waiting ends the
job at once; a cancel while an attempt runs waits for that attempt to stop, so an image that was
already stored is reported (saved), never left behind as an orphan.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from rules.outcome import AttemptResult, Failure, FailureKind, Layer
from rules.retry import RetryPolicy, decide

bp = df.Blueprint()

ORCHESTRATOR = "image_job"
GENERATE = "generate_image"
FINISH = "finish_job"
CANCEL_EVENT = "cancel"
# metadata.json and the log event: 5 tries, 5 s apart (the host waits them out).
FINISH_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=5000, max_number_of_attempts=5)


@bp.orchestration_trigger(context_name="context", orchestration=ORCHESTRATOR, input_type=dict)
def image_job(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    job = context.get_input()
    job_id = context.instance_id
    request = job["request"]
    policy = RetryPolicy(**_policy_args(job.get("policy", {})))
    send = job.get("send") or {"stream": True, "partial_images": request["partial_images"]}
    # Event data reaches the orchestrator as JSON text (the client encodes it twice, in Azure as
    # here); only the event's arrival matters.
    cancel = context.wait_for_external_event(CANCEL_EVENT, expected_type=str)
    attempts: list[dict[str, Any]] = []
    failures: list[Failure] = []
    attempt = 0
    outcome: dict[str, Any] | None = None
    while outcome is None:
        attempt += 1
        context.set_custom_status({"phase": "generating", "attempt": attempt})
        generate = context.call_activity(
            GENERATE,
            {
                "job_id": job_id,
                "attempt": attempt,
                "request": request,
                "job_created_at": job.get("created_at"),
                **send,
            },
            expected_type=dict,
        )
        winner = yield context.task_any([generate, cancel])
        if winner is cancel and not generate.is_completed:
            # The activity sees the marker and stops; wait for it so nothing is left behind.
            context.set_custom_status({"phase": "cancelling", "attempt": attempt})
            with contextlib.suppress(Exception):  # a failure is read from the task below
                yield generate
        result = _attempt_result(generate, attempt)
        record = result.to_json()
        if result.ok:
            attempts.append(record)
            outcome = _outcome("saved", job_id, attempts, result)
            break
        assert result.failure is not None
        if cancel.is_completed or result.failure.kind is FailureKind.CANCELLED:
            attempts.append(record)
            outcome = _outcome("cancelled", job_id, attempts, result, failure=None)
            break
        decision = decide(
            result.failure,
            attempt=attempt,
            previous=failures,
            policy=policy,
            jitter=int(str(context.new_uuid()).replace("-", "")[:8], 16) / 2**32,
        )
        failures.append(result.failure)
        record["decision"] = {
            "retry": decision.retry,
            "wait_s": round(decision.wait_s, 3),
            "reason": decision.reason,
            "post_send_resend": decision.post_send_resend,
        }
        attempts.append(record)
        if not decision.retry:
            outcome = _outcome("failed", job_id, attempts, result, failure=decision.failure)
            break
        retry_at = context.current_utc_datetime + timedelta(seconds=decision.wait_s)
        context.set_custom_status(
            {
                "phase": "waiting_to_retry",
                "attempt": attempt,
                "retryAt": retry_at.isoformat(),
                "reason": decision.reason,
            }
        )
        timer = context.create_timer(retry_at)
        winner = yield context.task_any([timer, cancel])
        if winner is cancel:
            timer.cancel()
            outcome = _outcome("cancelled", job_id, attempts, result, failure=None)

    context.set_custom_status(
        {
            "phase": "finishing",
            "attempt": attempt,
            "state": outcome["state"],
            "failure": outcome["failure"],
        }
    )
    try:
        # The record of a job that has ended: retried on its own, and never able to turn a
        # saved image into a failed job.
        yield context.call_activity_with_retry(
            FINISH,
            FINISH_RETRY,
            {"job_id": job_id, "request": request, "outcome": outcome, "attempts": attempts},
            expected_type=dict,
        )
    except Exception:
        outcome["metadata_blob"] = None
        outcome["metadata_error"] = "metadata.json could not be written"
    return outcome


def _attempt_result(task: Any, attempt: int) -> AttemptResult:
    """The activity's result; an activity that raised (it should not) becomes a failure
    record, so the job still ends through the policy and its own record."""
    value = task.result
    if isinstance(value, dict):
        return AttemptResult.from_json(value)
    failure = Failure(
        kind=FailureKind.INTERNAL_ERROR,
        layer=Layer.WORKER,
        message="the generate activity failed",
        # Unknown whether it sent the request: assume it did, so a resend is the policy's.
        sent=True,
    )
    return AttemptResult(attempt=attempt, ok=False, timings={}, failure=failure)


def _policy_args(data: dict[str, Any]) -> dict[str, Any]:
    args = dict(data)
    if "transient_waits_s" in args:
        args["transient_waits_s"] = tuple(args["transient_waits_s"])
    return args


def _outcome(
    state: str,
    job_id: str,
    attempts: list[dict[str, Any]],
    last: AttemptResult,
    *,
    failure: str | None = None,
) -> dict[str, Any]:
    """The orchestration's output: what the status endpoint shows once the job has ended."""
    retried = [a["decision"]["reason"] for a in attempts if a.get("decision", {}).get("retry")]
    return {
        "state": state,
        "failure": failure,
        "error": last.failure.status_error() if last.failure and state == "failed" else None,
        "attempt": last.attempt,
        "retry_count": len(attempts) - 1,
        "retry_reason": retried[-1] if retried else None,
        "images": last.images,
        "previews": last.previews,
        "timings": last.timings,
        "usage": last.usage,
        "cost_usd": sum(a.get("cost_usd") or 0.0 for a in attempts) or None,
        "metadata_blob": f"{job_id}/metadata.json",
    }
