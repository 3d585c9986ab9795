"""The HTTP handlers, called with hand-written fakes of the durable client and Blob: every
branch of start, status and cancel, and how many round trips each takes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import azure.functions as func
import pytest

from activities.finish import build_metadata
from http_api import handlers
from http_api.durable_jobs import DurableJobs
from http_api.errors import answer_for
from rules.dedup import caller_digest
from rules.job_records import FinishInput, JobInput, Outcome
from rules.settings import AppSettings
from tests.fakes import AsyncInMemoryStore, InMemoryStore
from tests.rules.conftest import ENV

from .fake_durable import FakeDurableClient

BASE = "http://127.0.0.1:7071/api/images"
BODY = {"prompt": "a red apple", "size": "1024x1024", "quality": "low"}
NOW = datetime(2026, 5, 7, 13, 46, 12, tzinfo=UTC)


def request(
    method: str,
    url: str,
    *,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    job_id: str | None = None,
    params: dict[str, str] | None = None,
) -> func.HttpRequest:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    return func.HttpRequest(
        method=method,
        url=url,
        headers=headers or {},
        params=params or {},
        route_params={"id": job_id} if job_id is not None else {},
        body=data,
    )


class World:
    """The handlers' outside worlds, faked, and a way to call each handler through the same
    failure mapping the blueprint uses."""

    def __init__(self, **env: str) -> None:
        self.client = FakeDurableClient()
        self.store = InMemoryStore()
        self.settings = AppSettings.from_env({**ENV, **env})
        self.now = NOW

    def call(self, handler: Any, req: func.HttpRequest) -> tuple[int, dict[str, Any], Any]:
        async def run() -> func.HttpResponse:
            jobs = DurableJobs(self.client)
            store = AsyncInMemoryStore(self.store)
            answer: func.HttpResponse
            try:
                if handler is handlers.list_jobs:
                    answer = await handler(req, jobs, self.settings, store)
                else:
                    answer = await handler(req, jobs, self.settings, store, lambda: self.now)
            except Exception as exc:
                return answer_for(exc)
            return answer

        response = asyncio.run(run())
        assert response.mimetype == "application/json"
        return response.status_code, json.loads(response.get_body()), response.headers

    def start(self, body: Any = BODY, **kwargs: Any) -> tuple[int, dict[str, Any], Any]:
        return self.call(handlers.start_job, request("POST", BASE, body=body, **kwargs))

    def status(self, job_id: str, **kwargs: Any) -> tuple[int, dict[str, Any], Any]:
        url = f"{BASE}/{job_id}"
        return self.call(handlers.get_job, request("GET", url, job_id=job_id, **kwargs))

    def cancel(self, job_id: str, **kwargs: Any) -> tuple[int, dict[str, Any], Any]:
        url = f"{BASE}/{job_id}/cancel"
        return self.call(handlers.cancel_job, request("POST", url, job_id=job_id, **kwargs))

    def finish(self, job_id: str, output: dict[str, Any], status: str = "Completed") -> None:
        """End the job as the orchestrator does: its record in Blob, then the output."""
        if output.get("metadata_blob"):
            job = JobInput.from_json(self.client.instances[job_id]["input"])
            finish = FinishInput(
                job_id=job_id,
                request=job.request,
                outcome=Outcome.from_json(output),
                attempts=(),
                caller=job.caller,
            )
            metadata = json.dumps(build_metadata(finish, self.settings, self.now)).encode()
            self.store.put(name=output["metadata_blob"], data=metadata, content_type="j")
        self.client.instances[job_id]["runtimeStatus"] = status
        self.client.instances[job_id]["output"] = output


def saved_output(job_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "state": "saved",
        "attempt": 1,
        "images": [
            {
                "blob": f"{job_id}/image.png",
                "contentType": "image/png",
                "bytes": 3,
                "width": 1024,
                "height": 1024,
            }
        ],
        "metadata_blob": f"{job_id}/metadata.json",
        **fields,
    }


def assert_envelope(body: dict[str, Any], code: str, field: str) -> None:
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["field"] == field
    assert body["error"]["message"]


# --- POST /api/images ---------------------------------------------------------------------


def test_a_new_job_takes_one_status_look_one_folder_check_and_the_start():
    world = World()
    status, body, headers = world.start()
    assert status == 202
    assert body["state"] == "queued"
    assert body["statusUrl"] == f"{BASE}/{body['id']}"
    assert headers["Location"] == body["statusUrl"]
    # The earliest a 1024x1024 low image may be there, by the calibration (30 s, early 60%).
    assert headers["Retry-After"] == "18"
    assert world.client.count("get_status") == 1
    assert world.client.count("start_new") == 1
    assert world.store.get_calls == [f"{body['id']}/metadata.json"]
    started = world.client.instances[body["id"]]["input"]
    # Version 4: what the orchestration decides by, frozen at the start (rules.job_records).
    assert started["v"] == 4
    assert started["decided"]["route"]["name"] == started["request"]["route"]
    assert started["created_at"] == "2026-05-07T13:46:12.000Z"
    assert "apple" not in json.dumps({k: v for k, v in started.items() if k != "request"})


@pytest.mark.parametrize(
    ("raw", "field", "code"),
    [
        (b"{not json", "body", "invalid_json"),
        (b"\xff\xfe", "body", "invalid_json"),
        (b"[" * 100_000, "body", "invalid_json"),
        (b"[]", "body", "invalid_type"),
        (json.dumps({"size": "1024x1024"}).encode(), "prompt", "missing"),
        (json.dumps({**BODY, "size": "10x10"}).encode(), "size", "invalid_value"),
        (json.dumps({**BODY, "colour": "red"}).encode(), "colour", "unknown_field"),
        # Cut off by the whole-request limit in any shape (rules.send_plan.too_slow).
        (
            json.dumps({**BODY, "n": 10, "size": "3840x2160", "quality": "high"}).encode(),
            "n",
            "invalid_value",
        ),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field_before_any_look(raw, field, code):
    world = World()
    status, body, _ = world.call(handlers.start_job, request("POST", BASE, raw=raw))
    assert status == 400
    assert_envelope(body, code, field)
    assert world.client.calls == []


def test_a_bad_idempotency_key_is_a_400():
    world = World()
    status, body, _ = world.start(headers={"Idempotency-Key": "x" * 300})
    assert status == 400
    assert_envelope(body, "invalid_value", "Idempotency-Key")


def test_the_same_running_job_again_is_returned_not_started_twice():
    world = World()
    _, first, _ = world.start()
    status, again, headers = world.start()
    assert status == 202
    assert again["id"] == first["id"]
    assert headers["Idempotent-Replayed"] == "true"
    assert world.client.count("start_new") == 1


def test_a_reused_key_with_another_body_is_a_409():
    world = World()
    world.start(headers={"Idempotency-Key": "k1"})
    status, body, _ = world.start({**BODY, "quality": "high"}, headers={"Idempotency-Key": "k1"})
    assert status == 409
    assert_envelope(body, "idempotency_key_reused", "Idempotency-Key")


def test_a_finished_keyed_job_answers_within_the_window_and_not_after():
    world = World()
    _, first, _ = world.start(headers={"Idempotency-Key": "k1"})
    world.finish(first["id"], saved_output(first["id"]))
    status, again, headers = world.start(headers={"Idempotency-Key": "k1"})
    assert (status, again["id"], again["state"]) == (202, first["id"], "saved")
    assert headers["Idempotent-Replayed"] == "true"

    world.now = NOW + timedelta(days=2)  # past the 24 h window: a new job, a new generation
    status, later, _ = world.start(headers={"Idempotency-Key": "k1"})
    assert status == 202
    assert later["id"] != first["id"]
    assert later["id"].endswith("-2")


def test_a_finished_job_without_a_key_is_followed_by_a_new_generation():
    world = World()
    _, first, _ = world.start()
    world.finish(first["id"], saved_output(first["id"]))
    _, second, _ = world.start()
    assert second["id"] != first["id"]
    assert second["id"].rsplit("-", 1)[0] == first["id"].rsplit("-", 1)[0]


def test_a_purged_jobs_folder_is_never_reused():
    world = World()
    _, first, _ = world.start()
    del world.client.instances[first["id"]]  # history purged; its record stays in Blob
    world.store.put(name=f"{first['id']}/metadata.json", data=b"{}", content_type="j")
    _, second, _ = world.start()
    assert second["id"] != first["id"]
    assert world.store.blobs[f"{first['id']}/metadata.json"][0] == b"{}"


def test_a_start_that_loses_the_race_returns_the_winners_job():
    world = World()
    _, first, _ = world.start()
    instance = world.client.instances.pop(first["id"])
    # The other submit gets there between our look and our start.
    world.client.before_start = lambda job_id: world.client.instances.update({job_id: instance})
    status, again, headers = world.start()
    assert (status, again["id"]) == (202, first["id"])
    assert headers["Idempotent-Replayed"] == "true"


def test_a_refused_start_of_an_absent_job_is_a_503_not_a_guess():
    world = World()
    world.client.refuse_starts = True
    status, body, headers = world.start()
    assert status == 503
    assert_envelope(body, "store_error", "service")
    assert headers["Retry-After"] == "5"


@pytest.mark.parametrize("fault", ["error_answers", "down"])
def test_a_failing_job_store_is_a_503_with_retry_after(fault):
    world = World()
    setattr(world.client, fault, True)
    status, body, headers = world.start()
    assert status == 503
    assert_envelope(body, "store_error", "service")
    assert headers["Retry-After"] == "5"
    assert world.client.count("start_new") == 0


def test_blob_down_while_starting_is_a_503():
    world = World()
    world.store.down = True
    status, body, _ = world.start()
    assert status == 503
    assert_envelope(body, "store_error", "service")
    assert world.client.count("start_new") == 0


def test_a_job_store_slower_than_the_starter_limit_is_a_503():
    world = World(IMAGE_HTTP_STARTER_TIMEOUT_S="0.05")
    world.client.slow_s = 0.5
    status, body, _ = world.start()
    assert status == 503
    assert_envelope(body, "store_timeout", "service")


# --- GET /api/images/{id} -----------------------------------------------------------------


@pytest.mark.parametrize("job_id", ["img-nope", "img-0123?x", ".", "a\tb", "img-" + "0" * 24])
def test_a_path_id_that_is_not_a_job_id_is_a_404_before_any_look(job_id):
    world = World()
    for call in (world.status, world.cancel):
        status, body, _ = call(job_id)
        assert status == 404
        assert_envelope(body, "not_found", "id")
    assert world.client.calls == []


def test_an_unknown_job_and_another_callers_job_are_the_same_404():
    world = World(IMAGE_TRUST_PRINCIPAL_HEADER="true")
    _, job, _ = world.start(headers={"x-ms-client-principal-id": "alice"})
    unknown = job["id"].rsplit("-", 1)[0] + "-7"
    for job_id, caller in ((unknown, "alice"), (job["id"], "mallory")):
        for call in (world.status, world.cancel):
            status, body, _ = call(job_id, headers={"x-ms-client-principal-id": caller})
            assert status == 404
            assert_envelope(body, "not_found", "id")
    status, _, _ = world.status(job["id"], headers={"x-ms-client-principal-id": "alice"})
    assert status == 202


def test_a_running_job_reads_its_status_and_progress_in_one_round_each():
    world = World()
    _, job, _ = world.start()
    job_id = job["id"]
    created = world.client.instances[job_id]["input"]["created_at"]
    world.client.instances[job_id]["customStatus"] = {"phase": "generating", "attempt": 1}
    preview = {"index": 0, "partial_image_index": 0, "blob": f"{job_id}/p.png", "bytes": 5}
    progress = {
        "v": 1,
        "attempt": 1,
        "job_created_at": created,
        "started_at": "2026-05-07T13:46:13.000Z",
        "previews": [{**preview, "stored": True}],
    }
    world.store.put(
        name=f"{job_id}/progress-1.json", data=json.dumps(progress).encode(), content_type="j"
    )
    world.client.calls.clear()
    world.store.get_calls.clear()
    status, body, headers = world.status(job_id)
    assert status == 202
    assert headers["Retry-After"] == "2"
    assert body["state"] == "preview_available"
    assert body["previews"] == [{"index": 0, "url": f"memory://{job_id}/p.png?ttl=3600"}]
    assert body["timings"]["requestStartedAt"] == "2026-05-07T13:46:13.000Z"
    assert body["createdAt"] == "2026-05-07T13:46:12.000Z"
    assert "prompt" not in body["request"]
    assert world.client.calls == [("get_status", job_id)]
    assert world.store.get_calls == [f"{job_id}/progress-1.json"]


def test_a_later_attempts_progress_is_read_and_an_earlier_jobs_is_ignored():
    world = World()
    _, job, _ = world.start()
    job_id = job["id"]
    world.client.instances[job_id]["customStatus"] = {"phase": "generating", "attempt": 2}
    stale = {
        "v": 1,
        "attempt": 2,
        "job_created_at": "2020-01-01T00:00:00.000Z",
        "started_at": None,
        "final_received": True,
    }
    world.store.put(
        name=f"{job_id}/progress-2.json", data=json.dumps(stale).encode(), content_type="j"
    )
    _, body, _ = world.status(job_id)
    assert body["state"] == "queued"  # not the earlier job's "final received"
    assert f"{job_id}/progress-2.json" in world.store.get_calls


def test_the_prompt_is_shown_only_when_asked_for():
    world = World()
    _, job, _ = world.start()
    _, body, _ = world.status(job["id"], params={"includePrompt": "true"})
    assert body["request"]["prompt"] == "a red apple"


def test_a_saved_job_is_a_200_with_its_links_and_no_retry_after():
    world = World()
    _, job, _ = world.start()
    world.finish(job["id"], saved_output(job["id"], cost_usd=0.01))
    status, body, headers = world.status(job["id"])
    assert status == 200
    assert "Retry-After" not in headers
    assert body["state"] == "saved"
    assert body["image"]["url"] == f"memory://{job['id']}/image.png?ttl=3600"
    assert body["metadataUrl"] == f"memory://{job['id']}/metadata.json?ttl=3600"
    assert body["costUsd"] == 0.01


def test_a_job_whose_record_could_not_be_written_still_answers_its_outcome():
    world = World()
    _, job, _ = world.start()
    output = saved_output(job["id"], metadata_blob=None, metadata_error="not written")
    world.finish(job["id"], output)
    status, body, _ = world.status(job["id"])
    assert status == 200
    assert body["metadataUrl"] is None
    assert body["image"]["url"] == f"memory://{job['id']}/image.png?ttl=3600"


def test_an_outcome_of_the_older_unversioned_layout_still_answers():
    world = World()
    _, job, _ = world.start()
    old_error = {
        "layer": "route",
        "kind": "rejected",
        "httpStatus": 400,
        "type": "t",
        "code": "moderation_blocked",
        "message": "m",
        "requestId": "r",
        "timeout": None,
    }
    world.finish(
        job["id"],
        {"state": "failed", "attempt": 1, "failure": "returned_error", "error": old_error},
    )
    status, body, _ = world.status(job["id"])
    assert status == 200
    assert body["state"] == "failed"
    assert body["error"]["code"] == "moderation_blocked"
    assert body["error"]["httpStatus"] == 400


def test_a_record_of_a_newer_version_is_a_503_not_a_guess():
    world = World()
    _, job, _ = world.start()
    world.finish(job["id"], {"v": 99, "state": "saved", "attempt": 1})
    status, body, _ = world.status(job["id"])
    assert status == 503
    assert_envelope(body, "record_unreadable", "service")


@pytest.mark.parametrize("fault", ["error_answers", "down"])
def test_a_status_poll_while_the_store_fails_is_a_prompt_503(fault):
    world = World()
    _, job, _ = world.start()
    setattr(world.client, fault, True)
    status, body, headers = world.status(job["id"])
    assert status == 503
    assert_envelope(body, "store_error", "service")
    assert headers["Retry-After"] == "5"


def test_a_status_poll_while_blob_is_down_is_a_503():
    world = World()
    _, job, _ = world.start()
    world.client.instances[job["id"]]["customStatus"] = {"phase": "generating", "attempt": 1}
    world.store.down = True
    status, body, _ = world.status(job["id"])
    assert status == 503
    assert_envelope(body, "store_error", "service")


@pytest.mark.parametrize(
    "custom",
    [None, {"phase": "queued", "attempt": 1, "queue_position": 3}],
    ids=["not-started", "at-the-route"],
)
def test_a_queued_jobs_poll_reads_no_blob_and_answers_while_blob_is_down(custom):
    # A job not yet started, or waiting for its route's admission, has no progress record for
    # its attempt: its poll is the durable look alone, so a busy route's queue costs no Blob.
    world = World()
    _, job, _ = world.start()
    world.client.instances[job["id"]]["customStatus"] = custom
    world.store.get_calls.clear()
    world.store.down = True
    status, body, headers = world.status(job["id"])
    assert status == 202
    assert body["state"] == "queued"
    assert "Retry-After" in headers
    assert world.store.get_calls == []


# --- POST /api/images/{id}/cancel ---------------------------------------------------------


def test_a_running_job_is_cancelled_marker_first_then_the_event():
    world = World()
    _, job, _ = world.start()
    status, body, headers = world.cancel(job["id"])
    assert status == 202
    assert body == {
        "id": job["id"],
        "state": "cancelling",
        "statusUrl": f"{BASE}/{job['id']}",
        "beforeSend": True,  # no sent mark yet: the attempt will see the marker and stop
    }
    assert headers["Location"] == f"{BASE}/{job['id']}"
    marker = json.loads(world.store.blobs[f"{job['id']}/cancel.json"][0])
    assert marker["job_created_at"] == world.client.instances[job["id"]]["input"]["created_at"]
    assert marker["v"] == 1
    assert world.client.events == [(job["id"], "cancel")]


def test_an_ended_job_answers_its_final_state_and_is_left_alone():
    world = World()
    _, job, _ = world.start()
    world.finish(job["id"], saved_output(job["id"]))
    status, body, _ = world.cancel(job["id"])
    assert (status, body["state"]) == (200, "saved")
    assert f"{job['id']}/cancel.json" not in world.store.put_calls
    assert world.client.events == []


def test_a_job_that_ends_between_the_look_and_the_event_answers_its_end():
    world = World()
    _, job, _ = world.start()
    world.client.before_event = lambda job_id: world.finish(job_id, saved_output(job_id))
    status, body, _ = world.cancel(job["id"])
    assert (status, body["state"]) == (200, "saved")


def test_a_refused_event_for_a_running_job_is_a_503():
    world = World()
    _, job, _ = world.start()
    world.client.refuse_events = True
    status, body, _ = world.cancel(job["id"])
    assert status == 503
    assert_envelope(body, "store_error", "service")


def test_a_cancel_whose_marker_cannot_be_written_is_a_503_and_raises_no_event():
    world = World()
    _, job, _ = world.start()
    world.store.down = True
    status, body, _ = world.cancel(job["id"])
    assert status == 503
    assert_envelope(body, "store_error", "service")
    assert world.client.events == []


def test_the_caller_digest_not_the_caller_is_kept_on_the_job():
    world = World(IMAGE_TRUST_PRINCIPAL_HEADER="true")
    _, job, _ = world.start(headers={"x-ms-client-principal-id": "alice@example.com"})
    kept = world.client.instances[job["id"]]["input"]["caller"]
    assert kept == caller_digest(world.settings.job_id_secret, "alice@example.com")
    assert "alice" not in json.dumps(world.client.instances[job["id"]]["input"])


def test_a_cancel_after_the_sent_mark_says_the_request_may_be_at_the_route():
    world = World()
    _, job, _ = world.start()
    job_id = job["id"]
    created = world.client.instances[job_id]["input"]["created_at"]
    world.client.instances[job_id]["customStatus"] = {"phase": "generating", "attempt": 1}
    sent = {"v": 1, "attempt": 1, "job_created_at": created, "started_at": None, "sent": True}
    world.store.put(
        name=f"{job_id}/progress-1.json", data=json.dumps(sent).encode(), content_type="j"
    )
    status, body, _ = world.cancel(job_id)
    assert (status, body["state"], body["beforeSend"]) == (202, "cancelling", False)


def test_a_keys_answer_outlives_a_purge_of_the_durable_history():
    world = World()
    key = {"Idempotency-Key": "order-7"}
    _, first, _ = world.start(headers=key)
    world.finish(first["id"], saved_output(first["id"]))
    del world.client.instances[first["id"]]  # history purged; metadata.json and the key stay
    status, again, headers = world.start(headers=key)
    assert (status, again["id"], again["state"]) == (202, first["id"], "saved")
    assert headers["Idempotent-Replayed"] == "true"
    assert world.client.count("start_new") == 1
    status, body, _ = world.start({**BODY, "quality": "high"}, headers=key)
    assert status == 409
    assert_envelope(body, "idempotency_key_reused", "Idempotency-Key")


def test_a_keyed_start_reads_and_writes_the_keys_record_and_nothing_names_the_key():
    world = World()
    _, job, _ = world.start(headers={"Idempotency-Key": "order-secret-42"})
    records = [name for name in world.store.blobs if name.startswith("keys/")]
    assert records == [f"keys/{job['id'].rsplit('-', 1)[0]}.json"]
    assert b"order-secret-42" not in world.store.blobs[records[0]][0]
    # A keyed start looks once more after its start: on Azure's backend a concurrent start of
    # the same id can also report success while the other one runs.
    assert world.client.count("get_status") == 2
    assert world.client.count("start_new") == 1


def test_a_keys_record_of_a_newer_version_is_a_503_not_a_second_job():
    world = World()
    key = {"Idempotency-Key": "order-8"}
    world.start(headers=key)
    name = next(n for n in world.store.blobs if n.startswith("keys/"))
    world.store.put(name=name, data=b'{"v": 9}', content_type="j")
    status, body, _ = world.start(headers=key)
    assert status == 503
    assert_envelope(body, "record_unreadable", "service")


def test_a_keys_record_past_the_window_starts_a_new_job():
    world = World()
    key = {"Idempotency-Key": "order-9"}
    _, first, _ = world.start(headers=key)
    world.finish(first["id"], saved_output(first["id"]))
    del world.client.instances[first["id"]]
    world.now = NOW + timedelta(days=2)
    status, later, _ = world.start(headers=key)
    assert status == 202
    assert later["id"] != first["id"]
    assert world.client.count("start_new") == 2


def test_a_body_declared_as_something_other_than_json_is_a_415():
    world = World()
    req = request("POST", BASE, body=BODY, headers={"Content-Type": "text/plain"})
    status, body, _ = world.call(handlers.start_job, req)
    assert status == 415
    assert_envelope(body, "unsupported_media_type", "Content-Type")
    charset = request(
        "POST", BASE, body=BODY, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert world.call(handlers.start_job, charset)[0] == 202


@pytest.mark.parametrize("principal", ["a\udcff", "tab\there", "x" * 300])
def test_a_principal_header_that_is_no_principal_is_a_400_on_every_endpoint(principal):
    world = World(IMAGE_TRUST_PRINCIPAL_HEADER="true")
    _, job, _ = world.start(headers={"x-ms-client-principal-id": "alice"})
    headers = {"x-ms-client-principal-id": principal}
    for status, body, _ in (
        world.start(headers=headers),
        world.status(job["id"], headers=headers),
        world.cancel(job["id"], headers=headers),
    ):
        assert status == 400
        assert_envelope(body, "invalid_value", "x-ms-client-principal-id")


def test_urls_keep_the_callers_code_and_follow_the_public_base_url():
    world = World()
    _, body, headers = world.start(params={"code": "key/with+odd=chars"})
    assert body["statusUrl"] == f"{BASE}/{body['id']}?code=key%2Fwith%2Bodd%3Dchars"
    assert headers["Location"] == body["statusUrl"]
    public = World(IMAGE_PUBLIC_BASE_URL="https://jobs.example.com/api/")
    req = request("POST", "http://internal-host:7071/api/images", body=BODY)
    _, body, _ = public.call(handlers.start_job, req)
    assert body["statusUrl"] == f"https://jobs.example.com/api/images/{body['id']}"


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("DELETE", "images", 405, "GET, POST"),
        ("DELETE", "images/img-x-1", 405, "GET"),
        ("GET", "images/img-x-1/cancel", 405, "POST"),
        ("GET", "nothing/here", 404, None),
        ("POST", "", 404, None),
    ],
)
def test_what_no_route_takes_is_a_json_404_or_405(method, path, status, allow):
    req = func.HttpRequest(
        method=method,
        url=f"http://127.0.0.1:7071/api/{path}",
        headers={},
        params={},
        route_params={"path": path},
        body=b"",
    )

    async def run() -> func.HttpResponse:
        try:
            return await handlers.unmatched(req)
        except Exception as exc:
            return answer_for(exc)

    response = asyncio.run(run())
    assert response.status_code == status
    assert json.loads(response.get_body())["error"]["code"]
    assert response.headers.get("Allow") == allow


def test_a_callers_jobs_are_listed_newest_first_a_page_at_a_time():
    world = World(IMAGE_TRUST_PRINCIPAL_HEADER="true")
    alice = {"x-ms-client-principal-id": "alice"}
    started = []
    for minute, quality in enumerate(("low", "medium", "high")):
        world.now = NOW + timedelta(minutes=minute)
        started.append(world.start({**BODY, "quality": quality}, headers=alice)[1]["id"])
    world.start(headers={"x-ms-client-principal-id": "bob"})

    def page(**params: str) -> tuple[int, dict[str, Any]]:
        req = request("GET", BASE, headers=alice, params=params)
        status, body, _ = world.call(handlers.list_jobs, req)
        return status, body

    status, first = page(limit="2")
    assert status == 200
    assert [item["id"] for item in first["items"]] == started[::-1][:2]
    assert first["items"][0]["state"] == "queued"
    assert first["items"][0]["statusUrl"] == f"{BASE}/{started[2]}"
    assert first["next"].startswith(f"{BASE}?limit=2&after=")
    token = first["next"].split("after=", 1)[1]
    _, second = page(limit="2", after=unquote(token))
    assert [item["id"] for item in second["items"]] == [started[0]]
    assert second["next"] is None


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1e3"])
def test_a_bad_page_size_is_a_400(limit):
    world = World(IMAGE_SHARED_CALLER_MAY_LIST="true")
    status, body, _ = world.call(handlers.list_jobs, request("GET", BASE, params={"limit": limit}))
    assert status == 400
    assert_envelope(body, "invalid_value", "limit")


def test_a_progress_record_of_a_newer_version_is_a_503_not_queued():
    world = World()
    _, job, _ = world.start()
    job_id = job["id"]
    world.client.instances[job_id]["customStatus"] = {"phase": "generating", "attempt": 1}
    world.store.put(name=f"{job_id}/progress-1.json", data=b'{"v": 7}', content_type="j")
    status, body, _ = world.status(job_id)
    assert status == 503
    assert_envelope(body, "record_unreadable", "service")


@pytest.mark.parametrize("body", [{"message": "Internal error"}, "an error page", {"x": 1}])
def test_a_status_answer_that_is_not_an_empty_404_is_never_taken_for_absent(body):
    world = World()
    world.client.answer_override = body
    status, answer, _ = world.start()
    assert status == 503
    assert_envelope(answer, "store_error", "service")
    assert world.client.count("start_new") == 0


@pytest.mark.parametrize("limit", ["\u00b2", "\u0661"])
def test_a_page_size_in_other_digits_is_a_400_not_a_500(limit):
    world = World(IMAGE_SHARED_CALLER_MAY_LIST="true")
    status, body, _ = world.call(handlers.list_jobs, request("GET", BASE, params={"limit": limit}))
    assert status == 400
    assert_envelope(body, "invalid_value", "limit")


def test_a_keyed_start_that_silently_lost_a_race_answers_the_winner_or_a_409():
    world = World()
    key = {"Idempotency-Key": "order-race"}
    other = dict(BODY, quality="high")

    def winner_runs(job_id: str) -> None:
        # The backend accepted our start but runs the other submit's input.
        world.client.silent_starts = True
        world.client.put(job_id, winner_input[0], status="Running")

    # The winner's input: what the same key with another body would have started.
    probe = World()
    probe.now = NOW - timedelta(milliseconds=3)  # the other submit, a moment earlier
    probe.start(other, headers=key)
    winner_input = [next(iter(probe.client.instances.values()))["input"]]
    world.client.before_start = winner_runs
    status, body, _ = world.start(headers=key)
    assert status == 409  # the job under the key runs another body: never answered as ours
    assert_envelope(body, "idempotency_key_reused", "Idempotency-Key")
    assert not [n for n in world.store.blobs if n.startswith("keys/")]  # no record for a loser


def test_the_shared_default_caller_may_not_list_unless_a_setting_says_so():
    world = World()
    world.start()
    status, body, _ = world.call(handlers.list_jobs, request("GET", BASE))
    assert status == 403
    assert_envelope(body, "identity_required", "x-ms-client-principal-id")
    allowed = World(IMAGE_SHARED_CALLER_MAY_LIST="true")
    _, job, _ = allowed.start()
    status, body, _ = allowed.call(handlers.list_jobs, request("GET", BASE))
    assert status == 200
    assert [item["id"] for item in body["items"]] == [job["id"]]


def test_a_job_whose_history_was_purged_answers_its_caller_from_its_record():
    world = World(IMAGE_TRUST_PRINCIPAL_HEADER="true")
    alice = {"x-ms-client-principal-id": "alice", "Idempotency-Key": "order-11"}
    _, job, _ = world.start(headers=alice)
    world.finish(job["id"], saved_output(job["id"], cost_usd=0.02))
    del world.client.instances[job["id"]]  # history purged; metadata.json stays
    # The key still answers with the job, and its status URL works.
    _, again, _ = world.start(headers=alice)
    assert again["id"] == job["id"]
    status, body, _ = world.status(job["id"], headers=alice)
    assert status == 200
    assert body["historyPurged"] is True
    assert body["state"] == "saved"
    assert body["image"]["url"] == f"memory://{job['id']}/image.png?ttl=3600"
    assert body["costUsd"] == 0.02
    assert "prompt" not in body["request"]
    # Still nobody else's.
    status, other, _ = world.status(job["id"], headers={"x-ms-client-principal-id": "mallory"})
    assert status == 404
    assert_envelope(other, "not_found", "id")
