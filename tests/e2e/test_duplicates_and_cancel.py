"""Duplicate submits get the existing job; cancel at every stage."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest

from loopserver.testing import wait_until

from .conftest import PROMPT, Api

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

# Callers are named by x-ms-client-principal-id, as behind Easy Auth.
STACK = {"extra_env": {"IMAGE_TRUST_PRINCIPAL_HEADER": "true"}}

SMALL: dict[str, Any] = {"size": "1024x1024", "quality": "low", "output_format": "jpeg"}


def generations(entries: list[dict[str, Any]]) -> int:
    return sum(1 for e in entries if e["generation_started"])


def test_the_same_idempotency_key_twice_is_one_job(api: Api):
    mark = api.ledger_mark()
    key = {"Idempotency-Key": "order-42"}
    first = api.start(headers=key, prompt=PROMPT, **SMALL)
    second = api.start(headers=key, prompt=PROMPT, **SMALL)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    api.poll(first.json()["id"])
    # A finished job is returned again for the same key, within the window.
    third = api.start(headers=key, prompt=PROMPT, **SMALL)
    assert third.json()["id"] == first.json()["id"]
    assert third.json()["state"] == "saved"
    assert generations(api.ledger(mark)) == 1


def test_the_same_key_with_another_body_is_a_conflict(api: Api):
    key = {"Idempotency-Key": "order-43"}
    first = api.start(headers=key, prompt=PROMPT, **SMALL)
    assert first.status_code == 202
    conflict = api.start(headers=key, prompt=PROMPT + " at dusk", **SMALL)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["field"] == "Idempotency-Key"
    api.poll(first.json()["id"])


def test_concurrent_submits_of_one_key_start_one_job(api: Api):
    mark = api.ledger_mark()
    key = {"Idempotency-Key": "double-click"}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: api.start(headers=key, prompt=PROMPT, **SMALL), range(8)))
    assert {a.status_code for a in answers} == {202}
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1
    api.poll(ids.pop())
    assert generations(api.ledger(mark)) == 1


def test_without_a_key_the_same_pending_job_is_reused_then_a_new_one_made(api: Api):
    mark = api.ledger_mark()
    body: dict[str, Any] = {"prompt": PROMPT + " no key", **SMALL}
    first = api.start(**body).json()["id"]
    again = api.start(**body).json()["id"]
    assert again == first
    api.poll(first)
    later = api.start(**body).json()["id"]
    assert later != first  # the first finished: asking again is a new image
    api.poll(later)
    assert generations(api.ledger(mark)) == 2
    assert api.status(first).json()["state"] == "saved"  # the first job is still there


def test_one_caller_cannot_see_or_cancel_another_callers_job(api: Api):
    alice = {"x-ms-client-principal-id": "alice"}
    bob = {"x-ms-client-principal-id": "bob"}
    job = api.start(headers=alice, prompt=PROMPT + " alice", **SMALL).json()["id"]
    assert api.status(job, headers=alice).status_code in (200, 202)
    assert api.status(job, headers=bob).status_code == 404
    assert api.cancel(job, headers=bob).status_code == 404
    # The same prompt from another caller is another job.
    other = api.start(headers=bob, prompt=PROMPT + " alice", **SMALL).json()["id"]
    assert other != job
    assert api.poll(job, headers=alice)[-1]["state"] == "saved"
    assert api.poll(other, headers=bob)[-1]["state"] == "saved"


def test_a_job_waiting_to_retry_is_cancelled_without_reaching_the_route_again(api: Api):
    mark = api.ledger_mark()
    # 600 service seconds: long enough to cancel in, short of the longest wait taken (900).
    api.fault(kind="rate_limited", retry_after_s=600, match={"size": "1536x1024"})
    job = api.start(prompt=PROMPT, size="1536x1024", quality="low").json()["id"]
    wait_until(lambda: api.status(job).json()["state"] == "waiting_to_retry", what="a retry wait")
    answer = api.cancel(job)
    assert answer.status_code in (200, 202)
    final = api.poll(job, timeout_s=30)[-1]
    assert final["state"] == "cancelled"
    assert len(api.ledger(mark)) == 1  # the 429 only
    again = api.cancel(job)
    assert again.status_code == 200
    assert again.json()["state"] == "cancelled"
    metadata = api.metadata(final)
    assert metadata["state"] == "cancelled"
    listed = {"metadata.json", "progress-1.json", "cancel.json"}
    assert {name.split("/", 1)[1] for name in api.blobs(job)} == listed


def test_a_running_job_has_its_stream_closed(api: Api):
    mark = api.ledger_mark()
    job = api.start(
        prompt=PROMPT, size="2048x2048", quality="high", partial_images=3, route="openai"
    ).json()["id"]
    wait_until(lambda: api.status(job).json()["previews"], timeout=60, what="a first preview")
    assert api.cancel(job).status_code == 202
    final = api.poll(job, timeout_s=60)[-1]
    assert final["state"] == "cancelled"
    assert final["image"] is None
    # The route notices the closed stream at its next write; the generation itself runs on.
    wait_until(
        lambda: [e["outcome"] for e in api.ledger(mark)] == ["client_disconnected"],
        timeout=30,
        what="the simulator to see the closed stream",
    )
    names = {name.split("/", 1)[1] for name in api.blobs(job)}
    assert not any(name.startswith("image") for name in names)
    metadata = api.metadata(final)
    previews = {p["blob"].split("/", 1)[1] for a in metadata["attempts"] for p in a["previews"]}
    assert names == previews | {"metadata.json", "progress-1.json", "cancel.json"}


def test_a_queued_job_is_cancelled_before_it_reaches_the_route(api: Api):
    """Ten slow jobs hold every activity slot (host.json: 10); the eleventh waits for one."""
    mark = api.ledger_mark()
    api.fault(kind="slow_first_byte", delay_s=150, count=10, match={"route": "openai"})
    slow = [
        api.start(prompt=f"{PROMPT} {i}", route="openai", **SMALL).json()["id"] for i in range(10)
    ]
    wait_until(lambda: len(api.ledger(mark)) == 10, timeout=30, what="ten requests in flight")
    queued = api.start(prompt=PROMPT + " queued", route="openai", **SMALL).json()["id"]
    # Scheduled by its orchestrator, but no slot yet: honestly queued, with no clock started.
    wait_until(
        lambda: api.status(queued).json()["attempt"] == 1, timeout=30, what="the attempt scheduled"
    )
    waiting = api.status(queued).json()
    assert waiting["state"] == "queued", waiting
    assert waiting["timings"]["requestStartedAt"] is None
    cancelled = api.cancel(queued)
    assert cancelled.status_code == 202
    assert cancelled.json()["beforeSend"] is True
    final = api.poll(queued, timeout_s=60)[-1]
    assert final["state"] == "cancelled"
    for job in slow:
        assert api.poll(job)[-1]["state"] == "saved"
    assert len(api.ledger(mark)) == 10  # the cancelled job never reached the route


def test_a_cancel_right_after_the_202_reaches_the_route_only_if_the_send_came_first(api: Api):
    """The attempt writes its sent mark, reads the cancel marker, sends; the cancel writes the
    marker, reads the sent mark. A cancel that saw no sent mark is one whose job never sends."""
    mark = api.ledger_mark()
    jobs = [api.start(prompt=f"{PROMPT} at once {i}", **SMALL).json()["id"] for i in range(6)]
    answers = [api.cancel(job).json() for job in jobs]
    for job in jobs:
        assert api.poll(job, timeout_s=60)[-1]["state"] == "cancelled"
    may_have_sent = sum(1 for answer in answers if answer.get("beforeSend") is not True)
    assert len(api.ledger(mark)) <= may_have_sent, answers


def test_a_callers_jobs_list_newest_first_in_pages(api: Api):
    carol = {"x-ms-client-principal-id": "carol"}
    ids = [
        api.start(headers=carol, prompt=f"{PROMPT} for carol {i}", **SMALL).json()["id"]
        for i in range(3)
    ]
    first = api.http.get("/api/images", params={"limit": 2}, headers=carol).json()
    assert [item["id"] for item in first["items"]] == ids[::-1][:2]
    assert first["next"]
    second = api.http.get(first["next"], headers=carol).json()
    assert [item["id"] for item in second["items"]] == [ids[0]]
    assert second["next"] is None
    others = api.http.get("/api/images", headers={"x-ms-client-principal-id": "dave"}).json()
    assert others == {"items": [], "next": None}
