"""Webhooks at the HTTP edge: a start naming ``webhookUrl`` (checked, kept on the job, part of
the job's identity), GET /api/webhook-secret, and the deliveries in the status answer."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest
from standardwebhooks import Webhook

from http_api import webhooks
from http_api.errors import answer_for
from rules.dedup import caller_digest
from rules.job_records import JobInput
from rules.webhooks import (
    DeliveryAttempt,
    DeliveryRecord,
    DeliveryState,
    EventType,
    WebhookLog,
    caller_secret,
    signed_headers,
)
from storage.protocol import webhooks_name

from .test_http_handlers import BASE, BODY, World, assert_envelope, request, saved_output

SECRET_ENV = {"IMAGE_WEBHOOK_SECRET": "test-only-webhook-secret-0123"}
HOOK = "https://hooks.example.com/in?token=sekret"


@pytest.fixture
def world() -> World:
    return World(**SECRET_ENV)


def test_a_job_keeps_its_webhook_and_a_keyless_status_base(world: World):
    status, body, _ = world.start({**BODY, "webhookUrl": HOOK}, params={"code": "function-key"})
    assert status == 202
    job = JobInput.from_json(world.client.instances[body["id"]]["input"])
    assert job.webhook is not None
    assert job.webhook.url == HOOK
    assert job.webhook.status_base == BASE  # never with ?code=: a key does not travel
    assert job.webhook.status_url(body["id"]) == f"{BASE}/{body['id']}"
    assert "code=function-key" in body["statusUrl"]  # the caller's own link keeps it


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("http://hooks.example.com/in", "invalid_value"),
        ("https://127.0.0.1/in", "invalid_value"),
        ("https://localhost/in", "invalid_value"),
        ("https://10.0.0.1/in", "invalid_value"),
        (["https://hooks.example.com"], "invalid_type"),
    ],
)
def test_a_target_deliveries_would_refuse_is_a_400_naming_the_field(
    world: World, value: Any, code: str
):
    status, body, _ = world.start({**BODY, "webhookUrl": value})
    assert status == 400
    assert_envelope(body, code, "webhookUrl")
    assert world.client.instances == {}  # nothing started


def test_without_a_webhook_secret_a_webhook_is_refused():
    status, body, _ = World().start({**BODY, "webhookUrl": HOOK})
    assert status == 400
    assert_envelope(body, "unsupported", "webhookUrl")


def test_loopback_over_http_where_the_settings_allow_it():
    world = World(
        **SECRET_ENV, IMAGE_WEBHOOK_ALLOW_HTTP="true", IMAGE_WEBHOOK_ALLOW_LOOPBACK="true"
    )
    status, _, _ = world.start({**BODY, "webhookUrl": "http://127.0.0.1:9/hook"})
    assert status == 202


def test_the_same_key_with_another_webhook_is_a_conflict(world: World):
    key = {"Idempotency-Key": "order-7"}
    first, body, _ = world.start({**BODY, "webhookUrl": HOOK}, headers=key)
    again, replay, _ = world.start({**BODY, "webhookUrl": HOOK}, headers=key)
    assert (first, again) == (202, 202)
    assert replay["id"] == body["id"]
    other, conflict, _ = world.start(
        {**BODY, "webhookUrl": "https://hooks.example.com/other"}, headers=key
    )
    assert other == 409
    assert_envelope(conflict, "idempotency_key_reused", "Idempotency-Key")


def test_the_status_answer_shows_the_deliveries_once_the_job_ended(world: World):
    _, started, _ = world.start({**BODY, "webhookUrl": HOOK})
    job_id = started["id"]
    _, running, _ = world.status(job_id)
    assert running["webhooks"] == []
    _, plain, _ = world.start({**BODY, "prompt": "no webhook"})
    world.finish(plain["id"], saved_output(plain["id"]))
    assert world.status(plain["id"])[1]["webhooks"] is None
    world.finish(job_id, saved_output(job_id))
    _, ended, _ = world.status(job_id)
    assert ended["webhooks"] == []  # the delivery has not recorded an attempt yet
    job = JobInput.from_json(world.client.instances[job_id]["input"])
    record = DeliveryRecord(
        webhook_id=f"msg_{job_id}_saved",
        type=EventType.SAVED,
        timestamp="2026-05-07T13:46:40.000Z",
        state=DeliveryState.DELIVERING,
        attempts=(DeliveryAttempt(1, "2026-05-07T13:46:40.100Z", 35, status_code=500),),
        next_attempt_at="2026-05-07T13:46:45.135Z",
    )
    log = WebhookLog(job_id, job.created_at, "https://hooks.example.com", (record,))
    world.store.put(
        name=webhooks_name(job_id), data=json.dumps(log.to_json()).encode(), content_type="j"
    )
    status, ended, _ = world.status(job_id)
    assert status == 200
    assert ended["webhooks"] == [
        {
            "id": f"msg_{job_id}_saved",
            "type": "image.saved",
            "timestamp": "2026-05-07T13:46:40.000Z",
            "state": "delivering",
            "attempts": [
                {
                    "attempt": 1,
                    "at": "2026-05-07T13:46:40.100Z",
                    "durationMs": 35,
                    "statusCode": 500,
                    "error": None,
                }
            ],
            "nextAttemptAt": "2026-05-07T13:46:45.135Z",
        }
    ]
    assert "sekret" not in json.dumps(ended)
    # A record an earlier job under the id left is not this job's.
    stale = WebhookLog(job_id, "2020-01-01T00:00:00.000Z", "https://x.example.com", (record,))
    world.store.put(
        name=webhooks_name(job_id), data=json.dumps(stale.to_json()).encode(), content_type="j"
    )
    assert world.status(job_id)[1]["webhooks"] == []


def secret_answer(
    world: World, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    async def run() -> func.HttpResponse:
        req = request("GET", "http://127.0.0.1:7071/api/webhook-secret", headers=headers)
        try:
            return await webhooks.webhook_secret(req, world.settings)
        except Exception as exc:
            return answer_for(exc)

    response = asyncio.run(run())
    assert response.headers.get("Cache-Control", "no-store") == "no-store"
    return response.status_code, json.loads(response.get_body())


def test_the_secret_endpoint_answers_the_callers_own_secret():
    world = World(**SECRET_ENV, IMAGE_TRUST_PRINCIPAL_HEADER="true")
    status, alice = secret_answer(world, {"x-ms-client-principal-id": "alice"})
    assert status == 200
    assert alice["secret"].startswith("whsec_")
    assert alice["identity"] == "own"
    _, bob = secret_answer(world, {"x-ms-client-principal-id": "bob"})
    assert bob["secret"] != alice["secret"]
    _, shared = secret_answer(world)
    assert shared["identity"] == "shared"
    # It is the secret a delivery of alice's job is signed with.
    digest = caller_digest(world.settings.job_id_secret, "alice")
    master = world.settings.webhooks.secret
    assert master is not None
    body = '{"type":"image.saved"}'
    headers = signed_headers(caller_secret(master, digest), "msg_x", datetime.now(UTC), body)
    Webhook(alice["secret"]).verify(body, headers)


def test_the_secret_endpoint_without_a_webhook_secret():
    status, body = secret_answer(World())
    assert status == 400
    assert_envelope(body, "unsupported", "webhookUrl")


def test_the_secret_endpoint_refuses_a_principal_header_easy_auth_did_not_set():
    world = World(**SECRET_ENV, IMAGE_TRUST_PRINCIPAL_HEADER="true")
    status, body = secret_answer(world, {"x-ms-client-principal-id": "a\x00b"})
    assert status == 400
    assert_envelope(body, "invalid_value", "x-ms-client-principal-id")


def test_a_purged_job_shows_the_deliveries_its_record_kept(world: World):
    """Once the durable history (which held the webhook) is purged, the answer made from
    metadata.json has every field a live one has: the deliveries webhooks.json recorded, or
    null where there is no record."""
    _, started, _ = world.start({**BODY, "webhookUrl": HOOK})
    job_id = started["id"]
    world.finish(job_id, saved_output(job_id))
    job = JobInput.from_json(world.client.instances[job_id]["input"])
    refused = DeliveryAttempt(
        1, "2026-05-07T13:46:40.100Z", 3, error="refused: the host resolves to a loopback address"
    )
    record = DeliveryRecord(
        webhook_id=f"msg_{job_id}_saved",
        type=EventType.SAVED,
        timestamp="2026-05-07T13:46:40.000Z",
        state=DeliveryState.REFUSED,
        attempts=(refused,),
    )
    log = WebhookLog(job_id, job.created_at, "https://hooks.example.com", (record,))
    world.store.put(
        name=webhooks_name(job_id), data=json.dumps(log.to_json()).encode(), content_type="j"
    )
    _, plain, _ = world.start({**BODY, "prompt": "no webhook"})
    world.finish(plain["id"], saved_output(plain["id"]))
    del world.client.instances[job_id], world.client.instances[plain["id"]]

    status, purged, _ = world.status(job_id)
    assert (status, purged["historyPurged"]) == (200, True)
    assert purged["webhooks"] == [record.answer()]
    assert purged["webhooks"][0]["attempts"][0]["error"].startswith("refused:")
    status, purged, _ = world.status(plain["id"])
    assert (status, purged["historyPurged"], purged["webhooks"]) == (200, True, None)
