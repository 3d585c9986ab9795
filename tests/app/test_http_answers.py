"""Answers the other handler tests do not show, so that every field and status the OpenAPI
document lists is answered by some test (test_openapi.py checks that; the conftest holds each
answer against the document): the batch endpoints, a job waiting to retry, a failure with every
detail, every clock, a request sent otherwise, a route's configured pace and partner, a 500.
Each also checks what its answer says."""

from __future__ import annotations

import asyncio
import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

import wiring
from activities.finish import build_metadata
from http_api import batches, evidence, handlers, uploads
from http_api.caller import caller_of
from http_api.durable_jobs import DurableJobs
from http_api.errors import answer_for
from rules.dedup import caller_digest
from rules.job_records import AttemptRecord, FinishInput, JobInput, JobState, Outcome
from rules.outcome import AttemptResult, Failure, FailureKind, Layer, SentAs, Timings
from rules.retry import Decision
from tests.fakes import AsyncInMemoryStore, InMemoryStore

from .test_http_edits import b64, png
from .test_http_handlers import BASE, BODY, NOW, World, request, saved_output

BATCHES = "http://127.0.0.1:7071/api/batches"
# A deadline still to come when the test runs (a past one is refused).
DEADLINE = (datetime.now(UTC) + timedelta(hours=30)).isoformat()


def call(world: World, handler: Any, req: func.HttpRequest) -> tuple[int, dict[str, Any], Any]:
    """A handler that takes no clock (the batch endpoints, uploads), through answer_for."""

    async def run() -> func.HttpResponse:
        store = AsyncInMemoryStore(world.store)
        try:
            if handler is uploads.create_upload:
                answer: func.HttpResponse = await handler(req, world.settings, store)
            else:
                answer = await handler(req, DurableJobs(world.client), world.settings, store)
        except Exception as exc:
            return answer_for(exc)
        return answer

    response = asyncio.run(run())
    return response.status_code, json.loads(response.get_body()), response.headers


@pytest.fixture
def batch_store(monkeypatch: pytest.MonkeyPatch) -> InMemoryStore:
    """The batches container (wiring.batch_store), in memory."""
    store = InMemoryStore()
    monkeypatch.setattr(wiring, "batch_store", lambda: store)
    return store


def manifest(*lines: dict[str, Any]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def post_batch(world: World, data: bytes, **params: str) -> tuple[int, dict[str, Any], Any]:
    req = func.HttpRequest(
        method="POST",
        url=BATCHES,
        headers={"content-type": "application/jsonl"},
        params=params,
        route_params={},
        body=data,
    )
    return call(world, batches.start_batch, req)


def batch_call(world: World, handler: Any, batch_id: str, tail: str = "") -> Any:
    req = func.HttpRequest(
        method="POST" if tail else "GET",
        url=f"{BATCHES}/{batch_id}{tail}",
        headers={},
        params={},
        route_params={"id": batch_id},
        body=b"",
    )
    return call(world, handler, req)


def test_a_batch_is_quoted_started_followed_cancelled_and_reported(batch_store: InMemoryStore):
    world = World(IMAGE_ROUTE_AZURE_REQUESTS_PER_MINUTE="60")
    data = manifest(
        {"batch": {"deadline": DEADLINE}},
        {"custom_id": "sku-1", "prompt": "a red teapot", "quality": "low"},
        {"prompt": "no custom id"},
        {"custom_id": "sku-3", "prompt": "a teapot", "size": "10x10"},
    )
    status, plan, _ = post_batch(world, data, dryRun="true")
    assert (status, plan["dryRun"], plan["items"], plan["invalid"]) == (200, True, 1, 2)
    assert plan["quote"]["realtimeS"] is not None
    assert world.client.instances == {}

    status, started, headers = post_batch(world, data)
    assert status == 202
    assert headers["Location"] == started["statusUrl"]
    assert [e["customId"] for e in started["lineErrors"]] == [None, "sku-3"]
    assert started["deadline"] is not None
    batch_id = started["id"]

    world.client.instances[batch_id]["runtimeStatus"] = "Running"
    world.client.instances[batch_id]["customStatus"] = {
        "state": "submitted",
        "counts": {"items": 1, "invalid": 2, "started": 1},
        "eta": (NOW + timedelta(hours=2)).isoformat(),
        "upstream_status": "in_progress",
    }
    status, running, headers = batch_call(world, batches.get_batch, batch_id)
    assert (status, running["state"], headers["Retry-After"]) == (202, "submitted", "5")
    assert running["progress"] == 0.0
    assert running["upstreamStatus"] == "in_progress"

    status, cancelling, _ = batch_call(world, batches.cancel_batch, batch_id, "/cancel")
    assert (status, cancelling["state"]) == (202, "cancelling")
    assert world.client.events == [(batch_id, "cancel")]

    world.client.instances[batch_id]["runtimeStatus"] = "Completed"
    world.client.instances[batch_id]["output"] = {
        "v": 1,
        "state": "cancelled",
        "counts": {"items": 1, "invalid": 2, "started": 0, "cancelled": 1},
        "report_jsonl": f"{batch_id}/report.jsonl",
        "report_csv": f"{batch_id}/report.csv",
    }
    status, ended, _ = batch_call(world, batches.get_batch, batch_id)
    assert (status, ended["state"]) == (200, "cancelled")
    # Each item once: the cancelled item is not also "not started".
    assert ended["counts"]["notStarted"] == 0
    assert ended["counts"]["cancelled"] == 1
    assert ended["report"]["csv"] == f"memory://{batch_id}/report.csv?ttl=3600"
    assert ended["failureReason"] is None
    status, again, _ = batch_call(world, batches.cancel_batch, batch_id, "/cancel")
    # Its real final state, as a job's cancel answers with its own ("ended" is no batch state).
    assert (status, again) == (200, {"id": batch_id, "state": "cancelled"})


def test_a_batch_that_failed_says_why(batch_store: InMemoryStore):
    world = World()
    body = {"items": [{"custom_id": "a", "prompt": "a red teapot"}], "deadline": DEADLINE}
    status, started, _ = call(world, batches.start_batch, request("POST", BATCHES, body=body))
    assert status == 202
    batch_id = started["id"]
    why = f"batch {batch_id}: the Batch API batch was still in_progress past its completion window"
    world.client.instances[batch_id]["runtimeStatus"] = "Completed"
    world.client.instances[batch_id]["output"] = {
        "v": 1,
        "state": "failed",
        "counts": {"items": 1, "failed": 1},
        "report_jsonl": None,
        "report_csv": None,
        "reason": why,
    }
    status, ended, _ = batch_call(world, batches.get_batch, batch_id)
    assert (status, ended["state"], ended["failureReason"]) == (200, "failed", why)
    assert ended["report"] is None
    assert "teapot" not in json.dumps(ended)


def test_a_batch_posted_as_json_and_again_is_the_same_batch(batch_store: InMemoryStore):
    world = World()
    body = {"items": [{"custom_id": "a", "prompt": "a red teapot"}], "deadline": DEADLINE}
    req = request("POST", BATCHES, body=body)
    status, first, _ = call(world, batches.start_batch, req)
    assert status == 202
    status, again, headers = call(world, batches.start_batch, req)
    assert (status, again["id"], headers["Idempotent-Replayed"]) == (202, first["id"], "true")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"items": [{"custom_id": "a", "prompt": "p"}], "deadline": "0001-01-01T00:00:00+01:00"},
            "deadline",
        ),
        (
            {"items": [{"custom_id": "a", "prompt": "p"}], "deadline": "9999-12-31T23:59:59-01:00"},
            "deadline",
        ),
        ({"items": [{"custom_id": "a", "prompt": "p"}], "deadlne": DEADLINE}, "deadlne"),
    ],
)
def test_a_deadline_past_utc_or_an_unknown_field_is_a_400(batch_store, body, field):
    world = World()
    status, answer, _ = call(world, batches.start_batch, request("POST", BATCHES, body=body))
    assert (status, answer["error"]["field"]) == (400, field)
    assert world.client.instances == {}


def test_a_job_waiting_to_retry_answers_when_and_why():
    world = World()
    _, job, _ = world.start({**BODY, "output_format": "jpeg", "output_compression": 80})
    world.client.instances[job["id"]]["customStatus"] = {
        "phase": "waiting_to_retry",
        "attempt": 1,
        "retryAt": "2026-05-07T13:46:42.000Z",
        "reason": "server_error before the send: retry in 30s",
    }
    status, body, _ = world.status(job["id"])
    assert (status, body["state"]) == (202, "waiting_to_retry")
    assert body["retry"] == {
        "at": "2026-05-07T13:46:42.000Z",
        "reason": "server_error before the send: retry in 30s",
    }
    assert body["request"]["outputCompression"] == 80


def test_a_failed_job_answers_every_detail_of_its_failure_and_its_clocks():
    world = World()
    _, job, _ = world.start()
    timings = {
        "request_started_at": "2026-05-07T13:46:13.000Z",
        "connect_ms": 12,
        "first_byte_ms": 900,
        "first_partial_image_ms": 8000,
        "final_image_ms": 21000,
        "download_ms": 300,
        "upload_ms": 150,
        "read_inputs_ms": 40,
        "upload_inputs_ms": 60,
        "partial_images_ms": [8000],
        "http_status": 200,
        "request_id": "req-1",
        "rate_limit": {"x-ratelimit-remaining-requests": "9"},
        "connection_reused": False,
        "partials_received": 1,
        "gateway_retries": 0,
    }
    error = {
        "kind": "local_timeout",
        "layer": "http_client",
        "message": "no byte for 360 s",
        "sent": True,
        "http_status": None,
        "code": "read_idle",
        "param": "size",
        "timeout": "read_idle",
    }
    output = {"v": 1, "state": "failed", "attempt": 2, "failure": "local_timeout"}
    world.finish(job["id"], {**output, "error": error, "timings": timings, "retry_count": 1})
    status, body, _ = world.status(job["id"])
    assert (status, body["failure"], body["retryCount"]) == (200, "local_timeout", 1)
    assert body["error"]["timeout"] == "read_idle"
    assert body["error"]["field"] == body["error"]["param"] == "size"
    assert body["timings"]["gatewayRetries"] == 0
    assert body["timings"]["uploadInputsMs"] == 60


def test_a_request_sent_otherwise_than_asked_is_started_with_notes():
    world = World()
    status, body, _ = world.start({**BODY, "size": "3840x2160", "quality": "high"})
    assert status == 202
    assert any("without streaming" in note for note in body["notes"])


def test_a_routes_configured_pace_and_partner_are_shown():
    world = World(
        IMAGE_ROUTE_AZURE_FAILOVER_TO="openai",
        IMAGE_ROUTE_AZURE_IMAGES_PER_MINUTE="20",
        IMAGE_ROUTE_AZURE_CONCURRENCY="4",
    )
    status, body, _ = world.call(handlers.list_routes, request("GET", BASE))
    assert status == 200
    azure = next(route for route in body["routes"] if route["route"] == "azure")
    assert azure["failoverTo"] == "openai"
    assert (azure["pace"]["imagesPerMinute"], azure["pace"]["concurrency"]) == (20, 4)


class Refused(Exception):
    """What the Blob SDK raises when the app's identity may not read a container."""

    status_code = 403


def test_an_input_container_the_app_may_not_read_is_a_500_settings_invalid(monkeypatch):
    world = World(IMAGE_INPUT_CONTAINERS="inputs")

    async def refused(self: Any, **kwargs: Any) -> bytes:
        raise Refused

    monkeypatch.setattr(AsyncInMemoryStore, "get_bounded", refused)
    status, body, _ = world.start({**BODY, "images": [{"blob": "inputs/a.png"}]})
    assert status == 500
    assert body["error"] == {
        "code": "settings_invalid",
        "message": "the service is misconfigured",
        "field": "settings",
    }


def test_a_saved_jobs_images_and_previews_are_links():
    world = World()
    _, job, _ = world.start()
    preview = {"index": 0, "partial_image_index": 0, "blob": f"{job['id']}/p.png", "bytes": 5}
    world.finish(job["id"], saved_output(job["id"], previews=[{**preview, "stored": True}]))
    status, body, _ = world.status(job["id"])
    assert status == 200
    assert body["previews"] == [{"index": 0, "url": f"memory://{job['id']}/p.png?ttl=3600"}]


# --- what the fuzz from the document found (tests/e2e/test_openapi_fuzz.py) ---------------


@pytest.mark.parametrize("token", ["\x14", "a\nb", "x" * 1025])
def test_a_page_token_no_list_gave_is_a_400_before_any_blob_call(token):
    world = World(IMAGE_SHARED_CALLER_MAY_LIST="true")
    listed: list[dict[str, Any]] = []

    def list_page(**asked: Any) -> tuple[list[str], str | None]:
        listed.append(asked)
        return [], None

    world.store.list_page = list_page  # type: ignore[method-assign]
    req = request("GET", BASE, params={"after": token})
    status, body, _ = world.call(handlers.list_jobs, req)
    assert (status, body["error"]["field"]) == (400, "after")
    assert listed == []
    # A token the list handed out carries the store's own marker to it.
    ok = request("GET", BASE)
    caller = caller_digest(world.settings.job_id_secret, caller_of(ok, world.settings))
    token = handlers._page_token(world.settings.job_id_secret, caller, "ok")
    assert world.call(handlers.list_jobs, request("GET", BASE, params={"after": token}))[0] == 200
    assert listed == [{"prefix": listed[0]["prefix"], "limit": 20, "after": "ok"}]


def test_a_code_with_control_characters_goes_back_encoded_in_the_batchs_urls(batch_store):
    world = World()
    data = manifest({"custom_id": "a", "prompt": "a red teapot"})
    status, body, headers = post_batch(world, data, code="k\r\nSet-Cookie: x")
    assert status == 202
    assert headers["Location"] == body["statusUrl"]
    assert body["statusUrl"].endswith("?code=k%0D%0ASet-Cookie%3A+x")


# --- the escalation packet, with every detail ----------------------------------------------

# What App Service sets about the host: the packet's infrastructure names it.
AZURE_HOST = {
    "FUNCTIONS_EXTENSION_VERSION": "~4",
    "REGION_NAME": "Sweden Central",
    "WEBSITE_SKU": "FlexConsumption",
}


def clocks(start: str, **facts: Any) -> Timings:
    return Timings(
        request_started_at=start,
        connect_ms=12,
        first_byte_ms=900,
        first_partial_image_ms=8000,
        final_image_ms=21000,
        download_ms=300,
        upload_ms=150,
        read_inputs_ms=40,
        upload_inputs_ms=60,
        partial_images_ms=[8000],
        **facts,
    )


def evidence_of(world: World, job_id: str) -> tuple[int, dict[str, Any], Any]:
    get = functools.partial(evidence.get_evidence, env=AZURE_HOST)
    return world.call(get, request("GET", f"{BASE}/{job_id}/evidence", job_id=job_id))


def test_the_packet_of_a_failed_edit_shows_every_attempt_clock_and_limit():
    world = World(
        IMAGE_ROUTE_AZURE_REQUESTS_PER_MINUTE="60",
        IMAGE_ROUTE_AZURE_IMAGES_PER_MINUTE="20",
        IMAGE_ROUTE_AZURE_CONCURRENCY="4",
        IMAGE_ROUTE_AZURE_GATEWAY_RETRY_HEADER="x-ms-retry-count",
    )
    inputs = {"images": [b64(png())], "mask": b64(png(mode="RGBA"))}
    body = {**BODY, **inputs, "output_format": "jpeg", "output_compression": 80}
    _, job, _ = world.start(body)
    job_id = job["id"]
    started = JobInput.from_json(world.client.instances[job_id]["input"])
    sent_as = SentAs(stream=True, partial_images=1)
    timed_out = Failure(
        kind=FailureKind.LOCAL_TIMEOUT,
        layer=Layer.HTTP_CLIENT,
        message="no byte for 360 s",
        sent=True,
        timeout="read_idle",
    )
    refused = Failure(
        kind=FailureKind.REJECTED,
        layer=Layer.ROUTE,
        message="Invalid size for an edit.",
        sent=True,
        http_status=400,
        error_type="invalid_request_error",
        code="invalid_value",
        param="size",
        request_id="req_2",
    )
    attempts = (
        AttemptRecord(
            AttemptResult(
                attempt=1,
                ok=False,
                timings=clocks("2026-05-07T13:46:13.000Z"),
                failure=timed_out,
                request_sent_as=sent_as,
            ),
            Decision(retry=True, wait_s=30.0, reason="local_timeout after the send: retry in 30s"),
        ),
        AttemptRecord(
            AttemptResult(
                attempt=2,
                ok=False,
                timings=clocks(
                    "2026-05-07T13:47:00.000Z",
                    http_status=400,
                    request_id="req_2",
                    rate_limit={"x-ratelimit-remaining-requests": "9"},
                ),
                failure=refused,
                request_sent_as=sent_as,
            ),
            Decision(retry=False, wait_s=0.0, reason="rejected is never retried"),
        ),
    )
    outcome = Outcome(
        state=JobState.FAILED,
        attempt=2,
        failure="returned_error",
        error=refused,
        retry_count=1,
        retry_reason="local_timeout after the send: retry in 30s",
        timings=attempts[-1].result.timings,
        metadata_blob=f"{job_id}/metadata.json",
    )
    finish = FinishInput(job_id, started.request, outcome, attempts, caller=started.caller)
    metadata = json.dumps(build_metadata(finish, world.settings, NOW)).encode()
    world.store.put(name=f"{job_id}/metadata.json", data=metadata, content_type="j")
    world.client.instances[job_id]["runtimeStatus"] = "Completed"
    world.client.instances[job_id]["output"] = outcome.to_json()

    status, packet, headers = evidence_of(world, job_id)
    assert (status, packet["complete"], headers["Cache-Control"]) == (200, True, "no-store")
    assert [a["timeoutLayer"] for a in packet["attempts"]] == ["http_client (read_idle)", None]
    assert packet["attempts"][0]["decision"]["waitS"] == 30.0
    assert packet["returned"]["error"]["param"] == "size"
    assert packet["moment"]["firstSendAt"] == "2026-05-07T13:46:13.000Z"
    assert packet["request"]["outputCompression"] == 80
    assert packet["request"]["mask"]["format"] == "png"
    assert packet["infrastructure"]["region"] == "Sweden Central"
    assert packet["infrastructure"]["pace"] == {
        "requestsPerMinute": 60,
        "imagesPerMinute": 20,
        "concurrency": 4,
    }
    assert packet["infrastructure"]["gateway"]["retryHeader"] == "x-ms-retry-count"
    assert packet["timings"]["readInputsMs"] == 40


def test_the_packet_of_a_job_ended_by_a_timeout_without_its_record_names_the_layer():
    world = World()
    _, job, _ = world.start()
    timed_out = {
        "kind": "local_timeout",
        "layer": "http_client",
        "message": "no byte for 360 s",
        "sent": True,
        "timeout": "read_idle",
    }
    output = {"v": 1, "state": "failed", "attempt": 1, "failure": "local_timeout"}
    world.finish(job["id"], {**output, "error": timed_out})  # metadata.json was not written
    status, packet, _ = evidence_of(world, job["id"])
    assert (status, packet["complete"], packet["state"]) == (200, False, "failed")
    assert packet["timeoutLayer"] == "http_client (read_idle)"
