"""The batch orchestration: a manifest's items as image jobs at batch priority, a report at the end.

    split the manifest into waves (activity) -> per execution: start items as image_job
    sub-orchestrations, up to IMAGE_BATCH_IN_FLIGHT at once, the next as each ends -> results
    of the execution (activity) -> continue as new after IMAGE_BATCH_WAVES_PER_EXECUTION waves
    -> the report (activity)

Every item is a normal job (its own id, send plan, retries and metadata.json) whose attempts
queue at the route's governor at batch priority: interactive jobs keep going first, and the
governor paces the whole batch at the route's limits. The history stays small for 10,000 items:
an execution holds a few waves and continues as new with the counts so far (the items it
started end first). A cancel stops new items at once; queued items are refused by their route's
governor (``cancel_batch``) and end cancelled without reaching the route; running ones see the
batch's cancel marker (written by the cancel endpoint) and stop.

Mode ``batch_api`` (rules.batches.plan_batch): orchestrators.batch_api_flow.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace
from typing import Any

import azure.durable_functions as df

import wiring
from orchestrators.image_job import ORCHESTRATOR
from orchestrators.route_entity import CANCEL_BATCH, route_entity_id
from rules.batch_records import (
    BatchCounts,
    BatchDecided,
    BatchInput,
    BatchOutcome,
    BatchReport,
    BatchSplit,
    BatchState,
    BatchStatus,
    WaveItem,
)
from rules.batches import BatchMode
from rules.job_records import JobState, Outcome
from rules.records import as_object
from rules.timing import epoch_iso

bp = df.Blueprint()

BATCH_ORCHESTRATOR = "image_batch"
SPLIT = "split_batch"
READ_WAVE = "read_batch_wave"
RESULTS = "write_batch_results"
REPORT = "write_batch_report"
CANCEL_EVENT = "cancel"
# The batch's own activities (Blob): 15 s apart for 10 minutes, so an outage of Blob is ridden
# out while the batch's items run on. One that still fails ends the batch ``failed`` with its
# reason (never a batch without a terminal state, never items left without their batch).
BATCH_RETRY = df.RetryOptions(
    first_retry_interval_in_milliseconds=15_000, max_number_of_attempts=41
)


@bp.orchestration_trigger(context_name="context", orchestration=BATCH_ORCHESTRATOR)
def image_batch(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    batch = BatchInput.from_json(context.get_input())
    cancel = context.wait_for_external_event(CANCEL_EVENT, expected_type=str)
    # What this batch schedules by, from its input (frozen at the start), never the settings of
    # the moment: a settings change must not replay a running batch differently. Only an input
    # of the previous version, which froze nothing, reads the settings.
    decided = batch.decided or BatchDecided.from_settings(wiring.settings())
    batch = replace(batch, decided=decided)
    batch_api = batch.plan.mode is BatchMode.BATCH_API
    if batch.waves is None:
        _status(context, batch, BatchState.SPLITTING)
        splitting = context.call_activity_with_retry(SPLIT, BATCH_RETRY, batch.to_json())
        try:
            if batch_api:
                # A cancel while the manifest is split is seen before the submit (an event is
                # only seen once its task is waited for): the split ends, nothing is submitted.
                winner = yield context.task_any([splitting, cancel])
                if winner is cancel:
                    batch = replace(batch, cancelled=True)
            split = BatchSplit.from_json((yield splitting))
        except Exception:
            return _failed(context, batch, "the manifest could not be read into waves")
        counts = replace(batch.counts, items=split.items, invalid=split.invalid)
        batch = replace(batch, waves=split.waves, counts=counts)
        if split.routes is not None:
            # A cancel reaches the routes the items may queue at, as the split found them
            # (the settings' routes when the batch started may lack one an item names).
            decided = replace(decided, routes=split.routes)
            batch = replace(batch, decided=decided)
    if batch_api and not batch.cancelled:
        from orchestrators.batch_api_flow import run_batch_api

        batch, api_failure = yield from run_batch_api(context, batch, cancel, decided)
        return (yield from _report(context, batch, api_failure))

    waves = batch.waves or 0
    last_wave = min(waves, batch.next_wave + decided.waves_per_execution)
    results: list[dict[str, Any]] = []
    pending: dict[Any, WaveItem] = {}
    waiting: list[WaveItem] = []
    wave = batch.next_wave
    counts = batch.counts
    cancelled = batch.cancelled
    # Why the batch stops here, when its own Blob work fails (its items run on to their ends).
    failure: str | None = None
    while (wave < last_wave or waiting or pending) and not (cancelled and not pending):
        # Read the next wave when nothing is left waiting to start.
        if not waiting and wave < last_wave and not cancelled and failure is None:
            try:
                raw = yield context.call_activity_with_retry(
                    READ_WAVE, BATCH_RETRY, {"batch_id": batch.batch_id, "wave": wave}
                )
            except Exception:
                failure = f"wave {wave} of the manifest could not be read"
                last_wave = wave
                continue
            waiting = [WaveItem.from_json(item) for item in raw]
            wave += 1
        while waiting and len(pending) < decided.in_flight and not cancelled:
            item = waiting.pop(0)
            task = context.call_sub_orchestrator(ORCHESTRATOR, item.job, item.job_id)
            pending[task] = item
            counts = replace(counts, started=counts.started + 1)
        _status(context, replace(batch, counts=counts, next_wave=wave), BatchState.RUNNING)
        if not pending:
            continue
        winner = yield context.task_any([*pending, cancel] if not cancelled else [*pending])
        if winner is cancel:
            cancelled = True
            for route in decided.routes:
                context.signal_entity(route_entity_id(route), CANCEL_BATCH, batch.batch_id)
            continue
        item = pending.pop(winner)
        outcome = _outcome(winner)
        counts = _counted(counts, outcome)
        results.append({"item": item.to_json(), "outcome": outcome.to_json() if outcome else None})
    unstarted = cancelled or failure is not None
    if unstarted:
        # What never started: every waiting item, and every wave not read.
        results += [{"item": item.to_json(), "outcome": None} for item in waiting]
        skipped = [item.to_json() for item in waiting]
        counts = replace(counts, cancelled=counts.cancelled + len(skipped))
    try:
        yield context.call_activity_with_retry(
            RESULTS,
            BATCH_RETRY,
            {
                "batch_id": batch.batch_id,
                "execution": batch.execution,
                "results": results,
                "unread_waves": list(range(wave, waves)) if unstarted else [],
            },
        )
    except Exception:
        reason = failure or "the results of the batch's items could not be written"
        return _failed(context, replace(batch, counts=counts, cancelled=cancelled), reason)
    if failure is not None:
        ended = replace(batch, counts=counts, execution=batch.execution + 1, cancelled=cancelled)
        return (yield from _report(context, ended, failure))
    if not cancelled and cancel.is_completed:
        # A cancel that came while this execution's results were written: continue-as-new
        # would drop it. The next execution starts nothing; its items are reported cancelled.
        cancelled = True
        for route in decided.routes:
            context.signal_entity(route_entity_id(route), CANCEL_BATCH, batch.batch_id)
        try:
            yield context.call_activity_with_retry(
                RESULTS,
                BATCH_RETRY,
                {
                    "batch_id": batch.batch_id,
                    "execution": batch.execution + 1,
                    "results": [],
                    "unread_waves": list(range(wave, waves)),
                },
            )
        except Exception:
            reason = "the cancelled batch's unstarted items could not be written"
            return _failed(context, replace(batch, counts=counts, cancelled=True), reason)
        batch = replace(batch, execution=batch.execution + 1)
    batch = replace(
        batch,
        counts=counts,
        next_wave=wave if not cancelled else waves,
        execution=batch.execution + 1,
        cancelled=cancelled,
    )
    if batch.next_wave < waves:
        context.continue_as_new(batch.to_json())
        return {}
    return (yield from _report(context, batch))


def _report(
    context: df.DurableOrchestrationContext, batch: BatchInput, failure: str | None = None
) -> Generator[Any, Any, dict[str, Any]]:
    """The report, and the batch's end: ``failed`` with ``failure`` when its own work failed
    (the report still has every item it could), else ``cancelled`` or ``completed``."""
    _status(context, batch, BatchState.REPORTING)
    try:
        report = BatchReport.from_json(
            (
                yield context.call_activity_with_retry(
                    REPORT, BATCH_RETRY, {"batch_id": batch.batch_id, "executions": batch.execution}
                )
            )
        )
    except Exception:
        return _failed(context, batch, failure or "the batch's report could not be written")
    if failure is not None:
        state = BatchState.FAILED
    else:
        state = BatchState.CANCELLED if batch.cancelled else BatchState.COMPLETED
    _status(context, replace(batch, counts=report.counts), state)
    return BatchOutcome(
        state=state,
        counts=report.counts,
        report_jsonl=report.jsonl,
        report_csv=report.csv,
        reason=failure,
    ).to_json()


def _failed(
    context: df.DurableOrchestrationContext, batch: BatchInput, reason: str
) -> dict[str, Any]:
    """The batch ends ``failed`` without a report: its own Blob work failed through its
    retries. A terminal state with its reason, never a bare orchestration failure."""
    _status(context, batch, BatchState.FAILED)
    return BatchOutcome(
        state=BatchState.FAILED,
        counts=batch.counts,
        report_jsonl=None,
        report_csv=None,
        reason=f"batch {batch.batch_id}: {reason}",
    ).to_json()


def _status(context: df.DurableOrchestrationContext, batch: BatchInput, state: BatchState) -> None:
    counts = batch.counts
    eta = None
    remaining = counts.items - counts.done
    if state is BatchState.RUNNING and batch.plan.realtime_s and counts.items:
        # The plan's pace, scaled to what is left: the route's spacing per item.
        per_item = batch.plan.realtime_s / counts.items
        eta = epoch_iso(context.current_utc_datetime.timestamp() + remaining * per_item)
    context.set_custom_status(
        BatchStatus(
            state=state,
            counts=counts,
            wave=batch.next_wave,
            waves=batch.waves,
            eta=eta,
        ).to_json()
    )


def _outcome(task: Any) -> Outcome | None:
    """The item job's outcome; a sub-orchestration that failed as a whole is a failed item."""
    try:
        return Outcome.from_json(as_object(task.result, "outcome"))
    except Exception:
        return Outcome(state=JobState.FAILED, attempt=0, failure="internal_error")


def _counted(counts: BatchCounts, outcome: Outcome | None) -> BatchCounts:
    if outcome is None:
        return replace(counts, cancelled=counts.cancelled + 1)
    cost = counts.cost_usd + (outcome.cost_usd or 0.0)
    if outcome.state is JobState.SAVED:
        return replace(counts, saved=counts.saved + 1, cost_usd=cost)
    if outcome.state is JobState.CANCELLED:
        return replace(counts, cancelled=counts.cancelled + 1, cost_usd=cost)
    return replace(counts, failed=counts.failed + 1, cost_usd=cost)
