"""A batch's work in Blob: the manifest split into waves of item jobs, results, the report."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from activities import batch_items
from rules.batch_records import BatchSplit, WaveItem
from rules.job_records import JobInput, JobState, Outcome
from rules.outcome import StoredImage, Timings
from rules.route_records import Priority
from rules.settings import AppSettings
from tests.rules.conftest import ENV

SETTINGS = AppSettings.from_env({**ENV, "IMAGE_BATCH_WAVE": "2"})
BATCH = "bat-0123456789abcdef01234567"
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


class MemoryBatches:
    """A batches container in memory. Every blob lists with the ETag "etag" until it is written
    again: each later write of a name gives it "etag-2", "etag-3", ... (as Blob gives a new one)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.etags: dict[str, str] = {}
        self._writes: dict[str, int] = {}

    def put(self, *, name: str, data: bytes, content_type: str) -> None:
        self.blobs[name] = data
        writes = self._writes.get(name, 0) + 1
        self._writes[name] = writes
        self.etags[name] = "etag" if writes == 1 else f"etag-{writes}"

    def get(self, *, name: str) -> bytes | None:
        return self.blobs.get(name)

    def list_names(self, *, prefix: str, limit: int) -> list[tuple[str, str]]:
        return [(n, self.etags[n]) for n in sorted(self.blobs) if n.startswith(prefix)][:limit]

    def delete(self, *, name: str) -> None:
        self.blobs.pop(name, None)
        self.etags.pop(name, None)

    def get_if_unchanged(self, *, name: str, etag: str) -> bytes | None:
        if self.etags.get(name) != etag:
            return None
        return self.get(name=name)

    def delete_if_unchanged(self, *, name: str, etag: str) -> bool:
        if name in self.blobs and self.etags[name] != etag:
            return False
        self.delete(name=name)
        return True

    def read_link(self, *, name: str, ttl_s: int) -> str:
        return f"https://blob/{name}"


def manifest(store: MemoryBatches) -> None:
    lines = [{"custom_id": f"c{i}", "prompt": f"a cat {i}"} for i in range(5)]
    lines.insert(2, {"custom_id": "=HYPERLINK(1)", "prompt": "x", "size": "1x1"})
    store.put(
        name="claimed/m.jsonl",
        data="\n".join(json.dumps(line) for line in lines).encode(),
        content_type="application/jsonl",
    )


def split(store: MemoryBatches):
    return batch_items.split_manifest(
        store,
        batch_id=BATCH,
        manifest="claimed/m.jsonl",
        caller="caller-digest",
        created_at=NOW,
        settings=SETTINGS,
    )


def test_the_manifest_is_split_into_waves_of_batch_priority_jobs_with_stable_ids():
    store = MemoryBatches()
    manifest(store)
    result = split(store)
    assert (result.items, result.invalid, result.waves) == (5, 1, 3)
    first = batch_items.read_wave(store, BATCH, 0)
    assert [item.custom_id for item in first] == ["c0", "c1"]
    job = JobInput.from_json(first[0].job)
    assert (job.priority, job.batch_id, job.caller) == (Priority.BATCH, BATCH, "caller-digest")
    again = MemoryBatches()
    manifest(again)
    split(again)
    assert batch_items.read_wave(again, BATCH, 0)[0].job_id == first[0].job_id
    assert first[0].job_id != first[1].job_id


def test_the_split_names_every_route_its_items_may_queue_at():
    """Each item's own route, and the failover partner frozen in its job: where a cancel of
    the batch must reach (orchestrators.image_batch)."""
    store = MemoryBatches()
    lines = [
        {"custom_id": "a", "prompt": "a cat", "route": "azure"},
        {"custom_id": "b", "prompt": "a dog", "route": "azure", "failover": False},
    ]
    store.put(
        name="claimed/m.jsonl",
        data="\n".join(json.dumps(line) for line in lines).encode(),
        content_type="application/jsonl",
    )
    settings = AppSettings.from_env({**ENV, "IMAGE_ROUTE_AZURE_FAILOVER_TO": "openai"})
    result = batch_items.split_manifest(
        store,
        batch_id=BATCH,
        manifest="claimed/m.jsonl",
        caller="caller-digest",
        created_at=NOW,
        settings=settings,
    )
    assert result.routes == ("azure", "openai")
    assert BatchSplit.from_json(result.to_json()) == result
    assert BatchSplit.from_json({"items": 2, "invalid": 0, "waves": 1}).routes is None
    plain = MemoryBatches()
    manifest(plain)
    assert split(plain).routes == (SETTINGS.default_route,)


def test_the_report_has_every_line_in_order_and_a_safe_csv():
    store = MemoryBatches()
    manifest(store)
    split(store)
    items = [item for wave in range(3) for item in batch_items.read_wave(store, BATCH, wave)]
    saved = Outcome(
        state=JobState.SAVED,
        attempt=1,
        images=(StoredImage("img/image.png", "image/png", 9, 1024, 1024),),
        timings=Timings(request_started_at="2026-11-30T09:00:01.000Z", final_image_ms=900),
        cost_usd=0.009,
    )
    results = [batch_items.item_result(item, saved) for item in items[:4]]
    results.append(batch_items.item_result(items[4], None))  # cancelled before it started
    batch_items.write_results(store, BATCH, 0, results)
    report = batch_items.write_report(store, BATCH, 1)
    counts = report.counts
    assert (counts.items, counts.saved, counts.cancelled, counts.invalid) == (5, 4, 1, 1)
    assert counts.cost_usd == 0.036
    lines = [json.loads(line) for line in store.blobs[report.jsonl].splitlines()]
    assert [line["line"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[2]["state"] == "invalid"
    rows = list(csv.DictReader(io.StringIO(store.blobs[report.csv].decode())))
    assert rows[2]["custom_id"] == "'=HYPERLINK(1)"  # never a formula in a spreadsheet
    assert rows[0]["image_blob"] == "img/image.png"
    assert rows[5]["state"] == "cancelled"
    assert "a cat" not in store.blobs[report.csv].decode()


def test_a_wave_item_round_trips():
    item = WaveItem(1, "c", "img-x-1", {"a": 1})
    assert WaveItem.from_json(json.loads(json.dumps(item.to_json()))) == item
