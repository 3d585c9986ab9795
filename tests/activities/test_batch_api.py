"""The Batch API activities (activities.batch_api) against a scripted route (httpx.MockTransport):
the lookup of our upstream batch goes through every page, the output is collected in chunks
from byte offsets (each chunk idempotent), and a batch that failed here cancels its upstream
batch and records it. End to end on the simulator: tests/e2e/test_batch_api.py."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from PIL import Image

from activities import batch_api, batch_items
from rules.batch_records import (
    BatchApiCall,
    CollectChunk,
    CollectEnd,
    ItemResult,
    Upstream,
    UpstreamCancel,
)
from rules.records import RecordUnreadable
from rules.settings import AppSettings
from storage.protocol import metadata_name, results_name
from tests.fakes import InMemoryStore
from tests.rules.conftest import ENV

from .test_batch_items import MemoryBatches

SETTINGS = AppSettings.from_env({**ENV, "IMAGE_BATCH_WAVE": "3"})
BATCH = "bat-0123456789abcdef01234567"
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
Handler = Callable[[httpx.Request], httpx.Response]


def api(handler: Handler) -> batch_api.BatchApi:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return batch_api.BatchApi(SETTINGS.route("openai"), lambda: None, client)


def split(store: MemoryBatches, count: int) -> int:
    lines = [{"custom_id": f"c{i}", "prompt": f"a lighthouse {i}"} for i in range(count)]
    store.put(
        name="claimed/m.jsonl",
        data="\n".join(json.dumps(line) for line in lines).encode(),
        content_type="application/jsonl",
    )
    return batch_items.split_manifest(
        store,
        batch_id=BATCH,
        manifest="claimed/m.jsonl",
        caller="caller-digest",
        created_at=NOW,
        settings=SETTINGS,
    ).waves


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1024, 1024), (20, 90, 200)).save(out, "PNG")
    return out.getvalue()


def answer(batch_id: str, *, tag: str, status: str = "in_progress") -> dict[str, Any]:
    return {
        "id": batch_id,
        "object": "batch",
        "status": status,
        "metadata": {"batch_id": tag},
        "request_counts": {"total": 2, "completed": 0, "failed": 0},
    }


def test_the_lookup_of_our_upstream_batch_goes_through_every_page():
    """Our batch is on the third page of the route's batches: found, never created again."""
    pages = {
        None: ([answer(f"batch_{i}", tag="other") for i in range(100)], True),
        "batch_99": ([answer(f"batch_{i}", tag="other") for i in range(100, 200)], True),
        "batch_199": ([answer("batch_ours", tag=BATCH)], False),
    }
    seen: list[str] = []

    def route(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        assert request.url.path == "/v1/batches", "nothing is uploaded or created"
        data, more = pages[request.url.params.get("after")]
        return httpx.Response(
            200, json={"object": "list", "data": data, "last_id": data[-1]["id"], "has_more": more}
        )

    store = MemoryBatches()
    upstream = batch_api.submit(api(route), store, batch_id=BATCH, waves=split(store, 2))

    assert upstream.batch == "batch_ours"
    assert seen == ["GET /v1/batches"] * 3
    recorded = json.loads(store.blobs[batch_api.upstream_record(BATCH)])
    assert recorded["batch"] == "batch_ours"


def output_lines(job_ids: list[str], image: bytes) -> bytes:
    lines = [
        {
            "custom_id": job_id,
            "response": {
                "status_code": 200,
                "request_id": f"req_{n}",
                "body": {"data": [{"b64_json": base64.b64encode(image).decode()}]},
            },
            "error": None,
        }
        for n, job_id in enumerate(job_ids)
    ]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def file_route(content: bytes, *, ranges: bool, asked: list[str | None]) -> Handler:
    def route(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/files/file_out/content"
        said = request.headers.get("range")
        asked.append(said)
        assert request.headers["accept-encoding"] == "identity"  # offsets of the file's bytes
        if ranges and said:
            start = int(said.removeprefix("bytes=").rstrip("-"))
            if start >= len(content):  # RFC 9110 14.1.1: no byte of the range is there
                return httpx.Response(416, headers={"content-range": f"bytes */{len(content)}"})
            return httpx.Response(206, content=content[start:])
        return httpx.Response(200, content=content)

    return route


def collect_all(
    route: batch_api.BatchApi, store: MemoryBatches, images: InMemoryStore, waves: int
) -> list[tuple[int, int | None]]:
    call = BatchApiCall(batch_id=BATCH, waves=waves, route="openai", upstream="batch_1")
    offsets: list[tuple[int, int | None]] = []
    chunks: list[str] = []
    offset: int | None = 0
    while offset is not None:
        chunk = CollectChunk(call=call, file_id="file_out", kind="output", offset=offset)
        got = batch_api.collect_chunk(route, store, images, chunk, SETTINGS, max_lines=2)
        offsets.append((offset, got.next_offset))
        chunks.append(got.results)
        offset = got.next_offset
    batch_api.collect_end(store, images, CollectEnd(call, "completed", tuple(chunks)), SETTINGS)
    return offsets


def test_the_output_is_collected_in_chunks_from_byte_offsets_and_a_chunk_run_again_is_the_same():
    store, images = MemoryBatches(), InMemoryStore()
    waves = split(store, 5)
    items = [item for wave in range(waves) for item in batch_items.read_wave(store, BATCH, wave)]
    content = output_lines([item.job_id for item in items], png())
    asked: list[str | None] = []

    offsets = collect_all(api(file_route(content, ranges=True, asked=asked)), store, images, waves)

    # Five lines, two per chunk: three chunks, each from where the last one stopped.
    assert len(offsets) == 3
    assert offsets[0][0] == 0
    assert offsets[1][0] == offsets[0][1]
    assert offsets[2] == (offsets[1][1], None)
    assert asked == [None, f"bytes={offsets[1][0]}-", f"bytes={offsets[2][0]}-"]
    results = [json.loads(line) for line in store.blobs[results_name(BATCH, 0)].splitlines()]
    assert [r["state"] for r in results] == ["saved"] * 5
    assert [r["custom_id"] for r in results] == [f"c{i}" for i in range(5)]
    assert all(metadata_name(item.job_id) in images.blobs for item in items)

    # The middle chunk again (its activity ran twice): the same blobs, nothing doubled or lost.
    before = dict(store.blobs)
    image_names = set(images.blobs)
    call = BatchApiCall(batch_id=BATCH, waves=waves, route="openai", upstream="batch_1")
    chunk = CollectChunk(call=call, file_id="file_out", kind="output", offset=offsets[1][0])
    route = api(file_route(content, ranges=True, asked=asked))
    again = batch_api.collect_chunk(route, store, images, chunk, SETTINGS, max_lines=2)
    assert again.next_offset == offsets[1][1]
    assert set(images.blobs) == image_names
    assert store.blobs[again.results] == before[again.results]
    assert len(store.blobs[again.results].splitlines()) == 2


@pytest.mark.parametrize("lines", [2, 4, 6])
def test_a_file_whose_lines_fill_the_last_chunk_exactly_is_collected_whole(lines):
    # The last chunk ends on the file's last line, so the next one asks for a range that starts
    # at the file's end: a server that honours ranges answers 416, which is the end, not an error.
    store, images = MemoryBatches(), InMemoryStore()
    waves = split(store, lines)
    items = [item for wave in range(waves) for item in batch_items.read_wave(store, BATCH, wave)]
    content = output_lines([item.job_id for item in items], png())
    asked: list[str | None] = []

    offsets = collect_all(api(file_route(content, ranges=True, asked=asked)), store, images, waves)

    assert offsets[-1] == (len(content), None)
    results = [json.loads(line) for line in store.blobs[results_name(BATCH, 0)].splitlines()]
    assert [r["state"] for r in results] == ["saved"] * lines
    assert all(metadata_name(item.job_id) in images.blobs for item in items)


def test_a_server_that_ignores_the_range_has_the_bytes_before_the_offset_skipped():
    store, images = MemoryBatches(), InMemoryStore()
    waves = split(store, 3)
    items = [item for wave in range(waves) for item in batch_items.read_wave(store, BATCH, wave)]
    content = output_lines([item.job_id for item in items], png())
    asked: list[str | None] = []

    collect_all(api(file_route(content, ranges=False, asked=asked)), store, images, waves)

    results = [
        ItemResult.from_json(json.loads(line))
        for line in store.blobs[results_name(BATCH, 0)].splitlines()
    ]
    assert [r.custom_id for r in results] == ["c0", "c1", "c2"]
    assert {r.state for r in results} == {"saved"}


def test_a_batch_that_failed_here_cancels_its_upstream_batch_and_records_it():
    calls: list[str] = []

    def route(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.method == "GET":
            return httpx.Response(200, json=answer("batch_1", tag=BATCH))
        return httpx.Response(200, json=answer("batch_1", tag=BATCH, status="cancelling"))

    store = MemoryBatches()
    call = BatchApiCall(
        batch_id=BATCH, waves=1, route="openai", upstream="batch_1", reason="polls failed"
    )
    ended = batch_api.cancel_for_failure(api(route), store, call)

    assert ended == Upstream.from_answer(answer("batch_1", tag=BATCH, status="cancelling"))
    assert calls == ["GET /v1/batches/batch_1", "POST /v1/batches/batch_1/cancel"]
    record = json.loads(store.blobs[batch_api.upstream_cancel_record(BATCH)])
    assert record["v"] == 1
    assert record["reason"] == "polls failed"
    assert record["upstream"]["status"] == "cancelling"
    read = UpstreamCancel.from_json(record)
    assert (read.batch_id, read.upstream, read.reason) == (BATCH, ended, "polls failed")


def test_the_upstream_records_are_versioned_and_an_unversioned_one_reads_as_before():
    """``upstream.json`` and ``upstream-cancel.json`` carry ``v`` (rules.records): one written
    before (no ``v``) is version 0, read as it was; one newer than this code is refused."""

    def route(request: httpx.Request) -> httpx.Response:
        raise AssertionError("the recorded upstream batch is used, nothing is asked")

    store = MemoryBatches()
    older = {"batch": "batch_3", "status": "in_progress", "total": 2}
    store.put(
        name=batch_api.upstream_record(BATCH),
        data=json.dumps(older).encode(),
        content_type="application/json",
    )
    found = batch_api.find(api(route), store, batch_id=BATCH)
    assert found == Upstream("batch_3", "in_progress", total=2)
    assert found.to_json()["v"] == 1
    with pytest.raises(RecordUnreadable, match="newer"):
        Upstream.from_json({**older, "v": 2})
    cancel = {"batch_id": BATCH, "upstream": older, "reason": "r", "at": "2026-11-30T09:00:00Z"}
    assert UpstreamCancel.from_json(cancel).upstream == found
    with pytest.raises(RecordUnreadable, match="newer"):
        UpstreamCancel.from_json({**cancel, "v": 2})


def test_a_failed_submit_cancels_the_batch_it_may_have_created_found_by_its_tag():
    calls: list[str] = []

    def route(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.url.path == "/v1/batches":
            data = [answer("batch_7", tag=BATCH)]
            return httpx.Response(200, json={"data": data, "has_more": False})
        if request.method == "GET":
            return httpx.Response(200, json=answer("batch_7", tag=BATCH))
        return httpx.Response(200, json=answer("batch_7", tag=BATCH, status="cancelling"))

    store = MemoryBatches()
    call = BatchApiCall(batch_id=BATCH, waves=1, route="openai", reason="submit failed")
    ended = batch_api.cancel_for_failure(api(route), store, call)

    assert ended is not None
    assert ended.batch == "batch_7"
    assert calls[-1] == "POST /v1/batches/batch_7/cancel"


def test_nothing_to_cancel_when_no_upstream_batch_was_created():
    def route(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/batches"
        return httpx.Response(200, json={"data": [], "has_more": False})

    store = MemoryBatches()
    call = BatchApiCall(batch_id=BATCH, waves=1, route="openai", reason="submit failed")
    assert batch_api.cancel_for_failure(api(route), store, call) is None
    assert batch_api.upstream_cancel_record(BATCH) not in store.blobs


def in_reads(content: bytes, size: int) -> Callable[[httpx.Request], httpx.Response]:
    """The file served in reads of ``size`` bytes, the whole file whatever range is asked."""

    def route(request: httpx.Request) -> httpx.Response:
        reads = (content[at : at + size] for at in range(0, len(content), size))
        return httpx.Response(200, content=reads)

    return route


def test_a_long_line_that_arrives_in_many_small_reads_is_read_whole_with_its_offsets():
    """A 4K image's line is tens of MiB of base64, read a few KiB at a time: every line is
    parsed once it is whole, with the file's offset after it (the search for its end goes on
    from where it stopped: reading stays linear, docs/batches.md)."""
    long_line = json.dumps({"custom_id": "a", "b64": "QUJD" * 300_000}).encode() + b"\n"
    short = json.dumps({"custom_id": "b"}).encode() + b"\n\n"
    last = json.dumps({"custom_id": "c"}).encode()  # the last line without its newline
    content = long_line + short + last
    got = list(api(in_reads(content, 997)).lines_from("file_out", 0))
    assert [line["custom_id"] for _, line in got] == ["a", "b", "c"]
    assert got[0][1]["b64"] == "QUJD" * 300_000
    assert [at for at, _ in got] == [
        len(long_line),
        len(long_line) + len(short) - 1,
        len(content),
    ]
    # From an offset, from a server that sends the whole file: the bytes before it skipped
    # across many reads.
    again = list(api(in_reads(content, 997)).lines_from("file_out", len(long_line)))
    assert [(at, line["custom_id"]) for at, line in again] == [
        (len(long_line) + len(short) - 1, "b"),
        (len(content), "c"),
    ]
