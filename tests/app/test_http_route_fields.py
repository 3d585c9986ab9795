"""What the route model adds to the HTTP edge: a job's priority and failover levers, the queued
state with its place and ETA, and a Retry-After that follows the ETA."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest

from http_api import handlers
from http_api.durable_jobs import DurableJobs
from rules.job_records import CustomStatus, JobInput, JobState, Phase, ProgressRecord
from rules.timing import iso_utc
from storage.protocol import progress_name
from tests.fakes import AsyncInMemoryStore

from .test_http_handlers import BASE, NOW, World, assert_envelope, request, saved_output


def started(world: World, **body: Any) -> str:
    status, answer, _ = world.start({"prompt": "a red apple", **body})
    assert status == 202, answer
    return str(answer["id"])


def test_a_job_is_interactive_with_failover_unless_it_says_otherwise():
    world = World()
    job_id = started(world)
    job = world.client.instances[job_id]["input"]
    assert (job["priority"], job["failover"]) == ("interactive", True)
    batch = started(world, priority="batch", failover=False, size="1536x1024")
    job = world.client.instances[batch]["input"]
    assert (job["priority"], job["failover"]) == ("batch", False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"priority": "urgent"}, "priority"),
        ({"priority": 1}, "priority"),
        ({"failover": "yes"}, "failover"),
    ],
)
def test_a_bad_lever_is_a_400_naming_it(body, field):
    world = World()
    status, answer, _ = world.start({"prompt": "a red apple", **body})
    assert status == 400
    assert_envelope(answer, answer["error"]["code"], field)
    assert world.client.count("start_new") == 0


def custom(phase: Phase, *, early_in_s: float, **fields: Any) -> dict[str, Any]:
    return CustomStatus(
        phase,
        1,
        eta=iso_utc(NOW + timedelta(seconds=early_in_s + 4)),
        eta_early=iso_utc(NOW + timedelta(seconds=early_in_s)),
        **fields,
    ).to_json()


def test_a_queued_job_shows_its_place_its_reason_and_its_eta():
    world = World()
    job_id = started(world)
    world.client.instances[job_id]["customStatus"] = custom(
        Phase.QUEUED, early_in_s=12.4, queue_position=3, reason="paced at 10 requests/min"
    )
    status, answer, headers = world.status(job_id)
    assert status == 202
    assert answer["state"] == "queued"
    assert (answer["queuePosition"], answer["queueReason"]) == (3, "paced at 10 requests/min")
    assert answer["eta"] == iso_utc(NOW + timedelta(seconds=16.4))
    # Come back at the earliest the image may be there, not later (whole seconds, rounded down).
    assert headers["Retry-After"] == "12"


@pytest.mark.parametrize(
    ("custom_status", "reason"),
    [
        (None, "waiting for the orchestration to start"),
        (
            {"phase": "generating", "attempt": 1},
            "admitted by its route, waiting for a worker to send the attempt",
        ),
    ],
    ids=["not-started", "waiting-for-a-worker"],
)
def test_a_queued_job_the_governor_does_not_hold_says_why_it_waits(custom_status, reason):
    world = World()
    job_id = started(world)
    world.client.instances[job_id]["customStatus"] = custom_status
    _, answer, _ = world.status(job_id)
    assert answer["state"] == "queued"
    assert answer["queuePosition"] is None  # no place in the route's queue
    assert answer["queueReason"] == reason


@pytest.mark.parametrize(("early_in_s", "retry_after"), [(-5.0, "1"), (0.4, "1"), (95.0, "30")])
def test_retry_after_stays_between_1_and_30_seconds(early_in_s, retry_after):
    world = World(IMAGE_STATUS_HOLD_S="0")
    job_id = started(world)
    world.client.instances[job_id]["customStatus"] = custom(Phase.GENERATING, early_in_s=early_in_s)
    status, answer, headers = world.status(job_id)
    assert (status, answer["queuePosition"]) == (202, None)
    assert answer["eta"] is not None
    assert headers["Retry-After"] == retry_after


def test_without_an_estimate_the_setting_says_when_to_come_back():
    world = World(IMAGE_STATUS_RETRY_AFTER_S="3")
    job_id = started(world)
    world.client.instances[job_id]["customStatus"] = CustomStatus(Phase.GENERATING, 1).to_json()
    _, answer, headers = world.status(job_id)
    assert (answer["eta"], headers["Retry-After"]) == (None, "3")


def sent(world: World, job_id: str) -> None:
    """The attempt's request has left (its progress record says so): the job is generating."""
    job = world.client.instances[job_id]["input"]
    created = JobInput.from_json(job).created_at
    record = ProgressRecord(job_created_at=created, attempt=1, started_at=iso_utc(NOW), sent=True)
    world.store.put(
        name=progress_name(job_id, 1), data=json.dumps(record.to_json()).encode(), content_type="j"
    )


def test_a_poll_when_the_image_may_be_there_is_held_until_the_job_ends():
    world = World()
    job_id = started(world)
    sent(world, job_id)
    world.client.instances[job_id]["customStatus"] = custom(Phase.GENERATING, early_in_s=-1.0)
    world.now = NOW

    async def poll() -> tuple[int, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        # The job ends while the poll is held: the poll answers with the saved job.
        loop.call_later(0.3, world.finish, job_id, saved_output(job_id))
        jobs, store = DurableJobs(world.client), AsyncInMemoryStore(world.store)
        url = f"{BASE}/{job_id}"
        answer = await handlers.get_job(
            request("GET", url, job_id=job_id), jobs, world.settings, store, lambda: NOW
        )
        return answer.status_code, json.loads(answer.get_body())

    reads_before = world.client.count("get_status")
    status, answer = asyncio.run(poll())
    assert (status, answer["state"]) == (200, "saved")
    assert world.client.count("get_status") - reads_before >= 2  # held: read again


def test_a_job_not_sent_yet_is_never_held():
    world = World()
    job_id = started(world)  # no progress record: queued for a worker
    world.client.instances[job_id]["customStatus"] = custom(Phase.GENERATING, early_in_s=-1.0)
    reads_before = world.client.count("get_status")
    status, answer, _ = world.status(job_id)
    assert (status, answer["state"]) == (202, "queued")
    assert world.client.count("get_status") - reads_before == 1


def test_a_poll_before_the_image_may_be_there_is_answered_at_once():
    world = World()
    job_id = started(world)
    world.client.instances[job_id]["customStatus"] = custom(Phase.GENERATING, early_in_s=5.0)
    reads_before = world.client.count("get_status")
    status, _, _ = world.status(job_id)
    assert status == 202
    assert world.client.count("get_status") - reads_before == 1


def test_a_held_poll_that_sees_no_change_answers_when_the_hold_ends():
    world = World(IMAGE_STATUS_HOLD_S="0.3")
    job_id = started(world)
    sent(world, job_id)
    world.client.instances[job_id]["customStatus"] = custom(Phase.GENERATING, early_in_s=-1.0)
    reads_before = world.client.count("get_status")
    status, answer, headers = world.status(job_id)
    assert (status, answer["state"], headers["Retry-After"]) == (202, "generating", "1")
    assert world.client.count("get_status") - reads_before >= 2


def test_a_held_poll_holds_through_finalizing_to_the_end():
    world = World()
    job_id = started(world)
    sent(world, job_id)
    world.client.instances[job_id]["customStatus"] = custom(Phase.GENERATING, early_in_s=-1.0)
    finalizing = CustomStatus(Phase.FINISHING, 1, ending=JobState.SAVED).to_json()

    async def poll() -> tuple[int, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        # The image arrives and is stored (finalizing), then the job ends: one answer, the end.
        loop.call_later(
            0.15, world.client.instances[job_id].__setitem__, "customStatus", finalizing
        )
        loop.call_later(0.45, world.finish, job_id, saved_output(job_id))
        jobs, store = DurableJobs(world.client), AsyncInMemoryStore(world.store)
        answer = await handlers.get_job(
            request("GET", f"{BASE}/{job_id}", job_id=job_id),
            jobs,
            world.settings,
            store,
            lambda: NOW,
        )
        return answer.status_code, json.loads(answer.get_body())

    status, answer = asyncio.run(poll())
    assert (status, answer["state"]) == (200, "saved")
