"""What the image job asks of its route's entity, and what it tells it (orchestrators.route_entity).

Each attempt asks the route's governor to be admitted (``admission``: queued meanwhile on
durable timers, with its place and ETA in the custom status) and reports what it came to
(``attempt_report``), so the route paces, learns and predicts for every job together
(docs/routes.md). Orchestrator code: deterministic, every moment from the context.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df

from orchestrators.route_entity import ADMIT, LEAVE, route_entity_id
from rules.job_records import CustomStatus, JobInput, Phase
from rules.outcome import AttemptResult
from rules.pacing import LEAD_S
from rules.route_records import Admission, AdmitRequest, AttemptReport
from rules.route_stats import AttemptShape, attempt_shape, refused_by_route
from rules.send_plan import FIRST_PARTIAL_FRACTION, SendPlan
from rules.settings import AppSettings
from rules.timing import epoch_iso


def attempt_shape_of(job: JobInput, send: SendPlan, settings: AppSettings) -> AttemptShape:
    return attempt_shape(
        job.request,
        stream=send.stream,
        partial_images=send.partial_images,
        settings=settings,
        first_partial_share=FIRST_PARTIAL_FRACTION,
    )


def admission(
    context: df.DurableOrchestrationContext,
    job: JobInput,
    attempt: int,
    shape: AttemptShape,
    cancel: Any,
    queued_since: float | None = None,
    lost_slots: int = 0,
) -> Generator[Any, Any, Admission | None]:
    """Ask the route's governor until it admits the attempt; queued meanwhile, with the place
    and the expected start in the custom status. None: cancelled while queued.
    ``queued_since``: when the attempt first asked (an attempt asking again after its worker
    came too late keeps its place); None: now. ``lost_slots``: slots the attempt was given and
    lost to their holders' claims (rules.route_records.AdmitRequest)."""
    entity = route_entity_id(job.request.route)
    if queued_since is None:
        queued_since = context.current_utc_datetime.timestamp()
    while True:
        ask = AdmitRequest(
            job_id=context.instance_id,
            attempt=attempt,
            priority=job.priority,
            images=job.request.n,
            shape=shape.name,
            calibrated=shape.calibrated,
            queued_since=queued_since,
            batch_id=job.batch_id,
            lost_slots=lost_slots,
        )
        answer = yield context.call_entity(entity, ADMIT, ask.to_json(), expected_type=dict)
        admission = Admission.from_json(answer)
        if admission.cancelled:  # its batch was cancelled: never sent
            return None
        if admission.admitted:
            return admission
        expected = admission.expected or shape.calibrated
        context.set_custom_status(
            CustomStatus(
                Phase.QUEUED,
                attempt,
                reason=admission.reason,
                queue_position=admission.position,
                eta=epoch_iso(admission.start_at + expected.total_s),
                eta_early=epoch_iso(admission.start_at + expected.early_s),
            ).to_json()
        )
        ask_at = admission.ask_again_at or admission.start_at - LEAD_S
        timer = context.create_timer(datetime.fromtimestamp(ask_at, UTC))
        winner = yield context.task_any([timer, cancel])
        if winner is cancel:
            timer.cancel()
            context.signal_entity(entity, LEAVE, context.instance_id)
            return None


def attempt_report(
    context: df.DurableOrchestrationContext, job_id: str, shape: str, result: AttemptResult
) -> dict[str, Any]:
    """What the route learns from the attempt (rules.route_records.AttemptReport)."""
    timings = result.timings
    # Counted as sent once the request left (a 429 too: the route saw it and answered).
    left = result.failure is None or result.failure.sent
    started = timings.request_started_at
    begun = datetime.fromisoformat(started).timestamp() if started and left else None
    # The request left once its connection was up: a new connection's setup (276 ms for the
    # first send of a scale-5 drain) is time the route has not counted it yet.
    sent_at = None if begun is None else begun + (timings.connect_ms or 0) / 1000
    ended = context.current_utc_datetime.timestamp()

    def seconds(ms: int | None) -> float | None:
        return None if ms is None else ms / 1000

    return AttemptReport(
        job_id=job_id,
        attempt=result.attempt,
        shape=shape,
        failure_kind=result.failure.kind.value if result.failure else None,
        sent_at=sent_at,
        first_byte_s=seconds(timings.first_byte_ms),
        first_partial_s=seconds(timings.first_partial_image_ms),
        total_s=_stored_s(result) if sent_at is not None and result.ok else None,
        retry_after_s=result.failure.retry_after_s if result.failure else None,
        rate_limit=timings.rate_limit or None,
        headers_at=begun + timings.first_byte_ms / 1000
        if begun is not None and timings.first_byte_ms is not None
        else None,
        ended_at=ended,
        refused=refused_by_route(result.failure),
    ).to_json()


def _stored_s(result: AttemptResult) -> float | None:
    """Seconds from the send until the image was stored, on the activity's own clock (one
    clock for the whole span; the orchestrator's may run ahead, e.g. devhost's virtual time)."""
    timings = result.timings
    if timings.final_image_ms is None:
        return None
    return (timings.final_image_ms + (timings.upload_ms or 0)) / 1000
