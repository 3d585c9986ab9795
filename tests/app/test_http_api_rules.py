"""The starter's two guards around deterministic ids: an error answer is not "absent", and a
finished job's folder is never reused or overwritten."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from azure.durable_functions.models.DurableOrchestrationStatus import (
    DurableOrchestrationStatus,
)

from http_api.jobs import (
    StatusUnknown,
    _claim_folder,
    _latest_generation,
    _look,
    status_answer,
)
from tests.fakes import InMemoryStore


class FakeClient:
    """Answers get_status with what the SDK makes of the host's answer body."""

    def __init__(self, body: Any) -> None:
        self.body = body

    async def get_status(self, instance_id: str, show_input: bool = False) -> Any:
        return DurableOrchestrationStatus.from_json(self.body)


def test_a_404_is_absent_and_an_error_answer_is_unknown():
    assert asyncio.run(_look(FakeClient(""), "img-1")) is None
    error = {"Message": "Something went wrong while processing your request"}
    with pytest.raises(StatusUnknown):
        asyncio.run(_look(FakeClient(error), "img-1"))
    running = {
        "name": "image_job",
        "instanceId": "img-1",
        "runtimeStatus": "Running",
        "createdTime": "2026-05-07T13:46:12Z",
        "lastUpdatedTime": "2026-05-07T13:46:12Z",
    }
    status = asyncio.run(_look(FakeClient(running), "img-1"))
    assert status is not None
    assert status.runtime_status.name == "Running"


def test_a_finished_jobs_folder_is_never_reused_and_nothing_is_deleted():
    store = InMemoryStore()
    store.put(name="img-1/metadata.json", data=b"{}", content_type="application/json")
    store.put(name="img-1/image.png", data=b"png", content_type="image/png")
    assert _claim_folder(store, "img-1") is False
    assert store.list(prefix="img-1/") == ["img-1/image.png", "img-1/metadata.json"]

    # A job that a concurrent submit has just started, or one that never finished: usable,
    # and nothing of it is deleted (its activity tells old records by their dates).
    store.put(name="img-2/progress-1.json", data=b"{}", content_type="application/json")
    assert _claim_folder(store, "img-2") is True
    assert store.list(prefix="img-2/") == ["img-2/progress-1.json"]


def test_a_job_whose_record_could_not_be_written_still_answers_its_outcome():
    output: dict[str, Any] = {
        "state": "saved",
        "failure": None,
        "error": None,
        "attempt": 1,
        "images": [{"blob": "img-1/image.png", "contentType": "image/png", "bytes": 3}],
        "previews": [],
        "timings": {},
        "metadata_blob": None,
        "metadata_error": "metadata.json could not be written",
    }
    answer = status_answer(
        "img-1", "Completed", {}, output, {"request": {}}, InMemoryStore(), 3600, False
    )
    assert answer["state"] == "saved"
    assert answer["metadataUrl"] is None
    assert answer["image"]["url"] == "memory://img-1/image.png?ttl=3600"


def test_the_latest_generation_is_found_in_a_few_looks(monkeypatch):
    """300 finished jobs under one id base: found with about 2 log2(300) looks, not 300."""
    looks: list[str] = []

    class ManyJobs:
        async def get_status(self, instance_id: str, show_input: bool = False) -> Any:
            looks.append(instance_id)
            generation = int(instance_id.rsplit("-", 1)[1])
            if generation > 300:
                return DurableOrchestrationStatus.from_json("")
            return DurableOrchestrationStatus.from_json(
                {
                    "name": "image_job",
                    "instanceId": instance_id,
                    "runtimeStatus": "Completed",
                    "createdTime": "2026-05-07T13:46:12Z",
                    "lastUpdatedTime": "2026-05-07T13:46:12Z",
                }
            )

    monkeypatch.setattr("wiring.store", InMemoryStore)
    latest = asyncio.run(_latest_generation(ManyJobs(), lambda g: f"img-x-{g}"))
    assert latest == 300
    assert len(looks) <= 20
