"""A batch in ``batch_api`` mode (rules.batches.plan_batch): submitted to the route's Batch API,
polled on durable timers (no worker held for the up to 24 h it may take), collected into normal
jobs' images and records, with the batch's results for its report.

A cancel asks the route to cancel the upstream batch; whatever it finished before is still
collected (its images were generated and billed).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from rules.batch_records import BatchInput, BatchState, BatchStatus
from rules.records import as_object
from rules.settings import AppSettings

API_SUBMIT = "batch_api_submit"
API_POLL = "batch_api_poll"
API_CANCEL = "batch_api_cancel"
API_COLLECT = "batch_api_collect"
FINISHED = ("completed", "failed", "expired", "cancelled")
# The polls space out: the first after the setting, then each twice the last, up to this many
# times the setting (a 24 h batch costs a few hundred polls, not thousands).
POLL_GROWTH_CAP = 10
API_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=10_000, max_number_of_attempts=6)


def run_batch_api(
    context: df.DurableOrchestrationContext,
    batch: BatchInput,
    cancel: Any,
    settings: AppSettings,
) -> Generator[Any, Any, BatchInput]:
    """Submit (once), poll until the upstream batch has finished, collect. The batch after it:
    its results written as execution 0, its counts as far as known (the report counts them)."""
    call: dict[str, Any] = {
        "batch_id": batch.batch_id,
        "waves": batch.waves,
        "route": batch.plan.route,
    }
    upstream = as_object(
        (yield context.call_activity_with_retry(API_SUBMIT, API_RETRY, call)), "upstream batch"
    )
    batch = replace(batch, upstream_batch=str(upstream["batch"]))
    wait_s = settings.batches.batch_api_poll_s
    cancelled = batch.cancelled
    while str(upstream["status"]) not in FINISHED:
        _status(context, batch, str(upstream["status"]), upstream)
        fire_at = context.current_utc_datetime + timedelta(seconds=wait_s)
        timer = context.create_timer(fire_at)
        waits = [timer] if cancelled else [timer, cancel]
        winner = yield context.task_any(waits)
        if winner is cancel:
            timer.cancel()
            cancelled = True
            upstream = as_object(
                (
                    yield context.call_activity_with_retry(
                        API_CANCEL, API_RETRY, {**call, "upstream": batch.upstream_batch}
                    )
                ),
                "upstream batch",
            )
            continue
        wait_s = min(wait_s * 2, settings.batches.batch_api_poll_s * POLL_GROWTH_CAP)
        upstream = as_object(
            (
                yield context.call_activity_with_retry(
                    API_POLL, API_RETRY, {**call, "upstream": batch.upstream_batch}
                )
            ),
            "upstream batch",
        )
    _status(context, batch, str(upstream["status"]), upstream)
    yield context.call_activity_with_retry(API_COLLECT, API_RETRY, {**call, "upstream": upstream})
    return replace(batch, execution=1, cancelled=cancelled, next_wave=batch.waves or 0)


def _status(
    context: df.DurableOrchestrationContext,
    batch: BatchInput,
    upstream_status: str,
    upstream: dict[str, Any],
) -> None:
    counts = replace(
        batch.counts,
        started=int(upstream.get("total") or 0),
        saved=int(upstream.get("completed") or 0),
        failed=int(upstream.get("failed") or 0),
    )
    context.set_custom_status(
        BatchStatus(
            state=BatchState.SUBMITTED,
            counts=counts,
            waves=batch.waves,
            upstream_status=upstream_status,
        ).to_json()
    )
