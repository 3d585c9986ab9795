"""GET /api/images/{id}/evidence, called with the same fakes as the other handlers: caller-
checked as the status is, a partial packet while the job runs, the whole one from metadata.json
once it ended (also after a purge), a 503 rather than a guess while storage fails."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from http_api import evidence, handlers

from .test_http_handlers import BASE, World, assert_envelope, request, saved_output

ALICE = {"x-ms-client-principal-id": "alice"}


def packet(world: World, job_id: str, **kwargs: Any) -> tuple[int, dict[str, Any], Any]:
    url = f"{BASE}/{job_id}/evidence"
    return world.call(evidence.get_evidence, request("GET", url, job_id=job_id, **kwargs))


def test_a_running_job_answers_a_partial_packet():
    world = World()
    _, job, _ = world.start()
    status, body, headers = packet(world, job["id"])
    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    assert body["id"] == job["id"]
    assert body["complete"] is False
    assert body["state"] == "queued"
    assert body["request"]["promptChars"] == len("a red apple")
    assert body["route"]["name"] == "azure"
    assert "a red apple" not in json.dumps(body)


def test_an_ended_job_answers_the_whole_packet_from_its_metadata():
    world = World()
    _, job, _ = world.start()
    world.finish(job["id"], saved_output(job["id"], cost_usd=0.01))
    world.store.get_calls.clear()
    status, body, _ = packet(world, job["id"])
    assert status == 200
    assert body["complete"] is True
    assert body["state"] == "saved"
    assert body["cost"] == {"usd": 0.01, "estimated": False}
    assert body["moment"]["finishedAt"] == "2026-05-07T13:46:12.000Z"
    assert f"{job['id']}/metadata.json" in world.store.get_calls
    text = json.dumps(body)
    assert "a red apple" not in text
    assert "127.0.0.1" not in text  # the route's host and the request's URL are addresses
    assert "memory://" not in text  # no link to any blob


def test_an_unknown_job_and_another_callers_job_are_the_same_404():
    world = World(IMAGE_TRUST_PRINCIPAL_HEADER="true")
    _, job, _ = world.start(headers=ALICE)
    world.finish(job["id"], saved_output(job["id"]))
    unknown = job["id"].rsplit("-", 1)[0] + "-7"
    for job_id, caller in ((unknown, "alice"), (job["id"], "mallory"), ("not-an-id", "alice")):
        status, body, _ = packet(world, job_id, headers={"x-ms-client-principal-id": caller})
        assert status == 404
        assert_envelope(body, "not_found", "id")
    assert packet(world, job["id"], headers=ALICE)[0] == 200


def test_a_principal_header_easy_auth_did_not_set_is_a_400():
    world = World(IMAGE_TRUST_PRINCIPAL_HEADER="true")
    _, job, _ = world.start(headers=ALICE)
    status, body, _ = packet(world, job["id"], headers={"x-ms-client-principal-id": "a\x00b"})
    assert status == 400
    assert_envelope(body, "invalid_value", "x-ms-client-principal-id")


def test_a_purged_job_answers_its_caller_from_its_record_only():
    world = World(IMAGE_TRUST_PRINCIPAL_HEADER="true")
    _, job, _ = world.start(headers=ALICE)
    world.finish(job["id"], saved_output(job["id"]))
    del world.client.instances[job["id"]]
    status, body, _ = packet(world, job["id"], headers=ALICE)
    assert status == 200
    assert body["state"] == "saved"
    assert body["complete"] is True
    assert body["moment"]["createdAt"] is None
    mallory = {"x-ms-client-principal-id": "mallory"}
    assert packet(world, job["id"], headers=mallory)[0] == 404


def test_storage_failing_is_a_503_not_a_guess():
    world = World()
    _, job, _ = world.start()
    world.finish(job["id"], saved_output(job["id"]))
    world.store.down = True
    status, body, headers = packet(world, job["id"])
    assert status == 503
    assert_envelope(body, "store_error", "service")
    assert headers["Retry-After"] == "5"


def test_a_metadata_record_of_a_newer_version_is_a_503():
    world = World()
    _, job, _ = world.start()
    world.finish(job["id"], saved_output(job["id"]))
    world.store.put(
        name=f"{job['id']}/metadata.json", data=json.dumps({"v": 99}).encode(), content_type="j"
    )
    status, body, _ = packet(world, job["id"])
    assert status == 503
    assert_envelope(body, "record_unreadable", "service")


def test_the_route_key_is_taken_out_of_what_the_route_returned(monkeypatch):
    key = "azkey-5f1c0e2d9b8a7766aa"
    monkeypatch.setenv("IMAGE_ROUTE_AZURE_KEY", key)  # the setting the route names
    world = World()
    _, job, _ = world.start()
    error = {
        "kind": "rejected",
        "layer": "route",
        "message": f"key {key} and prompt 'a red apple'",
        "sent": True,
        "http_status": 400,
    }
    output = {"v": 1, "state": "failed", "attempt": 1, "failure": "returned_error"}
    world.finish(job["id"], {**output, "error": error, "metadata_blob": None})
    status, body, _ = packet(world, job["id"])
    assert status == 200
    message = body["returned"]["error"]["message"]
    assert "azkey" not in message
    assert "a red apple" not in message
    assert "[redacted key]" in message
    assert "[redacted prompt]" in message


def test_the_evidence_path_takes_get_only():
    path = "images/img-0123456789abcdef01234567-1/evidence"
    req = func.HttpRequest(
        method="POST", url=f"{BASE}/x", headers={}, route_params={"path": path}, body=b""
    )
    status, body, headers = World().call(_unmatched, req)
    assert status == 405
    assert headers["Allow"] == "GET"
    assert body["error"]["code"] == "method_not_allowed"


async def _unmatched(req: func.HttpRequest, *_: Any) -> func.HttpResponse:
    return await handlers.unmatched(req)
