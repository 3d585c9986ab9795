"""The image job orchestrator: ask the route -> attempt -> decide (pure policy) -> durable timer
-> ask the route -> attempt ...

Every attempt is admitted by its route's governor first (orchestrators.route_calls; queued on
durable timers meanwhile) and reported to it after, so the route's limits hold for every job
together and its clocks are learned (docs/routes.md). An attempt that failed before its send may
move to the route's healthier failover partner (rules.failover).

It holds no worker while it waits: retries are waited out with durable timers, so a 429's
retry-after is honoured exactly, and every attempt is recorded with the wait chosen and why. It
sets the custom status at each step; the status endpoint derives the job's state from it. Jitter
comes from ``context.new_uuid()``, the only randomness a replay reproduces.

Cancel arrives as the external event ``cancel`` (the HTTP endpoint also leaves a marker in Blob,
which the running activity watches so that it closes its stream). A cancel while waiting ends the
job at once; a cancel while an attempt runs waits for that attempt to stop, so an image that was
already stored is reported (saved), never left behind as an orphan.

A job with a webhook hands its end's event to a delivery orchestration of its own once
metadata.json is written (orchestrators.webhook_delivery), and completes without waiting for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

import wiring
from orchestrators.route_calls import admission as admission_for
from orchestrators.route_calls import attempt_report, attempt_shape_of
from orchestrators.route_entity import REPORT, SUMMARY, route_entity_id
from orchestrators.webhook_delivery import START as START_DELIVERY
from rules.errors import SettingsInvalid
from rules.failover import decided_target, failover_target, healthier, moved, moved_decided
from rules.job_records import (
    AttemptInput,
    AttemptRecord,
    CustomStatus,
    FinishInput,
    JobInput,
    JobState,
    Outcome,
    Phase,
)
from rules.outcome import AttemptResult, Failure, FailureKind, Layer
from rules.records import as_object
from rules.retry import Decision, decide, failure_category
from rules.route_records import Expectation, RouteSummary
from rules.route_stats import AttemptShape, attempt_shape_by
from rules.send_plan import (
    FIRST_PARTIAL_FRACTION,
    Plans,
    SendPlan,
    plans,
    plans_by,
    silence_kill,
)
from rules.settings import AppSettings
from rules.timing import epoch_iso, iso_utc
from rules.webhook_events import job_event
from rules.webhooks import WebhookDelivery
from storage.protocol import metadata_name

bp = df.Blueprint()

ORCHESTRATOR = "image_job"
GENERATE = "generate_image"
FINISH = "finish_job"
CANCEL_EVENT = "cancel"
# A worker may start its send this long after the admitted send time (seconds of wall time, or
# a spacing of the route when that is longer); later, it asks the governor again.
SEND_GRACE_S = 2.0
# After this many admissions that went stale in a row, the attempt is sent however late.
STALE_ADMISSIONS_MAX = 3
# Not sent, and the same attempt asks the governor again, keeping its place: no retry counted.
ASK_AGAIN = frozenset({FailureKind.ADMISSION_EXPIRED, FailureKind.SLOT_TAKEN})
# metadata.json and the log event: 5 tries, 5 s apart (the host waits them out).
FINISH_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=5000, max_number_of_attempts=5)


@bp.orchestration_trigger(context_name="context", orchestration=ORCHESTRATOR, input_type=dict)
def image_job(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    job = JobInput.from_json(context.get_input())
    job_id = context.instance_id
    # Event data reaches the orchestrator as JSON text (the client encodes it twice, in Azure as
    # here); only the event's arrival matters.
    cancel = context.wait_for_external_event(CANCEL_EVENT, expected_type=str)
    attempts: list[AttemptRecord] = []
    failures: list[Failure] = []
    attempt = 0
    send = job.send
    outcome: Outcome | None = None
    # Read only for an input with nothing frozen (version 3 or older): a job of version 4
    # decides by its input alone, so malformed or changed settings never fail nor change it.
    settings = wiring.settings
    entity = route_entity_id(job.request.route)
    stale = 0
    lost_slots = 0
    asking_again = False
    first_asked: float | None = None
    while outcome is None:
        attempt += 1
        try:
            # From the job's frozen decisions (an older input: the settings, which may no longer
            # name its route).
            shape = _shape(job, send, settings)
            spacing_s = _spacing_s(job, settings)
        except SettingsInvalid:
            unrun = _unrun(attempt, "the job's route is no longer one of the app's routes")
            outcome = _outcome(JobState.FAILED, job_id, attempts, unrun, failure="internal_error")
            break
        if not asking_again or first_asked is None:
            first_asked = context.current_utc_datetime.timestamp()
        try:
            admission = yield from admission_for(
                context,
                job,
                attempt,
                shape,
                cancel,
                queued_since=first_asked,
                lost_slots=lost_slots,
            )
        except Exception:
            # The route's governor failed the operation (its state unreadable, its route gone):
            # nothing was sent; the job ends through its own record, never a bare failure. A
            # cancel that had already come is what the job ends by: cancelled, never failed.
            if (yield from _cancel_arrived(context, cancel)):
                outcome = _outcome(JobState.CANCELLED, job_id, attempts, _not_run(attempt))
                break
            unrun = _unrun(attempt, "the route's governor could not admit the attempt")
            outcome = _outcome(JobState.FAILED, job_id, attempts, unrun, failure="internal_error")
            break
        if admission is None:  # cancelled while queued: it never reached the route
            outcome = _outcome(JobState.CANCELLED, job_id, attempts, _not_run(attempt))
            break
        expected = admission.expected or shape.calibrated
        if expected.samples and attempt == 1 and not failures:
            # The route has measured this shape class: plan the send on its clocks instead of
            # the calibration's (a first attempt only; a resend keeps the shape chosen for it).
            learned = _learned_plans(job, expected, settings)
            if learned is not None:
                send = learned.first
                job = replace(
                    job,
                    send_after_gateway_kill=learned.after_gateway_kill,
                    send_after_read_idle=learned.after_read_idle,
                )
                # What is learned of this attempt belongs to the shape it is really sent in.
                shape = _shape(job, send, settings)
        eta = admission.start_at + expected.total_s
        context.set_custom_status(
            CustomStatus(
                Phase.GENERATING,
                attempt,
                eta=epoch_iso(eta),
                eta_early=epoch_iso(admission.start_at + expected.early_s),
            ).to_json()
        )
        grace = max(SEND_GRACE_S, spacing_s)
        attempt_input = AttemptInput(
            job_id=job_id,
            attempt=attempt,
            request=job.request,
            send=send,
            job_created_at=job.created_at,
            send_at=admission.start_at,
            send_by=admission.start_at + grace if stale < STALE_ADMISSIONS_MAX else None,
            batch_id=job.batch_id,
            claim=admission.claim,
        )
        generate = context.call_activity(GENERATE, attempt_input.to_json(), expected_type=dict)
        winner = yield context.task_any([generate, cancel])
        if winner is cancel and not generate.is_completed:
            # The activity sees the marker and stops; wait for it so nothing is left behind.
            context.set_custom_status(CustomStatus(Phase.CANCELLING, attempt).to_json())
            with contextlib.suppress(Exception):  # a failure is read from the task below
                yield generate
        result = _attempt_result(generate, attempt)
        context.signal_entity(entity, REPORT, attempt_report(context, job_id, shape.name, result))
        if (
            result.failure is not None
            and result.failure.kind in ASK_AGAIN
            and not cancel.is_completed
        ):
            # Not sent: the worker came too late for its slot, or another attempt claimed it.
            # Ask the governor again, as the same attempt (no retry is counted, nothing was
            # billed). Only lateness counts towards sending however late.
            if result.failure.kind is FailureKind.ADMISSION_EXPIRED:
                stale += 1
            else:
                lost_slots += 1
            asking_again = True
            attempt -= 1
            continue
        stale = 0
        lost_slots = 0
        asking_again = False
        if result.ok:
            attempts.append(AttemptRecord(result))
            outcome = _outcome(JobState.SAVED, job_id, attempts, result)
            break
        assert result.failure is not None
        if cancel.is_completed or result.failure.kind is FailureKind.CANCELLED:
            attempts.append(AttemptRecord(result))
            outcome = _outcome(JobState.CANCELLED, job_id, attempts, result)
            break
        decision = decide(
            result.failure,
            attempt=attempt,
            previous=failures,
            policy=job.policy,
            jitter=int(str(context.new_uuid()).replace("-", "")[:8], 16) / 2**32,
        )
        failures.append(result.failure)
        killed_by = silence_kill(result.failure)
        if killed_by is not None:
            # Never the same silent request twice: the resend goes out in another shape, and
            # where no other shape fits there is no resend.
            other = (
                job.send_after_gateway_kill if killed_by == "gateway" else job.send_after_read_idle
            )
            if other is not None:
                send = other
            elif decision.retry:
                decision = Decision(
                    False,
                    0.0,
                    f"the {killed_by} limit gave up on a silent request and no other request "
                    "shape fits, so it is not sent again",
                    failure=failure_category(result.failure),
                )
        other_route = _failover_target(job, result.failure, settings) if decision.retry else None
        if other_route is not None:
            try:
                here, there = yield context.task_all(
                    [
                        context.call_entity(entity, SUMMARY, expected_type=dict),
                        context.call_entity(
                            route_entity_id(other_route), SUMMARY, expected_type=dict
                        ),
                    ]
                )
                move = healthier(RouteSummary.from_json(there), RouteSummary.from_json(here))
                if move:
                    job = (
                        moved_decided(job, job.decided)
                        if job.decided is not None
                        else moved(job, other_route, settings())
                    )
            except Exception:  # a governor that could not answer: the job stays where it is
                move = False
            if move:
                send = job.send
                entity = route_entity_id(other_route)
                decision = replace(
                    decision,
                    reason=f"{decision.reason}; the request was never sent, so the next attempt "
                    f"goes to route {other_route}, which is healthier (failover)",
                )
        attempts.append(AttemptRecord(result, decision))
        if not decision.retry:
            outcome = _outcome(JobState.FAILED, job_id, attempts, result, failure=decision.failure)
            break
        retry_at = context.current_utc_datetime + timedelta(seconds=decision.wait_s)
        context.set_custom_status(
            CustomStatus(
                Phase.WAITING_TO_RETRY,
                attempt,
                retry_at=iso_utc(retry_at),
                reason=decision.reason,
            ).to_json()
        )
        timer = context.create_timer(retry_at)
        winner = yield context.task_any([timer, cancel])
        if winner is cancel:
            timer.cancel()
            outcome = _outcome(JobState.CANCELLED, job_id, attempts, result)

    context.set_custom_status(
        CustomStatus(
            Phase.FINISHING, attempt, ending=outcome.state, failure=outcome.failure
        ).to_json()
    )
    finish = FinishInput(
        job_id=job_id,
        request=job.request,
        outcome=outcome,
        attempts=tuple(attempts),
        caller=job.caller,
    )
    try:
        # The record of a job that has ended: retried on its own, and never able to turn a
        # saved image into a failed job.
        yield context.call_activity_with_retry(
            FINISH, FINISH_RETRY, finish.to_json(), expected_type=dict
        )
    except Exception:
        outcome = replace(
            outcome, metadata_blob=None, metadata_error="metadata.json could not be written"
        )
    if job.webhook is not None:
        # Started apart (orchestrators.webhook_delivery): the job ends now, its event is
        # delivered and retried on its own; a start that fails still leaves the outcome.
        event = job_event(job_id, outcome, job.webhook, context.current_utc_datetime)
        delivery = WebhookDelivery(job_id, job.created_at, job.caller, job.webhook, event)
        with contextlib.suppress(Exception):
            yield context.call_activity_with_retry(
                START_DELIVERY, FINISH_RETRY, delivery.to_json(), expected_type=dict
            )
    return outcome.to_json()


def _cancel_arrived(
    context: df.DurableOrchestrationContext, cancel: Any
) -> Generator[Any, Any, bool]:
    """Whether the job's cancel has come. The SDK completes an external event's task only once
    it has been waited on (an event that came before is held until then), so it is waited on
    here beside a timer that fires at once: the cancel wins if it had come."""
    if cancel.is_completed:
        return True
    timer = context.create_timer(context.current_utc_datetime)
    winner = yield context.task_any([timer, cancel])
    if winner is cancel:
        timer.cancel()
        return True
    return False


def _learned_plans(
    job: JobInput, learned: Expectation, settings: Callable[[], AppSettings]
) -> Plans | None:
    """The plans made again on the route's measured clocks: from the basis frozen in the
    job's input (version 4), so every replay plans the same; an older input plans from the
    settings of now (None when they no longer name its route: the starter's plans stand)."""
    if job.decided is not None:
        return plans_by(job.request, job.decided.route.plan_basis, learned=learned)
    try:
        return plans(job.request, settings(), learned=learned)
    except SettingsInvalid:
        return None


def _shape(job: JobInput, send: SendPlan, settings: Callable[[], AppSettings]) -> AttemptShape:
    """The attempt's shape class, from the job's frozen decisions (an older input: the
    settings, SettingsInvalid when they no longer name its route)."""
    decided = job.decided
    if decided is None:
        return attempt_shape_of(job, send, settings())
    return attempt_shape_by(
        job.request,
        model=decided.route.model,
        time_scale=decided.route.time_scale,
        stream=send.stream,
        partial_images=send.partial_images,
        first_partial_share=FIRST_PARTIAL_FRACTION,
    )


def _spacing_s(job: JobInput, settings: Callable[[], AppSettings]) -> float:
    """The spacing of the route's sends (a late worker's grace), frozen in the job's input."""
    if job.decided is not None:
        return job.decided.route.spacing_s
    pace = settings().pace(job.request.route)
    return pace.window_s / (pace.requests_per_minute or 60)


def _failover_target(
    job: JobInput, failure: Failure, settings: Callable[[], AppSettings]
) -> str | None:
    """The partner the job may move to, as frozen in its input (an older input: the settings
    of now; none when they no longer name its route)."""
    if job.decided is not None:
        return decided_target(job, failure, job.decided)
    try:
        return failover_target(job, failure, settings())
    except SettingsInvalid:
        return None


def _unrun(attempt: int, why: str) -> AttemptResult:
    """An attempt that ended before its send because of our side (never the route's)."""
    failure = Failure(FailureKind.INTERNAL_ERROR, Layer.WORKER, why, sent=False)
    return AttemptResult(attempt=attempt, ok=False, failure=failure)


def _not_run(attempt: int) -> AttemptResult:
    return AttemptResult(
        attempt=attempt,
        ok=False,
        failure=Failure(
            kind=FailureKind.CANCELLED,
            layer=Layer.CALLER,
            message="cancelled while queued at the route",
            sent=False,
        ),
    )


def _attempt_result(task: Any, attempt: int) -> AttemptResult:
    """The activity's result; an activity that raised (it should not), or answered something
    unreadable, becomes a failure record, so the job still ends through the policy and its own
    record."""
    try:
        return AttemptResult.from_json(as_object(task.result, "attempt result"))
    except Exception:  # noqa: S110 - any unreadable answer is the same worker-layer failure
        pass
    failure = Failure(
        kind=FailureKind.INTERNAL_ERROR,
        layer=Layer.WORKER,
        message="the generate activity failed",
        # Unknown whether it sent the request: assume it did, so a resend is the policy's.
        sent=True,
    )
    return AttemptResult(attempt=attempt, ok=False, failure=failure)


def _outcome(
    state: JobState,
    job_id: str,
    attempts: list[AttemptRecord],
    last: AttemptResult,
    *,
    failure: str | None = None,
) -> Outcome:
    """The orchestration's output: what the status endpoint shows once the job has ended."""
    retried = [a.decision.reason for a in attempts if a.decision and a.decision.retry]
    costed = [a.result for a in attempts if a.result.cost_usd is not None]
    return Outcome(
        state=state,
        attempt=last.attempt,
        failure=failure,
        error=last.failure if state is JobState.FAILED else None,
        # A job cancelled while its first attempt was queued has no attempt: no retry either.
        retry_count=max(len(attempts) - 1, 0),
        retry_reason=retried[-1] if retried else None,
        images=last.images,
        previews=last.previews,
        timings=last.timings,
        usage=last.usage,
        cost_usd=round(sum(r.cost_usd or 0.0 for r in costed), 6) if costed else None,
        cost_estimated=any(result.cost_estimated for result in costed),
        metadata_blob=metadata_name(job_id),
    )
