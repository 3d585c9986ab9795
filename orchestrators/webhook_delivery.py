"""The delivery of one webhook event: attempt -> durable timer -> attempt ..., apart from the job.

The job orchestration, once its outcome is decided and metadata.json written, hands the event to
``start_webhook_delivery``, an activity with a durable client that starts this orchestration
(instance ``{job id}-webhook``) and returns at once: the job completes, and its status says so,
whatever the receiver does. The Python SDK has no fire-and-forget sub-orchestration (a
sub-orchestration is scheduled only when yielded, and then its parent waits for it), so the
independent start goes through a client, as the Durable Functions team advises.

Each attempt is the ``deliver_webhook`` activity: it signs and POSTs the event and records the
attempt in ``{id}/webhooks.json``. A failed attempt is tried again after a durable timer, on the
schedule of rules.webhooks (5 s, 30 s, 2 min, 10 min, 1 h, then hourly, 8 attempts by default);
no worker is held while it waits. A target that resolves to an address deliveries never go to
is not tried again.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

import wiring
from rules.timing import iso_utc
from rules.webhooks import (
    DeliveryAttempt,
    WebhookDelivery,
    delivery_record,
    next_wait_s,
    retries_after,
)

bp = df.Blueprint()

ORCHESTRATOR = "webhook_delivery"
DELIVER = "deliver_webhook"
START = "start_webhook_delivery"


def delivery_instance_id(job_id: str) -> str:
    """The delivery orchestration of a job's event; never a job id (rules.dedup.is_job_id), so
    the job API cannot be pointed at it."""
    return f"{job_id}-webhook"


@bp.orchestration_trigger(context_name="context", orchestration=ORCHESTRATOR, input_type=dict)
def webhook_delivery(
    context: df.DurableOrchestrationContext,
) -> Generator[Any, Any, dict[str, Any]]:
    delivery = WebhookDelivery.from_json(context.get_input())
    # The retry schedule frozen when the delivery started; only a version 1 input, which has
    # none, reads the settings (so settings that no longer load never fail a version 2 one).
    schedule = delivery.schedule or delivery.schedule_by(wiring.settings().webhooks)
    attempts: list[DeliveryAttempt] = []
    while True:
        number = len(attempts) + 1
        attempt_input = replace(delivery, attempts=tuple(attempts)).to_json()
        try:
            answer = yield context.call_activity(DELIVER, attempt_input, expected_type=dict)
            attempt = DeliveryAttempt.from_json(answer)
        except Exception:  # a fault of ours, not the receiver's: a failed attempt all the same
            moment = iso_utc(context.current_utc_datetime)
            attempt = DeliveryAttempt(number, moment, 0, error="the delivery activity failed")
        attempts.append(attempt)
        wait = next_wait_s(number, schedule) if retries_after(attempt) else None
        if wait is None:
            break
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=wait))
    return delivery_record(delivery, tuple(attempts), None).to_json()
