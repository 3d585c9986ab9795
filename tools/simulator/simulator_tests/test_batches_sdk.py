"""The official SDK's ``client.files`` and ``client.batches``, unchanged, against a running
simulator: uploads, a batch from ``validating`` to ``completed``, its output and error files, a
validation failure, a cancel, an expiry, and the half-price ledger entries."""

from __future__ import annotations

import base64
import io
import json
from typing import Any, Final

import httpx
import openai
import pytest
from openai import AzureOpenAI, OpenAI
from openai.types import Batch, ImagesResponse
from PIL import Image

from loopserver.testing import wait_until
from simulator.faults import parse_fault
from simulator.ledger import billable_count, count, total_cost
from simulator.server import Simulator
from simulator_tests.conftest import MakeSim

ENDPOINT: Final = "/v1/images/generations"
BODY: dict[str, Any] = {
    "model": "gpt-image-2",
    "prompt": "a red apple",
    "size": "1024x1024",
    "quality": "low",
    "output_format": "jpeg",
}
ENDED = ("completed", "failed", "expired", "cancelled")
# At time scale 100 the defaults make a small batch last a fraction of a second.
SCALE = 100.0


def client(sim: Simulator) -> OpenAI:
    return OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)


def request(custom_id: str, url: str = ENDPOINT, **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": {**BODY, **body}}


def jsonl(lines: list[Any]) -> bytes:
    return "".join(json.dumps(item) + "\n" for item in lines).encode()


def submit(api: OpenAI, lines: list[Any], **create: Any) -> Batch:
    uploaded = api.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch")
    return api.batches.create(
        input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h", **create
    )


def ended(api: OpenAI, batch_id: str, timeout: float = 20.0) -> Batch:
    def look() -> Batch | None:
        batch = api.batches.retrieve(batch_id)
        return batch if batch.status in ENDED else None

    found: Batch = wait_until(look, timeout=timeout, interval=0.02, what=f"batch {batch_id}")
    return found


def file_lines(api: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(text) for text in api.files.content(file_id).text.splitlines()]


# --- files ----------------------------------------------------------------------------------------


def test_files_upload_retrieve_content_list_and_delete(make_sim: MakeSim):
    api = client(make_sim())
    data = jsonl([request("a")])

    uploaded = api.files.create(file=("requests.jsonl", data), purpose="batch")
    again = api.files.retrieve(uploaded.id)
    content = api.files.content(uploaded.id)
    listed = [f.id for f in api.files.list(purpose="batch")]
    deleted = api.files.delete(uploaded.id)

    assert uploaded.id.startswith("file-")
    assert (uploaded.filename, uploaded.purpose, uploaded.bytes) == (
        "requests.jsonl",
        "batch",
        len(data),
    )
    assert uploaded.expires_at is not None
    assert uploaded.expires_at > uploaded.created_at
    assert again == uploaded
    assert content.content == data
    assert listed == [uploaded.id]
    assert (deleted.id, deleted.deleted) == (uploaded.id, True)
    with pytest.raises(openai.NotFoundError):
        api.files.retrieve(uploaded.id)


def test_a_batch_file_must_be_jsonl_and_a_purpose_is_needed(make_sim: MakeSim):
    api = client(make_sim())
    with pytest.raises(openai.BadRequestError) as caught:
        api.files.create(file=("requests.txt", b"{}"), purpose="batch")
    assert "Must be .jsonl" in caught.value.message
    with pytest.raises(openai.BadRequestError):
        api.files.create(file=("a.jsonl", b"{}"), purpose="nonsense")  # type: ignore[arg-type]


def test_an_upload_is_stored_as_it_is_and_checked_only_by_the_batch(make_sim: MakeSim):
    api = client(make_sim())
    uploaded = api.files.create(file=("bad.jsonl", b"not json at all\n"), purpose="batch")
    assert uploaded.status == "processed"


# --- a batch from validating to completed ---------------------------------------------------------


def test_a_batch_walks_its_statuses_and_leaves_an_output_file(make_sim: MakeSim):
    sim = make_sim(
        {"batch": {"validation_s": 4, "item_s": 2, "finalizing_s": 4, "concurrency": 2}},
        time_scale=20,
    )
    api = client(sim)
    lines = [request(f"r{i}", prompt=f"apple {i}") for i in range(5)]

    batch = submit(api, lines, metadata={"job": "nightly"})
    seen = [batch.status]

    def poll() -> Batch | None:
        current = api.batches.retrieve(batch.id)
        if current.status != seen[-1]:
            seen.append(current.status)
        return current if current.status in ENDED else None

    done: Batch = wait_until(poll, timeout=20, interval=0.01, what="the batch to end")

    assert seen == ["validating", "in_progress", "finalizing", "completed"]
    assert (done.endpoint, done.completion_window, done.metadata) == (
        ENDPOINT,
        "24h",
        {"job": "nightly"},
    )
    assert done.model == "gpt-image-2"
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (5, 5)
    assert done.request_counts.failed == 0
    assert done.in_progress_at is not None
    assert done.finalizing_at is not None
    assert done.completed_at is not None
    assert done.expires_at is not None
    assert done.created_at <= done.in_progress_at <= done.finalizing_at <= done.completed_at
    assert done.errors is None
    assert done.error_file_id is None

    output = api.files.retrieve(done.output_file_id or "")
    assert (output.purpose, output.filename) == ("batch_output", f"{done.id}_output.jsonl")
    results = file_lines(api, done.output_file_id)
    assert sorted(r["custom_id"] for r in results) == [f"r{i}" for i in range(5)]
    assert len({r["id"] for r in results}) == 5
    for result in results:
        assert set(result) == {"id", "custom_id", "response", "error"}
        assert result["id"].startswith("batch_req_")
        assert result["error"] is None
        assert result["response"]["status_code"] == 200
        assert result["response"]["request_id"].startswith("req_")
        body = ImagesResponse.model_validate(result["response"]["body"])
        assert body.data is not None
        assert body.usage is not None
        picture = Image.open(io.BytesIO(base64.b64decode(body.data[0].b64_json or "")))
        assert (picture.format, picture.size) == ("JPEG", (1024, 1024))
        assert (body.size, body.quality, body.output_format) == ("1024x1024", "low", "jpeg")
    assert done.usage is not None
    assert done.usage.output_tokens == sum(
        r["response"]["body"]["usage"]["output_tokens"] for r in results
    )


def test_batch_requests_are_billed_at_half_the_synchronous_price(make_sim: MakeSim):
    sim = make_sim(time_scale=SCALE)
    api = client(sim)
    api.images.generate(**BODY)
    (sync_entry,) = sim.ledger()

    done = ended(api, submit(api, [request(f"r{i}") for i in range(3)]).id)

    entries = sim.ledger()
    batch_entries = [e for e in entries if e.billing == "batch"]
    assert sync_entry.billing == "standard"
    assert sync_entry.batch_id is None
    assert [e.custom_id for e in sorted(batch_entries, key=lambda e: e.custom_id or "")] == [
        "r0",
        "r1",
        "r2",
    ]
    for entry in batch_entries:
        assert (entry.batch_id, entry.outcome, entry.status) == (done.id, "completed", 200)
        assert entry.billable
        assert entry.completed_upstream
        assert entry.cost_usd == pytest.approx(sync_entry.cost_usd / 2, abs=1e-6)
    assert billable_count(entries, billing="batch", batch_id=done.id) == 3
    assert total_cost(entries, billing="batch") == pytest.approx(
        1.5 * sync_entry.cost_usd, abs=1e-5
    )
    # The same JSON through the admin API, as another process would total it.
    ledger_json = httpx.get(f"{sim.url}/_sim/ledger").json()
    assert total_cost(ledger_json, billing="batch", batch_id=done.id) == pytest.approx(
        total_cost(entries, billing="batch")
    )


def test_batch_requests_use_no_rate_limit_window(make_sim: MakeSim):
    sim = make_sim({"openai": {"rate_limit": {"requests_per_minute": 1}}}, time_scale=SCALE)
    api = client(sim)

    done = ended(api, submit(api, [request(f"r{i}") for i in range(4)]).id)
    api.images.generate(**BODY)  # the window's one request is still free

    assert done.status == "completed"
    with pytest.raises(openai.RateLimitError):
        api.images.generate(**BODY)


# --- failed requests ------------------------------------------------------------------------------


def test_failed_requests_go_to_the_error_file(make_sim: MakeSim):
    sim = make_sim({"batch": {"concurrency": 1}}, time_scale=SCALE)
    api = client(sim)
    sim.faults.add(parse_fault({"kind": "batch_item_error", "status": 500, "count": 2}))
    sim.faults.add(parse_fault({"kind": "batch_item_timeout"}))
    sim.faults.add(parse_fault({"kind": "http_error", "status": 503}))  # synchronous only
    lines = [request(f"r{i}") for i in range(5)] + [request("bad-size", size="1000x1000")]

    done = ended(api, submit(api, lines).id)

    assert done.status == "completed"
    assert done.request_counts is not None
    counts = done.request_counts
    assert (counts.total, counts.completed, counts.failed) == (6, 2, 4)
    failures = {line["custom_id"]: line for line in file_lines(api, done.error_file_id)}
    assert set(failures) == {"r0", "r1", "r2", "bad-size"}
    assert [failures[c]["response"]["status_code"] for c in ("r0", "r1")] == [500, 500]
    assert failures["r0"]["response"]["body"]["error"]["type"] == "server_error"
    assert failures["r0"]["error"] is None
    assert failures["r2"]["response"] is None
    assert failures["r2"]["error"]["code"] == "request_timeout"
    rejected = failures["bad-size"]["response"]
    assert rejected["status_code"] == 400
    assert rejected["body"]["error"]["param"] == "size"
    assert len(file_lines(api, done.output_file_id)) == 2
    entries = sim.ledger()
    assert billable_count(entries) == 2
    assert count(entries, outcome="fault:batch_item_error") == 2
    assert count(entries, outcome="rejected", custom_id="bad-size") == 1
    assert [f["kind"] for f in sim.faults.pending()] == ["http_error"]


def test_a_batch_whose_requests_all_fail_has_no_output_file(make_sim: MakeSim):
    api = client(make_sim(time_scale=SCALE))
    done = ended(api, submit(api, [request("a", n=11), request("b", stream=True)]).id)

    assert (done.status, done.output_file_id) == ("completed", None)
    params = sorted(
        r["response"]["body"]["error"]["param"] for r in file_lines(api, done.error_file_id)
    )
    assert params == ["n", "stream"]


# --- validation -----------------------------------------------------------------------------------


def test_a_broken_input_file_fails_the_batch_with_its_errors(make_sim: MakeSim):
    sim = make_sim(time_scale=SCALE)
    api = client(sim)
    lines: list[Any] = [
        request("a"),
        "not json",
        request("a"),
        request("c", url="/v1/chat/completions"),
    ]
    uploaded = api.files.create(
        file=(
            "requests.jsonl",
            b"\n".join(
                item.encode() if isinstance(item, str) else json.dumps(item).encode()
                for item in lines
            ),
        ),
        purpose="batch",
    )
    batch = api.batches.create(
        input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h"
    )

    done = ended(api, batch.id)

    assert done.status == "failed"
    assert done.failed_at is not None
    assert done.in_progress_at is None
    assert done.errors is not None
    assert done.errors.data is not None
    assert [(e.code, e.line, e.param) for e in done.errors.data] == [
        ("invalid_json_line", 2, None),
        ("duplicate_custom_id", 3, "custom_id"),
        ("url_mismatch", 4, "url"),
    ]
    assert done.output_file_id is None
    assert done.error_file_id is None
    assert sim.ledger() == []  # no request of a failed batch ever ran


def test_bad_create_calls_are_refused_at_once(make_sim: MakeSim):
    api = client(make_sim(time_scale=SCALE))
    notes = api.files.create(file=("notes.jsonl", jsonl([request("a")])), purpose="user_data")
    good = api.files.create(file=("requests.jsonl", jsonl([request("a")])), purpose="batch")

    with pytest.raises(openai.NotFoundError):
        api.batches.create(input_file_id="file-nope", endpoint=ENDPOINT, completion_window="24h")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        api.batches.create(input_file_id=notes.id, endpoint=ENDPOINT, completion_window="24h")
    with pytest.raises(openai.BadRequestError, match="simulator serves"):
        api.batches.create(
            input_file_id=good.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    with pytest.raises(openai.BadRequestError) as caught:
        api.batches.create(
            input_file_id=good.id,
            endpoint=ENDPOINT,
            completion_window="48h",  # type: ignore[arg-type]
        )
    assert caught.value.param == "completion_window"
    with pytest.raises(openai.BadRequestError, match="metadata"):
        api.batches.create(
            input_file_id=good.id,
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={f"k{i}": "v" for i in range(17)},
        )
    with pytest.raises(openai.NotFoundError):
        api.batches.retrieve("batch_nope")


# --- cancelled and expired ------------------------------------------------------------------------


def test_a_cancelled_batch_keeps_what_ran_and_lists_the_rest(make_sim: MakeSim):
    sim = make_sim(
        {"batch": {"item_s": 20, "concurrency": 1, "cancelling_s": 20}}, time_scale=SCALE
    )
    api = client(sim)
    batch = submit(api, [request(f"r{i}") for i in range(10)])
    wait_until(
        lambda: (c := api.batches.retrieve(batch.id).request_counts) and c.completed >= 1,
        what="a first request to finish",
    )

    cancelling = api.batches.cancel(batch.id)
    done = ended(api, batch.id)

    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at is not None
    assert done.status == "cancelled"
    assert done.cancelled_at is not None
    assert done.cancelled_at >= cancelling.cancelling_at
    assert done.completed_at is None
    assert done.request_counts is not None
    ran = done.request_counts.completed
    assert 1 <= ran < 10
    assert done.request_counts.failed == 0
    outputs = file_lines(api, done.output_file_id)
    never_ran = file_lines(api, done.error_file_id)
    assert len(outputs) == ran
    assert len(never_ran) == 10 - ran
    assert {line["error"]["code"] for line in never_ran} == {"batch_cancelled"}
    assert all(line["response"] is None for line in never_ran)
    assert billable_count(sim.ledger(), batch_id=batch.id) == ran
    with pytest.raises(openai.BadRequestError):
        api.batches.cancel(batch.id)


def test_a_batch_cancelled_while_validating_runs_nothing(make_sim: MakeSim):
    sim = make_sim({"batch": {"validation_s": 100}}, time_scale=SCALE)
    api = client(sim)
    batch = submit(api, [request("a")])

    api.batches.cancel(batch.id)
    done = ended(api, batch.id)

    assert done.status == "cancelled"
    assert done.in_progress_at is None
    assert done.output_file_id is None
    assert done.error_file_id is None
    assert sim.ledger() == []


def test_a_batch_expire_fault_ends_it_after_so_many_requests(make_sim: MakeSim):
    sim = make_sim({"batch": {"concurrency": 3}}, time_scale=SCALE)
    api = client(sim)
    sim.faults.add(parse_fault({"kind": "batch_expire", "after_items": 4}))

    done = ended(api, submit(api, [request(f"r{i}") for i in range(10)]).id)

    assert done.status == "expired"
    assert done.expired_at is not None
    assert done.completed_at is None
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (4, 0)
    assert len(file_lines(api, done.output_file_id)) == 4
    late = file_lines(api, done.error_file_id)
    assert len(late) == 6
    assert {(line["response"], line["error"]["code"]) for line in late} == {(None, "batch_expired")}
    assert "completion window expired" in late[0]["error"]["message"]
    entries = sim.ledger()
    assert billable_count(entries, batch_id=done.id) == 4
    # Requests running when it expired were dropped: recorded, never billed.
    assert all(not e.billable for e in entries if e.outcome == "batch_expired")


def test_a_batch_expires_when_its_completion_window_runs_out(make_sim: MakeSim):
    sim = make_sim(
        {"batch": {"completion_window_s": 100, "validation_s": 0, "item_s": 40, "concurrency": 1}},
        time_scale=SCALE,
    )
    api = client(sim)

    batch = submit(api, [request(f"r{i}") for i in range(5)])
    done = ended(api, batch.id)

    assert batch.expires_at == batch.created_at + 1  # 100 service seconds at time scale 100
    assert done.status == "expired"
    assert done.request_counts is not None
    assert done.request_counts.completed == 2  # at 40 s and 80 s; the third would end at 120 s
    assert len(file_lines(api, done.error_file_id)) == 3


# --- listing, admin, Azure ------------------------------------------------------------------------


def test_batches_list_newest_first_page_by_page_and_in_the_admin_api(make_sim: MakeSim):
    sim = make_sim({"batch": {"validation_s": 1000}}, time_scale=SCALE)
    api = client(sim)
    created = [submit(api, [request("a")]).id for _ in range(3)]

    first_page = api.batches.list(limit=2)
    everything = [b.id for b in api.batches.list(limit=2)]  # the SDK follows has_more / after

    assert [b.id for b in first_page.data] == created[::-1][:2]
    assert first_page.has_more is True
    assert everything == created[::-1]
    admin = httpx.get(f"{sim.url}/_sim/batches").json()
    assert [b["id"] for b in admin] == created[::-1]
    assert httpx.get(f"{sim.url}/_sim/health").json()["batches_running"] == 3
    sim.reset()
    assert sim.batches() == []
    assert api.files.list().data == []


def test_azure_files_and_batches_on_both_paths(make_sim: MakeSim):
    sim = make_sim({"deployments": {"images-batch": "gpt-image-2"}}, time_scale=SCALE)
    deployment_path = AzureOpenAI(
        azure_endpoint=sim.azure_endpoint,
        api_version="2025-04-01-preview",
        api_key="k",
        max_retries=0,
    )
    v1_path = OpenAI(base_url=sim.azure_v1_base_url, api_key="k", max_retries=0)
    for api, url in ((deployment_path, "/images/generations"), (v1_path, ENDPOINT)):
        lines = [
            request("a", url=url, model="images-batch"),
            request("b", url=url, model="images-batch", output_format="webp"),
        ]
        uploaded = api.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch")
        batch = api.batches.create(
            input_file_id=uploaded.id,
            endpoint=url,  # type: ignore[arg-type]
            completion_window="24h",
        )
        done = ended(api, batch.id)

        assert done.status == "completed", done.errors
        assert done.request_counts is not None
        assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
        (refused,) = file_lines(api, done.error_file_id)  # Azure serves png and jpeg only
        assert refused["response"]["status_code"] == 400
        assert refused["response"]["body"]["error"]["param"] == "output_format"
    entries = sim.ledger()
    assert [(e.route, e.deployment) for e in entries if e.billable] == [
        ("azure", "images-batch"),
        ("azure_v1", "images-batch"),
    ]
    no_version = httpx.get(f"{sim.url}/openai/batches", headers={"api-key": "k"})
    assert no_version.status_code == 404
    no_key = httpx.get(f"{sim.url}/openai/v1/batches")
    assert no_key.status_code == 401


def test_an_unknown_deployment_in_an_azure_batch_is_a_404_line(make_sim: MakeSim):
    sim = make_sim(time_scale=SCALE)
    api = OpenAI(base_url=sim.azure_v1_base_url, api_key="k", max_retries=0)

    done = ended(api, submit(api, [request("a", model="no-such-deployment")]).id)

    (missing,) = file_lines(api, done.error_file_id)
    assert missing["response"]["status_code"] == 404
    assert missing["response"]["body"]["error"]["code"] == "DeploymentNotFound"


def test_a_batch_whose_input_file_is_deleted_before_validation_fails(make_sim: MakeSim):
    api = client(make_sim({"batch": {"validation_s": 20}}, time_scale=SCALE))
    batch = submit(api, [request("a")])

    api.files.delete(batch.input_file_id)
    done = ended(api, batch.id)

    assert done.status == "failed"
    assert done.errors is not None
    assert done.errors.data is not None
    assert done.errors.data[0].param == "input_file_id"
