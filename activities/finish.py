"""The end of a job: metadata.json beside the image, and ONE structured log event.

Both happen in an activity, not in the orchestrator, because the orchestrator replays: a log line
written there would be written again at every replay. The log event carries every timing audit field
of field report A (docs/reference/field-reports.md) and nothing that could leak: no prompt, no key,
no image bytes.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from rules.job_records import SCHEMA_VERSION, AttemptRecord, FinishInput
from rules.outcome import status_error
from rules.settings import AppSettings
from rules.timing import TIMING_FIELDS, iso_utc
from storage.protocol import JSON, ImageStore, metadata_name

log = logging.getLogger("imagejobs")

EVENT = "image_job_finished"


def build_metadata(
    job: FinishInput, settings: AppSettings, finished_at: datetime
) -> dict[str, Any]:
    """metadata.json: every clock, the request shape (never the prompt), usage and cost, and
    every attempt with its outcome and the wait chosen and why. Schema version in ``v``."""
    request = job.request.shape()
    # None: a route removed from the settings since the job started; its record is still
    # written (the job's end must not depend on the settings of now).
    route = settings.routes.get(job.request.route)
    outcome = job.outcome
    attempts = job.attempts
    last_timings = outcome.timings.to_json()
    first_sent = attempts[0].result.request_sent_as if attempts else None
    return {
        "v": SCHEMA_VERSION,
        "id": job.job_id,
        # A digest of the caller, nothing to read back: who may see this job after a purge.
        "caller": job.caller,
        "state": outcome.state.value,
        "failure": outcome.failure,
        "error": status_error(outcome.error) if outcome.error else None,
        "finished_at": iso_utc(finished_at),
        "request": request,
        "endpoint": "edits" if job.request.is_edit else "generations",
        # An edit's inputs by count, formats, sizes and bytes (the request lists each).
        "inputs": job.request.inputs_summary(),
        "model": route.model if route is not None else "unknown",
        "route": job.request.route,
        "route_owner": route.owner if route is not None else "unknown",
        "quality": job.request.quality,
        "size": job.request.size,
        "format": job.request.output_format,
        **{k: last_timings[k] for k in TIMING_FIELDS},
        "http_status": outcome.timings.http_status,
        "request_id": outcome.timings.request_id,
        "rate_limit": outcome.timings.rate_limit,
        "error_type": outcome.error.error_type if outcome.error else None,
        "retry_count": outcome.retry_count,
        "retry_reason": outcome.retry_reason,
        "post_send_resends": sum(1 for a in attempts if a.decision and a.decision.post_send_resend),
        # Retries a gateway made on its own, where it said so: counted apart from ours.
        "gateway_retry_count": sum(a.result.timings.gateway_retries or 0 for a in attempts),
        "usage": outcome.usage,
        "cost_usd": outcome.cost_usd,
        "cost_estimated": outcome.cost_estimated,
        "images": [image.to_json() for image in outcome.images],
        "previews": [preview.to_json() for preview in outcome.previews],
        "send_notes": list(first_sent.notes) if first_sent else [],
        "attempts": [_attempt_entry(a) for a in attempts],
    }


def _attempt_entry(record: AttemptRecord) -> dict[str, Any]:
    attempt, failure = record.result, record.result.failure
    return {
        "attempt": attempt.attempt,
        "ok": attempt.ok,
        "outcome": "saved" if attempt.ok else (failure.kind.value if failure else None),
        "layer": failure.layer.value if failure else None,
        "sent": failure.sent if failure else True,
        "http_status": attempt.timings.http_status,
        "error_type": failure.error_type if failure else None,
        "code": failure.code if failure else None,
        "param": failure.param if failure else None,
        "message": failure.message if failure else None,
        # Which of our limits fired (connect, read_idle, request, upload), for a local timeout.
        "timeout": failure.timeout if failure else None,
        "request_id": attempt.timings.request_id or (failure.request_id if failure else None),
        "timings": attempt.timings.to_json(),
        "request_sent_as": attempt.request_sent_as.to_json() if attempt.request_sent_as else None,
        "previews": [preview.to_json() for preview in attempt.previews],
        "kept_images": [kept.to_json() for kept in attempt.kept_images],
        "usage": attempt.usage,
        "cost_usd": attempt.cost_usd,
        "cost_estimated": attempt.cost_estimated,
        "decision": record.decision.to_json() if record.decision else None,
    }


def log_fields(metadata: dict[str, Any]) -> dict[str, Any]:
    """The flat fields of the job's log event (custom dimensions in Application Insights)."""
    fields = {
        key: metadata[key]
        for key in (
            "id",
            "state",
            "failure",
            "model",
            "route",
            "route_owner",
            "endpoint",
            "quality",
            "size",
            "format",
            *TIMING_FIELDS,
            "http_status",
            "request_id",
            "error_type",
            "retry_count",
            "retry_reason",
            "post_send_resends",
            "gateway_retry_count",
            "cost_usd",
            "cost_estimated",
        )
    }
    error = metadata["error"]  # build_metadata made it: status_error's keys, or None
    fields["error_layer"] = error["layer"] if error else None
    fields["error_code"] = error["code"] if error else None
    fields["timeout_layer"] = error["timeout"] if error else None
    fields["attempts"] = len(metadata["attempts"])
    inputs = metadata["inputs"]
    fields["input_images"] = inputs["images"] if inputs else 0
    fields["input_bytes"] = inputs["bytes"] if inputs else 0
    return fields


def finish_job(job: FinishInput, settings: AppSettings, store: ImageStore) -> dict[str, Any]:
    metadata = build_metadata(job, settings, datetime.now(UTC))
    store.put(
        name=metadata_name(job.job_id),
        data=json.dumps(metadata, indent=2).encode(),
        content_type=JSON,
    )
    fields = log_fields(metadata)
    # The message holds the fields as JSON, which the Functions host sends to Application
    # Insights as the trace's message; ``extra`` adds them as flat attributes, which the
    # OpenTelemetry exporter (azure-monitor-opentelemetry, when the app configures it) records
    # as custom dimensions. Prefixed, so that none collides with a LogRecord attribute.
    log.info(
        "%s %s",
        EVENT,
        json.dumps(fields, sort_keys=True),
        extra={"imagejob_event": EVENT, **{f"imagejob_{k}": v for k, v in fields.items()}},
    )
    return {"metadata_blob": metadata_name(job.job_id)}
