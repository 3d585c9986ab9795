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

from rules.settings import AppSettings
from rules.timing import TIMING_FIELDS
from storage.protocol import ImageStore, metadata_name

log = logging.getLogger("imagejobs")

EVENT = "image_job_finished"


def build_metadata(
    job: dict[str, Any], settings: AppSettings, finished_at: datetime
) -> dict[str, Any]:
    request = dict(job["request"])
    prompt = request.pop("prompt", "")
    request["prompt_chars"] = len(prompt)
    route = settings.route(request["route"])
    outcome = job["outcome"]
    attempts = job["attempts"]
    last_timings = outcome.get("timings") or {}
    return {
        "id": job["job_id"],
        "state": outcome["state"],
        "failure": outcome.get("failure"),
        "error": outcome.get("error"),
        "finished_at": finished_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "request": request,
        "model": route.model,
        "route": route.name,
        "route_owner": route.owner,
        "quality": request["quality"],
        "size": request["size"],
        "format": request["output_format"],
        **{k: last_timings.get(k) for k in TIMING_FIELDS},
        "http_status": last_timings.get("http_status"),
        "request_id": last_timings.get("request_id"),
        "rate_limit": last_timings.get("rate_limit"),
        "error_type": (outcome.get("error") or {}).get("type"),
        "retry_count": outcome.get("retry_count", 0),
        "retry_reason": outcome.get("retry_reason"),
        "post_send_resends": sum(
            1 for a in attempts if (a.get("decision") or {}).get("post_send_resend")
        ),
        # Retries a gateway made on its own, where it said so: counted apart from ours.
        "gateway_retry_count": sum(
            (a.get("timings") or {}).get("gateway_retries") or 0 for a in attempts
        ),
        "usage": outcome.get("usage"),
        "cost_usd": outcome.get("cost_usd"),
        "images": outcome.get("images", []),
        "previews": outcome.get("previews", []),
        "send_notes": (attempts[0].get("request_sent_as") or {}).get("notes", [])
        if attempts
        else [],
        "attempts": [_attempt_entry(a) for a in attempts],
    }


def _attempt_entry(attempt: dict[str, Any]) -> dict[str, Any]:
    failure = attempt.get("failure") or {}
    return {
        "attempt": attempt["attempt"],
        "ok": attempt["ok"],
        "outcome": "saved" if attempt["ok"] else failure.get("kind"),
        "layer": failure.get("layer"),
        "sent": failure.get("sent", True),
        "http_status": (attempt.get("timings") or {}).get("http_status"),
        "error_type": failure.get("error_type"),
        "code": failure.get("code"),
        "message": failure.get("message"),
        "request_id": (attempt.get("timings") or {}).get("request_id") or failure.get("request_id"),
        "timings": attempt.get("timings"),
        "request_sent_as": attempt.get("request_sent_as"),
        "previews": attempt.get("previews", []),
        "kept_images": attempt.get("kept_images", []),
        "usage": attempt.get("usage"),
        "cost_usd": attempt.get("cost_usd"),
        "decision": attempt.get("decision"),
    }


def log_fields(metadata: dict[str, Any]) -> dict[str, Any]:
    """The flat fields of the job's log event (custom dimensions in Application Insights)."""
    fields = {
        key: metadata.get(key)
        for key in (
            "id",
            "state",
            "failure",
            "model",
            "route",
            "route_owner",
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
        )
    }
    error = metadata.get("error") or {}
    fields["error_layer"] = error.get("layer")
    fields["error_code"] = error.get("code")
    fields["timeout_layer"] = error.get("timeout")
    fields["attempts"] = len(metadata.get("attempts", []))
    return fields


def finish_job(job: dict[str, Any], settings: AppSettings, store: ImageStore) -> dict[str, Any]:
    metadata = build_metadata(job, settings, datetime.now(UTC))
    store.put(
        name=metadata_name(job["job_id"]),
        data=json.dumps(metadata, indent=2).encode(),
        content_type="application/json",
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
    return {"metadata_blob": metadata_name(job["job_id"])}
