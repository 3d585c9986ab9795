"""A batch in ``batch_api`` mode (rules.batches.plan_batch): submitted to the route's Batch API,
polled on durable timers (no worker held for the up to 24 h it may take), collected into normal
jobs' images and records, with the batch's results for its report.

A cancel asks the route to cancel the upstream batch; whatever it finished before is still
collected (its images were generated and billed). A cancel that came before the submit
(while the manifest was split) submits nothing (orchestrators.image_batch).

Never billing upstream for a batch that failed here: a poll that fails counts as "unchanged"
until the completion window and a margin have passed (rules.batch_records.BatchDecided); a
failure past that, or a submit or collect that failed through its retries, cancels the
upstream batch and records the cancel (activities.batch_api.cancel_for_failure), and the
batch ends ``failed`` with its reason. The output is collected in chunks (a byte offset per
activity call, each chunk idempotent), so thousands of 4K images never have to fit one
activity's time limit, and a retry starts from its own chunk, not from the start.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from rules.batch_records import (
    BatchApiCall,
    BatchDecided,
    BatchInput,
    BatchState,
    BatchStatus,
    CollectChunk,
    CollectedChunk,
    CollectEnd,
    Upstream,
)
from rules.records import as_object

API_SUBMIT = "batch_api_submit"
API_POLL = "batch_api_poll"
API_CANCEL = "batch_api_cancel"
API_ABANDON = "batch_api_abandon"
API_COLLECT_CHUNK = "batch_api_collect_chunk"
API_COLLECT_END = "batch_api_collect_end"
FINISHED = ("completed", "failed", "expired", "cancelled")
# The polls space out: the first after the setting, then each twice the last, up to this many
# times the setting (a 24 h batch costs a few hundred polls, not thousands).
POLL_GROWTH_CAP = 10
API_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=10_000, max_number_of_attempts=6)
# A poll is tried twice; one that still fails is "unchanged", and the next poll comes on time.
POLL_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=5_000, max_number_of_attempts=2)
# After a failure here, an upstream batch being cancelled is polled this many times (the poll
# wait apart) for its end, so that what it finished is collected: OpenAI ends a cancel within
# about 10 minutes (its requests in flight complete first).
CANCEL_SETTLE_POLLS = 15
# A collect chunk and the end write to Blob: 30 s apart for 10 minutes, through an outage.
COLLECT_RETRY = df.RetryOptions(
    first_retry_interval_in_milliseconds=30_000, max_number_of_attempts=21
)


def run_batch_api(
    context: df.DurableOrchestrationContext,
    batch: BatchInput,
    cancel: Any,
    decided: BatchDecided,
) -> Generator[Any, Any, tuple[BatchInput, str | None]]:
    """Submit (once), poll until the upstream batch has finished, collect. The batch after it
    (its results written as execution 0, its counts as far as known: the report counts them),
    and None, or why it failed (the upstream batch cancelled, what was collected kept).
    ``decided``: what the batch schedules by (its input's, or the settings' for an older one)."""
    route = batch.plan.route
    assert route is not None, f"batch {batch.batch_id}: a batch_api plan names its route"
    call = BatchApiCall(batch_id=batch.batch_id, waves=batch.waves or 0, route=route)
    try:
        upstream = Upstream.from_json(
            (yield context.call_activity_with_retry(API_SUBMIT, API_RETRY, call.to_json()))
        )
    except Exception:
        reason = "the Batch API batch could not be submitted"
        return (yield from _abandon(context, batch, call, (), reason, decided.poll_s))
    batch = replace(batch, upstream_batch=upstream.batch)
    call = replace(call, upstream=batch.upstream_batch)
    give_up_at = context.current_utc_datetime + timedelta(seconds=decided.give_up_s)
    wait_s = decided.poll_s
    cancelled = batch.cancelled
    while upstream.status not in FINISHED:
        _status(context, batch, upstream)
        if context.current_utc_datetime >= give_up_at:
            reason = (
                f"the Batch API batch was still {upstream.status} (or not answering) "
                "past its completion window"
            )
            return (yield from _abandon(context, batch, call, (), reason, decided.poll_s))
        fire_at = min(context.current_utc_datetime + timedelta(seconds=wait_s), give_up_at)
        timer = context.create_timer(fire_at)
        waits = [timer] if cancelled else [timer, cancel]
        winner = yield context.task_any(waits)
        if winner is cancel:
            timer.cancel()
            cancelled = True
            try:
                upstream = Upstream.from_json(
                    (yield context.call_activity_with_retry(API_CANCEL, API_RETRY, call.to_json()))
                )
            except Exception:  # noqa: S112 - polled on; the window's end cancels it again
                continue
            continue
        wait_s = min(wait_s * 2, decided.poll_s * POLL_GROWTH_CAP)
        try:
            upstream = Upstream.from_json(
                (yield context.call_activity_with_retry(API_POLL, POLL_RETRY, call.to_json()))
            )
        except Exception:  # noqa: S112 - a poll that failed: unchanged, until the window ends
            continue
    status = upstream.status
    _status(context, batch, upstream)
    chunks: list[str] = []
    try:
        yield from _collect(context, call, upstream, chunks)
        end = CollectEnd(call=call, status=status, chunks=tuple(chunks))
        yield context.call_activity_with_retry(API_COLLECT_END, COLLECT_RETRY, end.to_json())
    except Exception:
        reason = f"the Batch API batch ended {status}, but its output could not be collected"
        return (
            yield from _abandon(
                context, batch, call, tuple(chunks), reason, decided.poll_s, collect=False
            )
        )
    ended = replace(batch, execution=1, cancelled=cancelled, next_wave=batch.waves or 0)
    return ended, None


def _collect(
    context: df.DurableOrchestrationContext,
    call: BatchApiCall,
    upstream: Upstream,
    chunks: list[str],
) -> Generator[Any, Any, None]:
    """The finished upstream batch's output and error files, chunk by chunk; each chunk's
    results blob is appended to ``chunks`` as it is written (raises when a chunk fails through
    its retries: what was collected stays in ``chunks``)."""
    for kind, file_id in (("output", upstream.output_file), ("error", upstream.error_file)):
        offset: int | None = 0
        while file_id and offset is not None:
            chunk = CollectChunk(call=call, file_id=str(file_id), kind=kind, offset=offset)
            collected = CollectedChunk.from_json(
                (
                    yield context.call_activity_with_retry(
                        API_COLLECT_CHUNK, COLLECT_RETRY, chunk.to_json()
                    )
                )
            )
            chunks.append(collected.results)
            offset = collected.next_offset


def _abandon(
    context: df.DurableOrchestrationContext,
    batch: BatchInput,
    call: BatchApiCall,
    chunks: tuple[str, ...],
    reason: str,
    poll_s: float,
    *,
    collect: bool = True,
) -> Generator[Any, Any, tuple[BatchInput, str | None]]:
    """The batch failed here: its upstream batch (if any) is cancelled and the cancel recorded,
    what was collected stays, every other item ends failed; the batch ends ``failed``.

    An upstream batch that had finished (completed, or cancelled with files), or that ends its
    cancel within ``CANCEL_SETTLE_POLLS`` polls, has its output and error files collected first
    (``collect``; not when collecting them is what failed): its images were generated and
    billed, and are kept as its items' images."""
    upstream: Upstream | None = None
    try:
        answer = yield context.call_activity_with_retry(
            API_ABANDON, API_RETRY, replace(call, reason=reason).to_json()
        )
        said = as_object(answer, "abandon answer").get("upstream")
        upstream = Upstream.from_json(said) if said else None
    except Exception:
        reason = f"{reason}; cancelling the upstream batch failed too"
    status = "unfinished"
    if collect and upstream is not None:
        call = replace(call, upstream=upstream.batch)
        upstream = yield from _settled(context, call, upstream, poll_s)
        if upstream.status in FINISHED and (upstream.output_file or upstream.error_file):
            collected: list[str] = []
            try:
                yield from _collect(context, call, upstream, collected)
                status = upstream.status
                reason = f"{reason}; what the upstream batch had finished was collected"
            except Exception:
                reason = f"{reason}; what the upstream batch had finished could not be collected"
            chunks = (*chunks, *collected)
    end = CollectEnd(call=call, status=status, chunks=chunks)
    executions = 0
    try:
        yield context.call_activity_with_retry(API_COLLECT_END, COLLECT_RETRY, end.to_json())
        executions = 1
    except Exception:
        reason = f"{reason}; its items' results could not be written"
    return replace(batch, execution=executions, next_wave=batch.waves or 0), reason


def _settled(
    context: df.DurableOrchestrationContext,
    call: BatchApiCall,
    upstream: Upstream,
    poll_s: float,
) -> Generator[Any, Any, Upstream]:
    """The upstream batch once its cancel has ended (``cancelling`` turns ``cancelled`` when
    its requests in flight are done, within about 10 minutes): polled on durable timers, at
    most ``CANCEL_SETTLE_POLLS`` times; a poll that fails is "unchanged"."""
    polls = 0
    while upstream.status not in FINISHED and polls < CANCEL_SETTLE_POLLS:
        polls += 1
        fire_at = context.current_utc_datetime + timedelta(seconds=poll_s)
        yield context.create_timer(fire_at)
        try:
            upstream = Upstream.from_json(
                (yield context.call_activity_with_retry(API_POLL, POLL_RETRY, call.to_json()))
            )
        except Exception:  # noqa: S112 - unchanged; the bound ends the wait
            continue
    return upstream


def _status(context: df.DurableOrchestrationContext, batch: BatchInput, upstream: Upstream) -> None:
    counts = replace(
        batch.counts, started=upstream.total, saved=upstream.completed, failed=upstream.failed
    )
    context.set_custom_status(
        BatchStatus(
            state=BatchState.SUBMITTED,
            counts=counts,
            waves=batch.waves,
            upstream_status=upstream.status,
        ).to_json()
    )
