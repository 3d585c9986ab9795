"""The event a job's webhook receives when the job ends, made from the job's outcome.

    event = job_event(job_id, outcome, target, at)   # rules.webhooks.WebhookEvent

One event per job, at its end: ``image.saved``, ``image.failed`` or ``image.cancelled``. The
payload says what ended and how, never what was asked: no prompt, no key, no error message (a
route's text, however redacted, stays in the status answer), and no image links (a link is a
bearer credential that expires within IMAGES_LINK_TTL_S, and a retry may come an hour later);
the receiver fetches ``statusUrl`` with its own key for fresh links.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rules.job_records import JobState, Outcome
from rules.timing import iso_utc
from rules.webhooks import EventType, WebhookEvent, WebhookTarget, webhook_id

EVENT_OF_STATE = {
    JobState.SAVED: EventType.SAVED,
    JobState.FAILED: EventType.FAILED,
    JobState.CANCELLED: EventType.CANCELLED,
}


def job_event(job_id: str, outcome: Outcome, target: WebhookTarget, at: datetime) -> WebhookEvent:
    """The event for a job that ended with ``outcome`` at ``at``."""
    kind = EVENT_OF_STATE[outcome.state]
    images = [
        {
            "contentType": image.content_type,
            "bytes": image.bytes,
            "width": image.width,
            "height": image.height,
        }
        for image in outcome.images
    ]
    error = outcome.error
    data: dict[str, Any] = {
        "id": job_id,
        "state": outcome.state.value,
        "statusUrl": target.status_url(job_id),
        "failure": outcome.failure if outcome.state is JobState.FAILED else None,
        "error": {
            "layer": error.layer.value,
            "kind": error.kind.value,
            "httpStatus": error.http_status,
            "type": error.error_type,
            "code": error.code,
        }
        if error is not None and outcome.state is JobState.FAILED
        else None,
        "attempt": outcome.attempt,
        "retryCount": outcome.retry_count,
        "image": images[0] if images else None,
        "images": images,
        "costUsd": outcome.cost_usd,
    }
    return WebhookEvent(
        webhook_id=webhook_id(job_id, kind), type=kind, timestamp=iso_utc(at), data=data
    )
