"""Webhooks end to end: a receiver on loopback (allowed by the stack's settings) checks every
delivery's signature with the standardwebhooks library, answers 500 to the first one, and sees
the retry with the same webhook-id; saved, failed and cancelled jobs each push one event, in
the order they ended, with increasing timestamps; no prompt, key or token in any of them, and
each one the OpenAPI document's webhook describes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from clients.cli import Runtime
from clients.cli import main as cli_main
from loopserver.testing import wait_until
from tests.webhook_receiver import Delivery, Receiver

from . import documented
from .conftest import PROMPT, Api

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

WEBHOOK_SECRET = "e2e-only-webhook-secret-0123456789"
STACK = {
    "extra_env": {
        "IMAGE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "IMAGE_WEBHOOK_ALLOW_HTTP": "true",
        "IMAGE_WEBHOOK_ALLOW_LOOPBACK": "true",
        # Service seconds, divided by the stack's time scale (25): 0.2 s, then 1.2 s.
        "IMAGE_WEBHOOK_RETRY_WAITS_S": "5,30",
        "IMAGE_WEBHOOK_MAX_ATTEMPTS": "4",
    }
}
SMALL: dict[str, Any] = {"size": "1024x1024", "quality": "low", "output_format": "jpeg"}
TOKEN = "e2e-receiver-token"


@pytest.fixture(scope="module")
def receiver(api: Api) -> Iterator[Receiver]:
    answer = api.http.get("/api/webhook-secret")
    assert answer.status_code == 200, answer.text
    assert answer.json()["secret"].startswith("whsec_")
    with Receiver() as running:
        running.secret = answer.json()["secret"]
        yield running


def hook(receiver: Receiver) -> str:
    return f"{receiver.url}?token={TOKEN}"


def delivered(receiver: Receiver, job_id: str, count: int = 1) -> list[Delivery]:
    return wait_until(
        lambda: (seen := receiver.of(job_id)) and len(seen) >= count and seen,
        timeout=30,
        what=f"{count} verified deliveries for {job_id}",
    )


def moment(delivery: Delivery) -> datetime:
    return datetime.fromisoformat(delivery.payload["timestamp"])


def no_secrets_in(api: Api, delivery: Delivery) -> None:
    # Each delivery is also one the OpenAPI document's webhook lists (body and headers).
    documented.check_webhook(delivery.payload, delivery.headers)
    text = delivery.body + " ".join(delivery.headers.values())
    for secret in (PROMPT, "red apple", api.stack.function_key, WEBHOOK_SECRET, TOKEN, "sig="):
        assert secret not in text
    assert "code=" not in delivery.payload["data"]["statusUrl"]


def test_a_saved_job_is_pushed_signed_and_retried_after_a_500(
    api: Api, receiver: Receiver, tmp_path: Path
):
    receiver.answers = [500]
    started = api.start(prompt=PROMPT, webhookUrl=hook(receiver), **SMALL)
    assert started.status_code == 202, started.text
    job = started.json()["id"]
    final = api.poll(job)[-1]
    # The job ended on its own clock: its state never waits for the receiver.
    assert final["state"] == "saved"
    first, second = delivered(receiver, job, count=2)[:2]
    assert (first.answered, second.answered) == (500, 200)
    assert first.webhook_id == second.webhook_id == f"msg_{job}_saved"  # receivers dedupe on it
    assert first.body == second.body  # the same event, signed anew for the attempt
    assert second.timestamp >= first.timestamp
    assert first.query == f"token={TOKEN}"
    event = second.payload
    assert event["type"] == "image.saved"
    assert event["data"]["id"] == job
    assert event["data"]["state"] == "saved"
    assert event["data"]["statusUrl"].endswith(f"/api/images/{job}")
    assert event["data"]["image"]["contentType"] == "image/jpeg"
    assert event["data"]["image"]["width"] == 1024
    assert "url" not in event["data"]["image"]  # no expiring links
    for delivery in (first, second):
        no_secrets_in(api, delivery)
    # The CLI verifies the delivery as received, and refuses it with another byte.
    (tmp_path / "body").write_text(second.body)
    (tmp_path / "headers").write_text(json.dumps(second.headers))
    assert receiver.secret is not None
    argv = ["verify-webhook", "--headers", str(tmp_path / "headers"), "--secret", receiver.secret]
    quiet = Runtime(out=Console(file=io.StringIO()), err=Console(file=io.StringIO()))
    assert cli_main([*argv, "--payload", str(tmp_path / "body")], runtime=quiet) == 0
    (tmp_path / "body").write_text(second.body + " ")
    assert cli_main([*argv, "--payload", str(tmp_path / "body")], runtime=quiet) == 1
    # The job shows its deliveries: the 500, then the 200.
    shown = wait_until(
        lambda: (
            (hooks := api.status(job).json()["webhooks"])
            and hooks[0]["state"] == "delivered"
            and hooks
        ),
        timeout=30,
        what="the delivery recorded on the job",
    )
    assert [a["statusCode"] for a in shown[0]["attempts"]] == [500, 200]
    assert shown[0]["id"] == f"msg_{job}_saved"
    assert shown[0]["nextAttemptAt"] is None
    blobs = {name.split("/", 1)[1] for name in api.blobs(job)}
    assert "webhooks.json" in blobs
    assert TOKEN not in api.blob_text(f"{job}/webhooks.json")
    assert TOKEN not in api.blob_text(f"{job}/metadata.json")


def test_failed_and_cancelled_jobs_are_pushed_in_the_order_they_ended(api: Api, receiver: Receiver):
    receiver.answers = []
    api.fault(kind="auth_error", status=401, match={"size": "1024x1536"})
    failed = api.start(
        prompt=PROMPT + " fails", webhookUrl=hook(receiver), **{**SMALL, "size": "1024x1536"}
    ).json()["id"]
    assert api.poll(failed)[-1]["state"] == "failed"
    (failed_event,) = delivered(receiver, failed)
    data = failed_event.payload["data"]
    assert failed_event.payload["type"] == "image.failed"
    assert data["failure"] == "returned_error"
    assert data["error"]["httpStatus"] == 401
    assert "message" not in data["error"]
    assert data["image"] is None

    # 600 service seconds of retry-after: long enough to cancel in.
    api.fault(kind="rate_limited", retry_after_s=600, match={"size": "1536x1024"})
    cancelled = api.start(
        prompt=PROMPT + " cancelled", webhookUrl=hook(receiver), **{**SMALL, "size": "1536x1024"}
    ).json()["id"]
    wait_until(
        lambda: api.status(cancelled).json()["state"] == "waiting_to_retry", what="a retry wait"
    )
    assert api.cancel(cancelled).status_code in (200, 202)
    assert api.poll(cancelled)[-1]["state"] == "cancelled"
    (cancelled_event,) = delivered(receiver, cancelled)
    assert cancelled_event.payload["type"] == "image.cancelled"
    assert cancelled_event.webhook_id == f"msg_{cancelled}_cancelled"

    # Every event received, in arrival order: each job's event later than the one before.
    answered = [d for d in receiver.deliveries if d.verified and d.answered == 200]
    assert len(answered) >= 2
    assert all(d.verified for d in receiver.deliveries)
    moments = [moment(d) for d in answered]
    assert moments == sorted(moments)
    assert len(set(moments)) == len(moments)
    stamps = [d.timestamp for d in answered]
    assert stamps == sorted(stamps)
    for delivery in receiver.deliveries:
        no_secrets_in(api, delivery)


def test_a_private_target_is_refused_at_start_naming_the_field(api: Api, receiver: Receiver):
    answer = api.start(prompt=PROMPT, webhookUrl="http://10.0.0.7/hook", **SMALL)
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == "webhookUrl"


def test_the_service_logs_no_token_and_no_secret(api: Api, receiver: Receiver):
    log = (api.stack.log_dir / "devhost.log").read_text(errors="replace")
    assert "webhook image.saved" in log  # the deliveries are logged...
    assert TOKEN not in log  # ...by the target's origin only
    assert receiver.secret is not None
    assert receiver.secret not in log
    assert WEBHOOK_SECRET not in log
