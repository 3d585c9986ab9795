"""Job id allocation against a long history under one id base."""

from __future__ import annotations

import asyncio

from http_api.durable_jobs import DurableJobs
from http_api.job_ids import JobIds
from rules.job_records import JobInput
from rules.request import ImageJobRequest
from rules.retry import RetryPolicy
from rules.send_plan import SendPlan
from tests.fakes import AsyncInMemoryStore

from .fake_durable import FakeDurableClient

JOB = JobInput(
    request=ImageJobRequest("p", "1024x1024", "low", "png", "auto", "auto", 1, 1, "azure"),
    send=SendPlan(stream=True, partial_images=1),
    policy=RetryPolicy(),
    caller="c",
    fingerprint="f",
    created_at="2026-05-07T13:46:12.000Z",
)


def test_the_next_generation_after_300_finished_jobs_is_found_in_a_few_looks():
    client = FakeDurableClient()
    for generation in range(1, 301):
        client.put(f"img-x-{generation}", JOB.to_json(), status="Completed")
    ids = JobIds(
        DurableJobs(client), AsyncInMemoryStore(), lambda g: f"img-x-{g}", idempotency_window_s=None
    )
    allocation = asyncio.run(ids.allocate("image_job", JOB))
    assert allocation.job_id == "img-x-301"
    assert not allocation.replayed
    assert client.count("get_status") <= 20
    # Each generation is looked at once at most.
    looked = [instance for call, instance in client.calls if call == "get_status"]
    assert len(looked) == len(set(looked))
