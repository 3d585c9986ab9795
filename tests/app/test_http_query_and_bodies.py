"""What a new user's first requests found: query parameters held to each endpoint's names and
boolean ones to true/false, strict JSON bodies, multipart framing, each endpoint's 415, page
tokens the list never handed out, and a Blob timeout named apart from the job store's."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest

import wiring
from http_api import batches, blueprint, client_timings, evidence, handlers
from http_api.errors import answer_for, blob_call, blob_timed
from tests.fakes import AsyncInMemoryStore, InMemoryStore

from .test_http_answers import BATCHES, call, manifest, post_batch
from .test_http_handlers import BASE, BODY, World, assert_envelope, request

LINE = {"custom_id": "sku-1", "prompt": "a red teapot", "quality": "low"}


@pytest.fixture
def batch_store(monkeypatch: pytest.MonkeyPatch) -> InMemoryStore:
    """The batches container (wiring.batch_store), in memory."""
    store = InMemoryStore()
    monkeypatch.setattr(wiring, "batch_store", lambda: store)
    return store


# --- query parameters -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "yes", "", "0", "no", "tru", " ", "on"])
def test_a_dry_run_that_is_not_true_or_false_is_a_400_and_starts_nothing(batch_store, value):
    world = World()
    status, body, _ = post_batch(world, manifest(LINE), dryRun=value)
    assert status == 400
    assert_envelope(body, "invalid_value", "dryRun")
    assert world.client.instances == {}
    assert batch_store.blobs == {}


@pytest.mark.parametrize("value", ["true", "TRUE", "True"])
def test_a_dry_run_true_in_any_case_starts_nothing(batch_store, value):
    world = World()
    status, body, _ = post_batch(world, manifest(LINE), dryRun=value)
    assert (status, body["dryRun"]) == (200, True)
    assert world.client.instances == {}


@pytest.mark.parametrize("value", ["false", "FALSE"])
def test_a_dry_run_false_in_any_case_starts_the_batch(batch_store, value):
    world = World()
    status, _, _ = post_batch(world, manifest(LINE), dryRun=value)
    assert status == 202
    assert len(world.client.instances) == 1


@pytest.mark.parametrize(
    ("name", "right"), [("dryrun", "dryRun"), ("DRYRUN", "dryRun"), ("Deadline", "deadline")]
)
def test_a_parameter_wrongly_cased_is_refused_naming_the_right_spelling(batch_store, name, right):
    world = World()
    status, body, _ = post_batch(world, manifest(LINE), **{name: "true"})
    assert status == 400
    assert_envelope(body, "unknown_parameter", name)
    assert repr(right) in body["error"]["message"]
    assert world.client.instances == {}


def test_an_unknown_parameter_is_refused_naming_what_the_endpoint_takes(batch_store):
    world = World()
    status, body, _ = post_batch(world, manifest(LINE), dry_run="true")
    assert status == 400
    assert_envelope(body, "unknown_parameter", "dry_run")
    assert "dryRun, deadline, route" in body["error"]["message"]
    assert world.client.instances == {}
    # The function key as a parameter is every endpoint's.
    assert post_batch(world, manifest(LINE), dryRun="true", code="k")[0] == 200


@pytest.mark.parametrize("value", ["1", "yes", "", "maybe"])
def test_include_prompt_that_is_not_true_or_false_is_a_400(value):
    world = World()
    _, job, _ = world.start()
    status, body, _ = world.status(job["id"], params={"includePrompt": value})
    assert status == 400
    assert_envelope(body, "invalid_value", "includePrompt")
    status, shown, _ = world.status(job["id"], params={"includePrompt": "TRUE"})
    assert (status, shown["request"]["prompt"]) == (202, BODY["prompt"])
    status, hidden, _ = world.status(job["id"], params={"includePrompt": "False"})
    assert status == 202
    assert "prompt" not in hidden["request"]


def test_every_endpoint_refuses_a_wrongly_cased_or_unknown_parameter(batch_store):
    world = World(IMAGE_SHARED_CALLER_MAY_LIST="true")
    _, job, _ = world.start()
    job_id = job["id"]
    calls: list[tuple[Any, func.HttpRequest, str]] = [
        (handlers.start_job, request("POST", BASE, body=BODY, params={"x": "1"}), "x"),
        (handlers.list_jobs, request("GET", BASE, params={"Limit": "2"}), "limit"),
        (handlers.list_jobs, request("GET", BASE, params={"AFTER": "t"}), "after"),
        (
            handlers.get_job,
            request("GET", f"{BASE}/{job_id}", job_id=job_id, params={"includeprompt": "true"}),
            "includePrompt",
        ),
        (
            handlers.cancel_job,
            request("POST", f"{BASE}/{job_id}/cancel", job_id=job_id, params={"force": "1"}),
            "",
        ),
        (
            evidence.get_evidence,
            request("GET", f"{BASE}/{job_id}/evidence", job_id=job_id, params={"Format": "md"}),
            "",
        ),
        (
            client_timings.report,
            request(
                "POST",
                f"{BASE}/{job_id}/client-timings",
                job_id=job_id,
                body={"downloadMs": 1, "renderMs": 1},
                params={"x": "1"},
            ),
            "",
        ),
        (handlers.list_routes, request("GET", BASE, params={"all": "true"}), ""),
    ]
    for handler, req, right in calls:
        status, body, _ = world.call(handler, req)
        assert status == 400, handler
        name = next(iter(req.params))
        assert_envelope(body, "unknown_parameter", name)
        if right:
            assert repr(right) in body["error"]["message"]
    for handler, tail in ((batches.get_batch, ""), (batches.cancel_batch, "/cancel")):
        req = func.HttpRequest(
            method="GET",
            url=f"{BATCHES}/bat-{'0' * 24}{tail}",
            params={"Id": "x"},
            route_params={"id": f"bat-{'0' * 24}"},
            body=b"",
        )
        status, body, _ = call(world, handler, req)
        assert (status, body["error"]["code"]) == (400, "unknown_parameter")


# --- bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b'{"prompt": "x", "prompt": "y"}', "'prompt' appears twice"),
        (b'{"prompt": "x", "n": NaN}', "NaN"),
        (b'{"prompt": "x", "n": Infinity}', "Infinity"),
        (b'{"prompt": "x", "n": -Infinity}', "-Infinity"),
        (b'{"prompt": "x", "route": {"a": 1, "a": 2}}', "'a' appears twice"),
    ],
)
def test_json_that_strict_json_has_not_is_invalid_json_naming_the_problem(raw, named):
    world = World()
    status, body, _ = world.call(handlers.start_job, request("POST", BASE, raw=raw))
    assert status == 400
    assert_envelope(body, "invalid_json", "body")
    assert named in body["error"]["message"]
    assert world.client.count("start_new") == 0


def test_a_batch_json_body_with_a_repeated_key_is_invalid_json(batch_store):
    world = World()
    raw = b'{"items": [], "items": [{"custom_id": "a", "prompt": "p"}]}'
    req = func.HttpRequest(
        method="POST", url=BATCHES, headers={}, params={}, route_params={}, body=raw
    )
    status, body, _ = call(world, batches.start_batch, req)
    assert status == 400
    assert_envelope(body, "invalid_json", "body")
    assert "'items' appears twice" in body["error"]["message"]


@pytest.mark.parametrize(
    ("content_type", "raw", "field"),
    [
        ("multipart/form-data; boundary=xyz", b"garbage", "body"),
        ("multipart/form-data", b"garbage", "Content-Type"),
        # Cut short: no closing delimiter.
        (
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nhello\r\n',
            "body",
        ),
        # Framed by another boundary than the one declared.
        (
            "multipart/form-data; boundary=abc",
            b'--xyz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nhello\r\n--xyz--\r\n',
            "body",
        ),
        ("multipart/form-data; boundary=xyz", b"--xyz--\r\n", "body"),
    ],
)
def test_a_multipart_body_that_cannot_be_framed_is_invalid_multipart(content_type, raw, field):
    world = World()
    req = request("POST", BASE, raw=raw, headers={"Content-Type": content_type})
    status, body, _ = world.call(handlers.start_job, req)
    assert status == 400
    assert_envelope(body, "invalid_multipart", field)


def test_a_framed_multipart_body_still_reads():
    world = World()
    raw = b'--xyz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nhello\r\n--xyz--\r\n'
    headers = {"Content-Type": 'multipart/form-data; boundary="xyz"'}
    assert world.call(handlers.start_job, request("POST", BASE, raw=raw, headers=headers))[0] == 202


def test_each_endpoints_415_names_what_it_takes(batch_store):
    world = World()
    _, job, _ = world.start()
    headers = {"Content-Type": "text/csv"}
    status, image, _ = world.call(
        handlers.start_job, request("POST", BASE, body=BODY, headers=headers)
    )
    assert status == 415
    assert "multipart/form-data" in image["error"]["message"]
    req = request(
        "POST",
        f"{BASE}/{job['id']}/client-timings",
        job_id=job["id"],
        body={"downloadMs": 1, "renderMs": 1},
        headers=headers,
    )
    status, timings, _ = world.call(client_timings.report, req)
    assert status == 415
    assert "application/json" in timings["error"]["message"]
    assert "multipart" not in timings["error"]["message"]
    req = func.HttpRequest(
        method="POST", url=BATCHES, headers=headers, params={}, route_params={}, body=b"x"
    )
    status, batch, _ = call(world, batches.start_batch, req)
    assert status == 415
    for media in ("application/json", "application/jsonl", "application/x-ndjson", "text/plain"):
        assert media in batch["error"]["message"]
    assert "multipart" not in batch["error"]["message"]


# --- page tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "after", ["garbage", "", "x" * 5000, "p1.", "p1.AAAA.Z2FyYmFnZQ", "idx/abc/0001", "p1.!!.!!"]
)
def test_a_page_token_the_list_never_handed_out_is_a_400_before_any_blob_call(after):
    world = World(IMAGE_SHARED_CALLER_MAY_LIST="true")
    world.start()
    status, body, _ = world.call(handlers.list_jobs, request("GET", BASE, params={"after": after}))
    assert status == 400
    assert_envelope(body, "invalid_value", "after")


def test_a_page_token_is_this_callers_own():
    world = World(IMAGE_TRUST_PRINCIPAL_HEADER="true")
    alice = {"x-ms-client-principal-id": "alice"}
    bob = {"x-ms-client-principal-id": "bob"}
    for quality in ("low", "medium"):
        world.start({**BODY, "quality": quality}, headers=alice)
    status, first, _ = world.call(
        handlers.list_jobs, request("GET", BASE, headers=alice, params={"limit": "1"})
    )
    assert status == 200
    assert first["next"]
    token = parse_qs(urlsplit(first["next"]).query)["after"][0]
    mine = request("GET", BASE, headers=alice, params={"limit": "1", "after": token})
    assert world.call(handlers.list_jobs, mine)[0] == 200
    theirs = request("GET", BASE, headers=bob, params={"limit": "1", "after": token})
    status, body, _ = world.call(handlers.list_jobs, theirs)
    assert (status, body["error"]["field"]) == (400, "after")


# --- which store did not answer -------------------------------------------------------------


class HangingStore(AsyncInMemoryStore):
    """Blob that does not answer (Azurite paused with kill -STOP)."""

    async def get(self, *, name: str) -> bytes | None:
        await asyncio.sleep(30)
        return None

    async def list_page(
        self, *, prefix: str, limit: int, after: str | None
    ) -> tuple[list[str], str | None]:
        await asyncio.sleep(30)
        return [], None


def run_with(world: World, handler: Any, req: func.HttpRequest, store: Any) -> tuple[int, Any]:
    async def run() -> func.HttpResponse:
        from http_api.durable_jobs import DurableJobs

        try:
            answer: func.HttpResponse = await handler(
                req, DurableJobs(world.client), world.settings, store
            )
        except Exception as exc:
            return answer_for(exc)
        return answer

    response = asyncio.run(run())
    return response.status_code, json.loads(response.get_body())


def test_blob_that_does_not_answer_is_a_blob_timeout_not_the_job_store(monkeypatch, caplog):
    monkeypatch.setattr(handlers, "STATUS_READ_S", 0.2)
    world = World(IMAGE_SHARED_CALLER_MAY_LIST="true")
    world.start()
    hanging = blob_timed(HangingStore(InMemoryStore()))
    status, body = run_with(world, handlers.list_jobs, request("GET", BASE), hanging)
    assert status == 503
    assert_envelope(body, "blob_timeout", "service")
    assert "Blob storage" in body["error"]["message"]
    assert "Blob storage did not answer in time" in caplog.text
    assert "job store" not in caplog.text


def test_a_job_store_that_does_not_answer_is_still_a_store_timeout(caplog):
    world = World(IMAGE_HTTP_STARTER_TIMEOUT_S="0.05")
    world.client.slow_s = 0.5
    store = blob_timed(AsyncInMemoryStore(world.store))
    status, body = run_with(world, handlers.start_job, request("POST", BASE, body=BODY), store)
    assert status == 503
    assert_envelope(body, "store_timeout", "service")
    assert "durable job store" in body["error"]["message"]
    assert "the durable job store did not answer in time" in caplog.text


def test_a_blob_call_in_a_thread_that_times_out_is_blob_timeout():
    async def run() -> func.HttpResponse:
        try:
            async with asyncio.timeout(0.05):
                with blob_call():
                    await asyncio.sleep(1)
        except Exception as exc:
            return answer_for(exc)
        raise AssertionError("no timeout")

    body = json.loads(asyncio.run(run()).get_body())
    assert body["error"]["code"] == "blob_timeout"


def test_a_blob_failure_names_blob_storage():
    world = World()
    world.store.down = True
    status, body, _ = world.start()
    assert status == 503
    assert "Blob storage" in body["error"]["message"]


# --- the manifest ---------------------------------------------------------------------------


def test_a_past_deadline_is_a_400_by_query_or_by_the_options_line(batch_store):
    world = World()
    past = "2020-01-01T00:00:00Z"
    for data, params in (
        (manifest(LINE), {"deadline": past}),
        (manifest({"batch": {"deadline": past}}, LINE), {}),
        (manifest(LINE), {"deadline": past, "dryRun": "true"}),
    ):
        status, body, _ = post_batch(world, data, **params)
        assert status == 400
        assert_envelope(body, "invalid_value", "deadline")
        assert "past" in body["error"]["message"]
    assert world.client.instances == {}


def test_the_upload_and_webhook_secret_endpoints_refuse_an_unknown_parameter():
    from http_api import uploads, webhooks

    world = World()

    async def run(handler: Any) -> func.HttpResponse:
        req = request("GET", BASE, params={"Code": "k"})
        try:
            if handler is uploads.create_upload:
                answer: func.HttpResponse = await handler(
                    req, world.settings, AsyncInMemoryStore(world.store)
                )
            else:
                answer = await handler(req, world.settings)
        except Exception as exc:
            return answer_for(exc)
        return answer

    for handler in (uploads.create_upload, webhooks.webhook_secret):
        response = asyncio.run(run(handler))
        body = json.loads(response.get_body())
        assert response.status_code == 400
        assert_envelope(body, "unknown_parameter", "Code")
        assert "'code'" in body["error"]["message"]


def test_a_worker_whose_first_blob_use_hangs_answers_blob_timeout(monkeypatch, caplog):
    # The worker's first Blob use makes sure the container exists (a network call): bounded, so
    # a request that comes while Blob hangs is a prompt 503 naming Blob, not a hung function.
    async def hanging() -> object:
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    monkeypatch.setattr(blueprint, "EDGE_STORE_S", 0.05)
    monkeypatch.setattr(wiring, "edge_store", hanging)
    world = World()

    async def run() -> func.HttpResponse:
        client: Any = world.client  # the durable client's fake, as the host would hand it over
        return await blueprint.answer(handlers.get_job, request("GET", f"{BASE}/x"), client)

    answer = asyncio.run(run())
    assert answer.status_code == 503
    assert_envelope(json.loads(answer.get_body()), "blob_timeout", "service")
    assert "Blob storage did not answer in time" in caplog.text
