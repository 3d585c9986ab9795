"""The batch timer's claims (orchestrators.batch_intake) with a fake durable client and Blob: an
upload whose claim could not finish is finished later without running its batch again, and it
holds up no other upload. End to end: tests/e2e/test_batch_intake.py."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest

import wiring
from http_api.durable_jobs import DurableJobs
from rules.batches import batch_id_for
from rules.settings import AppSettings
from tests.activities.test_batch_items import MemoryBatches
from tests.rules.conftest import ENV

from .fake_durable import FakeDurableClient

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = AppSettings.from_env(ENV)
MANIFEST = b'{"custom_id": "c1", "prompt": "a red teapot"}\n'


@pytest.fixture(scope="module")
def intake() -> ModuleType:
    """The timer's module reads its schedule from the app settings at import: imported under
    the sample's, which are then taken out of the environment and of wiring's cache again."""
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    with mock.patch.dict(os.environ, values):
        module = importlib.import_module("orchestrators.batch_intake")
    wiring.settings.cache_clear()
    return module


class RefusingDeletes(MemoryBatches):
    """A container where one blob cannot be deleted (someone holds a lease on it)."""

    def __init__(self, leased: str) -> None:
        super().__init__()
        self.leased = leased

    def delete(self, *, name: str) -> None:
        if name == self.leased:
            raise RuntimeError("LeaseIdMissing")
        super().delete(name=name)


def batch_id(name: str) -> str:
    key = f"blob:{name}:etag"  # MemoryBatches lists every blob with the ETag "etag"
    return batch_id_for(SETTINGS.job_id_secret, SETTINGS.batches.caller, key, b"")


def test_an_upload_is_claimed_once_and_deleted(intake: ModuleType):
    store, client = MemoryBatches(), FakeDurableClient()
    store.put(name="incoming/a.jsonl", data=MANIFEST, content_type="application/jsonl")

    claimed = asyncio.run(intake.claim_all(store, DurableJobs(client), SETTINGS))

    assert claimed == [batch_id("incoming/a.jsonl")]
    assert client.count("start_new") == 1
    assert set(store.blobs) == {f"claimed/{claimed[0]}.jsonl"}
    assert store.blobs[f"claimed/{claimed[0]}.jsonl"] == MANIFEST


def test_an_upload_that_cannot_be_deleted_holds_up_no_other_and_its_batch_never_runs_again(
    intake: ModuleType,
):
    store, client = RefusingDeletes("incoming/a.jsonl"), FakeDurableClient()
    for name in ("incoming/a.jsonl", "incoming/b.jsonl"):
        store.put(name=name, data=MANIFEST, content_type="application/jsonl")
    jobs = DurableJobs(client)

    first = asyncio.run(intake.claim_all(store, jobs, SETTINGS))

    stuck, other = batch_id("incoming/a.jsonl"), batch_id("incoming/b.jsonl")
    assert first == [other]  # a's batch started, its delete was refused; b was claimed whole
    assert set(client.instances) == {stuck, other}
    assert [n for n in store.blobs if n.startswith("incoming/")] == ["incoming/a.jsonl"]
    # The batch ends before the upload could be deleted; every later run finds it again. A
    # start would replace the ended instance (as the Durable extension does): none is made.
    client.instances[stuck]["runtimeStatus"] = "Completed"
    asyncio.run(intake.claim_all(store, jobs, SETTINGS))
    assert client.count("start_new") == 2
    assert client.instances[stuck]["runtimeStatus"] == "Completed"
    # Once the delete goes through, the claim is done.
    store.leased = ""
    assert asyncio.run(intake.claim_all(store, jobs, SETTINGS)) == [stuck]
    assert client.count("start_new") == 2
    assert [n for n in store.blobs if n.startswith("incoming/")] == []


class ReuploadedWhileClaimed(MemoryBatches):
    """A container where the upload is written again (same name, new content) right after the
    claim has read it: between the timer's list and its delete."""

    def __init__(self, name: str, again: bytes) -> None:
        super().__init__()
        self.name, self.again = name, again

    def get(self, *, name: str) -> bytes | None:
        data = super().get(name=name)
        if name == self.name and self.again:
            again, self.again = self.again, b""
            self.put(name=name, data=again, content_type="application/jsonl")
        return data


def test_an_upload_written_again_between_list_and_delete_is_kept_and_claimed_next(
    intake: ModuleType,
):
    again = b'{"custom_id": "c2", "prompt": "a blue teapot"}\n'
    store, client = ReuploadedWhileClaimed("incoming/a.jsonl", again), FakeDurableClient()
    store.put(name="incoming/a.jsonl", data=MANIFEST, content_type="application/jsonl")
    jobs = DurableJobs(client)

    first = asyncio.run(intake.claim_all(store, jobs, SETTINGS))

    assert first == [batch_id("incoming/a.jsonl")]
    assert store.blobs[f"claimed/{first[0]}.jsonl"] == MANIFEST
    # The delete was conditional on the ETag listed: the new upload is still there.
    assert store.blobs["incoming/a.jsonl"] == again

    second = asyncio.run(intake.claim_all(store, jobs, SETTINGS))

    assert len(second) == 1
    assert second != first  # a new ETag: a new batch
    assert store.blobs[f"claimed/{second[0]}.jsonl"] == again
    assert client.count("start_new") == 2
    assert [n for n in store.blobs if n.startswith("incoming/")] == []


class ReplacedBeforeRead(MemoryBatches):
    """A container where the upload is written again right after the timer listed it, before
    the claim reads it."""

    def __init__(self, name: str, again: bytes) -> None:
        super().__init__()
        self.name, self.again = name, again

    def list_names(self, *, prefix: str, limit: int) -> list[tuple[str, str]]:
        listed = super().list_names(prefix=prefix, limit=limit)
        if self.again:
            again, self.again = self.again, b""
            self.put(name=self.name, data=again, content_type="application/jsonl")
        return listed


def test_an_upload_written_again_between_list_and_read_runs_once_under_its_own_etag(
    intake: ModuleType,
):
    # The batch id comes from the listed ETag: the claim reads the bytes of that ETag only, so
    # the newer upload is never started under the older id and then again under its own.
    again = b'{"custom_id": "c2", "prompt": "a blue teapot"}\n'
    store, client = ReplacedBeforeRead("incoming/a.jsonl", again), FakeDurableClient()
    store.put(name="incoming/a.jsonl", data=MANIFEST, content_type="application/jsonl")
    jobs = DurableJobs(client)

    first = asyncio.run(intake.claim_all(store, jobs, SETTINGS))
    second = asyncio.run(intake.claim_all(store, jobs, SETTINGS))

    claimed = [store.blobs[f"claimed/{batch}.jsonl"] for batch in first + second]
    assert claimed == [again]
    assert client.count("start_new") == 1
    assert [n for n in store.blobs if n.startswith("incoming/")] == []
