"""A re-run of an attempt that already ran: Azure runs activities at least once, so a worker
that died (crash, kill, scale-in) leaves its attempt to run again, and it must not silently send
a second billable request.

The attempt's progress record says how far the earlier run came: finished (its result is
returned), every image stored (they are returned), sent (a post-send failure at the worker
layer, so the retry policy decides, and records, whether to resend), or never sent (the attempt
runs as new). A record that cannot be read counts as a possible send.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from activities.blob_io import AsyncBlobs, within_budget
from rules.cost import AttemptCost
from rules.job_records import AttemptInput, ProgressRecord
from rules.outcome import AttemptResult, Failure, FailureKind, Layer, SentAs, Timings


async def earlier_run(
    blobs: AsyncBlobs,
    progress_blob: str,
    job: AttemptInput,
    *,
    cost: Callable[[Failure | None, dict[str, Any] | None], AttemptCost],
    budget_s: float,
    sleep: Callable[[float], Awaitable[None]],
    monotonic: Callable[[], float],
) -> AttemptResult | None:
    """What an earlier run of this very attempt came to, or None when there was none (or it
    never sent the request, or it belonged to an earlier job under the same id). ``cost``
    prices an attempt that may have been billed (rules.cost.attempt_cost); the record is read
    within ``budget_s`` seconds of storage outage."""
    try:
        raw = await within_budget(
            lambda: blobs.get(progress_blob), budget_s=budget_s, sleep=sleep, monotonic=monotonic
        )
        earlier = ProgressRecord.from_json(raw) if raw else None
    except Exception as exc:  # storage down past the budget, or a record that is unreadable
        # Cannot tell whether an earlier run sent it: say so, and let the policy decide.
        return AttemptResult(
            attempt=job.attempt,
            ok=False,
            failure=Failure(
                kind=FailureKind.INTERNAL_ERROR,
                layer=Layer.STORAGE,
                message=f"could not read the attempt's record ({type(exc).__name__}); it may "
                "have been sent by an earlier run",
                sent=True,
            ),
        )
    if earlier is None or not same_job(earlier.job_created_at, job):
        return None  # no earlier run, or an earlier job's, under the same id (history purged)
    if earlier.done and earlier.result is not None:
        return earlier.result
    sent_as = SentAs(stream=job.send.stream, partial_images=job.send.partial_images)
    timings = Timings(request_started_at=earlier.started_at)
    if earlier.images:
        # It stored every image, then stopped before its final record (and its usage).
        billed = cost(None, None)
        return AttemptResult(
            attempt=job.attempt,
            ok=True,
            timings=timings,
            images=earlier.images,
            previews=tuple(earlier.previews),
            cost_usd=billed.usd,
            cost_estimated=billed.estimated,
            request_sent_as=sent_as,
        )
    if not earlier.sent:
        return None
    failure = Failure(
        kind=FailureKind.CONNECTION_LOST,
        layer=Layer.WORKER,
        message=(
            f"the worker running attempt {job.attempt} stopped after sending it "
            f"(at {earlier.sent_at}); the route may have generated it"
        ),
        sent=True,
    )
    billed = cost(failure, None)
    # The earlier run's previews are this attempt's: listed, so none is left unaccounted.
    return AttemptResult(
        attempt=job.attempt,
        ok=False,
        timings=timings,
        failure=failure,
        previews=tuple(earlier.previews),
        cost_usd=billed.usd,
        cost_estimated=billed.estimated,
        request_sent_as=sent_as,
    )


def same_job(job_created_at: str | None, job: AttemptInput) -> bool:
    """Whether a record in the job's folder was written for this job, not for an earlier one
    under the same id: both carry the job's own ``created_at`` (equality, not order, so clocks
    that differ between hosts do not matter)."""
    return job_created_at == job.job_created_at
