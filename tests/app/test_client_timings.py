"""POST /api/images/{id}/client-timings with the hand-written fakes: the report lands in
metadata.json's ``client`` section and nowhere else, every bad body is a 400 naming the field
before any look, the caller is checked as the status endpoint checks it, and the
read-modify-write keeps another writer's change (ETag condition) or says 503, never guesses."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import azure.functions as func
import pytest

from http_api import client_timings
from http_api.durable_jobs import DurableJobs
from http_api.errors import answer_for
from rules.client_timings import MAX_MS, ClientTimings
from storage.protocol import metadata_name
from tests.fakes import AsyncInMemoryStore

from .test_http_handlers import BASE, World, assert_envelope, request, saved_output

ALICE = {"x-ms-client-principal-id": "alice"}


def report(
    world: World,
    job_id: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], Any]:
    body = {"downloadMs": 123.4, "renderMs": 45.6} if body is None and raw is None else body
    url = f"{BASE}/{job_id}/client-timings"
    return world.call(
        client_timings.report,
        request("POST", url, body=body, raw=raw, headers=headers, job_id=job_id),
    )


def ended_job(world: World, **start: Any) -> str:
    _, job, _ = world.start(**start)
    world.finish(job["id"], saved_output(job["id"]))
    return str(job["id"])


def metadata(world: World, job_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(world.store.blobs[metadata_name(job_id)][0])
    return data


def test_a_report_lands_in_metadata_json_as_its_client_section_and_nothing_else_changes():
    world = World()
    job_id = ended_job(world)
    before = metadata(world, job_id)
    status, body, _ = report(world, job_id)
    assert status == 200
    reported_at = "2026-05-07T13:46:12.000Z"
    assert body == {
        "id": job_id,
        "client": {"downloadMs": 123, "renderMs": 46, "reportedAt": reported_at},
    }
    after = metadata(world, job_id)
    section = after.pop("client")
    assert section == {"download_ms": 123, "render_ms": 46, "reported_at": reported_at}
    assert ClientTimings.from_json(section) == ClientTimings(123, 46, reported_at)
    assert after == before
    # Written as the finish activity writes it, and as JSON.
    assert world.store.blobs[metadata_name(job_id)][1] == "application/json"


def test_the_latest_report_wins():
    world = World()
    job_id = ended_job(world)
    report(world, job_id)
    status, _, _ = report(world, job_id, {"downloadMs": 7, "renderMs": 0})
    assert status == 200
    assert metadata(world, job_id)["client"]["download_ms"] == 7
    assert metadata(world, job_id)["client"]["render_ms"] == 0


@pytest.mark.parametrize(
    ("body", "raw", "field", "code"),
    [
        (None, b"{not json", "body", "invalid_json"),
        ([1, 2], None, "body", "invalid_type"),
        ({"downloadMs": 1}, None, "renderMs", "missing"),
        ({"renderMs": 1}, None, "downloadMs", "missing"),
        ({"downloadMs": True, "renderMs": 1}, None, "downloadMs", "invalid_type"),
        ({"downloadMs": "12", "renderMs": 1}, None, "downloadMs", "invalid_type"),
        ({"downloadMs": None, "renderMs": 1}, None, "downloadMs", "invalid_type"),
        ({"downloadMs": 1, "renderMs": -0.5}, None, "renderMs", "invalid_value"),
        ({"downloadMs": MAX_MS + 1, "renderMs": 1}, None, "downloadMs", "invalid_value"),
        (None, b'{"downloadMs": NaN, "renderMs": 1}', "body", "invalid_json"),
        (None, b'{"downloadMs": 1, "renderMs": Infinity}', "body", "invalid_json"),
        ({"downloadMs": 1, "renderMs": 1, "paintMs": 2}, None, "paintMs", "unknown_field"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field_before_any_look(body, raw, field, code):
    world = World()
    job_id = ended_job(world)
    world.store.get_calls.clear()
    world.client.calls.clear()
    status, answer, _ = report(world, job_id, body, raw=raw)
    assert status == 400
    assert_envelope(answer, code, field)
    assert world.store.get_calls == []
    assert world.client.calls == []
    assert "client" not in metadata(world, job_id)


def test_the_bounds_themselves_are_taken():
    world = World()
    job_id = ended_job(world)
    status, body, _ = report(world, job_id, {"downloadMs": 0, "renderMs": MAX_MS})
    assert status == 200
    assert body["client"]["renderMs"] == MAX_MS


def test_a_body_declared_as_something_else_is_a_415():
    world = World()
    job_id = ended_job(world)
    status, body, _ = report(world, job_id, headers={"content-type": "text/plain"})
    assert status == 415
    assert_envelope(body, "unsupported_media_type", "Content-Type")


@pytest.mark.parametrize("job_id", ["", "nope", "img-../../x-1"])
def test_a_path_id_that_is_not_a_job_id_is_a_404_before_any_look(job_id):
    world = World()
    status, body, _ = report(world, job_id)
    assert status == 404
    assert_envelope(body, "not_found", "id")
    assert world.store.get_calls == []
    assert world.client.calls == []


def test_an_unknown_job_and_another_callers_job_are_the_same_404_and_nothing_is_written():
    world = World(IMAGE_TRUST_PRINCIPAL_HEADER="true")
    job_id = ended_job(world, headers=ALICE)
    before = world.store.blobs[metadata_name(job_id)]
    unknown = job_id.rsplit("-", 1)[0] + "-7"
    for target, caller in ((unknown, "alice"), (job_id, "mallory")):
        status, body, _ = report(world, target, headers={"x-ms-client-principal-id": caller})
        assert status == 404
        assert_envelope(body, "not_found", "id")
    assert world.store.blobs[metadata_name(job_id)] == before
    status, _, _ = report(world, job_id, headers=ALICE)
    assert status == 200


def test_a_running_job_has_no_metadata_yet_a_409():
    world = World()
    _, job, _ = world.start()
    status, body, _ = report(world, job["id"])
    assert status == 409
    assert_envelope(body, "job_not_ended", "id")
    assert metadata_name(job["id"]) not in world.store.blobs


def test_a_job_whose_history_was_purged_still_takes_its_callers_report():
    world = World()
    job_id = ended_job(world)
    del world.client.instances[job_id]
    status, _, _ = report(world, job_id)
    assert status == 200
    assert metadata(world, job_id)["client"]["render_ms"] == 46


class RacingStore(AsyncInMemoryStore):
    """Another writer changes metadata.json between the report's read and its write, the first
    ``races`` times."""

    def __init__(self, world: World, races: int) -> None:
        super().__init__(world.store)
        self.races = races
        self.conditional_writes = 0

    async def put_if_unchanged(
        self, *, name: str, data: bytes, content_type: str, etag: str
    ) -> bool:
        self.conditional_writes += 1
        if self.races > 0:
            self.races -= 1
            record = json.loads(self.sync.blobs[name][0])
            record["other_writer"] = self.conditional_writes
            self.sync.put(name=name, data=json.dumps(record).encode(), content_type="j")
        return await super().put_if_unchanged(
            name=name, data=data, content_type=content_type, etag=etag
        )


def _report_with(
    world: World, store: AsyncInMemoryStore, job_id: str
) -> tuple[int, func.HttpResponse]:
    async def run() -> func.HttpResponse:
        req = request(
            "POST",
            f"{BASE}/{job_id}/client-timings",
            body={"downloadMs": 1, "renderMs": 2},
            job_id=job_id,
        )
        try:
            return await client_timings.report(
                req, DurableJobs(world.client), world.settings, store, lambda: world.now
            )
        except Exception as exc:
            return answer_for(exc)

    response = asyncio.run(run())
    return response.status_code, response


def test_a_write_in_between_is_read_again_and_kept():
    world = World()
    job_id = ended_job(world)
    store = RacingStore(world, races=1)
    status, _ = _report_with(world, store, job_id)
    assert status == 200
    assert store.conditional_writes == 2
    record = metadata(world, job_id)
    assert record["other_writer"] == 1  # the other writer's change survived
    assert record["client"]["render_ms"] == 2


def test_a_record_that_keeps_changing_is_a_503_not_a_blind_overwrite():
    world = World()
    job_id = ended_job(world)
    store = RacingStore(world, races=client_timings.MAX_WRITES)
    status, response = _report_with(world, store, job_id)
    assert status == 503
    assert response.headers["Retry-After"] == "5"
    assert json.loads(response.get_body())["error"]["code"] == "store_error"
    assert "client" not in metadata(world, job_id)


def test_blob_down_is_a_503():
    world = World()
    job_id = ended_job(world)
    world.store.down = True
    status, body, headers = report(world, job_id)
    assert status == 503
    assert_envelope(body, "store_error", "service")
    assert headers["Retry-After"] == "5"


def test_a_newer_metadata_version_is_refused_never_rewritten():
    world = World()
    job_id = ended_job(world)
    record = metadata(world, job_id)
    record["v"] = 99
    raw = json.dumps(record).encode()
    world.store.put(name=metadata_name(job_id), data=raw, content_type="application/json")
    status, body, _ = report(world, job_id)
    assert status == 503
    assert_envelope(body, "record_unreadable", "service")
    assert world.store.blobs[metadata_name(job_id)][0] == raw
