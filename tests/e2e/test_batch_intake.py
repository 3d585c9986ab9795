"""Manifests dropped in Blob, end to end: the batch timer claims each upload exactly once, across
a kill -9 in the middle of its batch, a restart with uploads waiting, and a claim that cannot
finish; and a batch long enough to continue as new.

The stack: the timer every second (IMAGE_BATCH_SCHEDULE); dropped manifests run as the API's own
caller (IMAGE_BATCH_CALLER=anonymous), so GET /api/batches/{id} answers for them; waves of 5,
2 waves per execution and 4 items in flight, so a batch of more than 10 items continues as new.
The Azure route takes 30 requests a minute; the OpenAI route 3, eight times as fast
(tests/e2e/data/batch-intake.json), so most of the time none of its requests is in flight and a
kill can come between two sends (a generation the kill cuts off is generated again by the retry
policy's choice: tests/e2e/test_outages.py). Time scale 25. No assertion on how fast anything is.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobLeaseClient, ContainerClient

from localrun.stack import LocalStack
from loopserver.testing import wait_until
from rules.batches import batch_id_for
from rules.settings import AppSettings

from .batch_runs import (
    BatchRun,
    Durable,
    check_progress,
    check_report_lines,
    check_totals,
    follow,
    items,
    jsonl,
    ledger_of,
    metadata,
    read_report,
    started,
)
from .conftest import Api

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

TIME_SCALE = 25.0
OPENAI_RPM = 3
STACK = {
    "time_scale": TIME_SCALE,
    "simulator_config": Path(__file__).parent / "data" / "batch-intake.json",
    "extra_env": {
        "IMAGE_BATCH_SCHEDULE": "*/1 * * * * *",
        "IMAGE_BATCH_CALLER": "anonymous",
        "IMAGE_BATCH_WAVE": "5",
        "IMAGE_BATCH_WAVES_PER_EXECUTION": "2",
        "IMAGE_BATCH_IN_FLIGHT": "4",
        "IMAGE_ROUTE_AZURE_REQUESTS_PER_MINUTE": "30",
        "IMAGE_ROUTE_OPENAI_REQUESTS_PER_MINUTE": str(OPENAI_RPM),
    },
}
# How far ahead the next send must be for a kill to come before it (wall seconds).
KILL_MARGIN_S = 0.2


class Drops:
    """The batches container as whoever drops manifests sees it."""

    def __init__(self, stack: LocalStack, settings: AppSettings) -> None:
        self.container = ContainerClient.from_connection_string(
            stack.storage_connection_string, settings.storage.batches_container
        )
        with contextlib.suppress(ResourceExistsError):
            self.container.create_container()

    def drop(self, name: str, manifest: bytes) -> str:
        """Upload a manifest; its ETag as the timer lists it."""
        blob = self.container.upload_blob(name, manifest, overwrite=True)
        return str(blob.get_blob_properties().etag).strip('"')

    def names(self, prefix: str) -> list[str]:
        return sorted(self.container.list_blob_names(name_starts_with=prefix))

    def read(self, name: str) -> bytes:
        data: bytes = self.container.download_blob(name).readall()
        return data

    def lease(self, name: str) -> BlobLeaseClient:
        """An infinite lease: nobody deletes the blob until it is broken."""
        return self.container.get_blob_client(name).acquire_lease()


@pytest.fixture(scope="module")
def settings(api: Api) -> AppSettings:
    """The app's settings as devhost reads them (its environment over local settings)."""
    return AppSettings.from_env(api.stack.app_settings(api.stack.app_env()))


@pytest.fixture(scope="module")
def drops(api: Api, settings: AppSettings) -> Iterator[Drops]:
    found = Drops(api.stack, settings)
    with found.container:
        yield found


@pytest.fixture(scope="module")
def durable(api: Api) -> Durable:
    return Durable(api)


def claim_id(settings: AppSettings, name: str, etag: str) -> str:
    """The batch id every timer run computes for this upload (orchestrators.batch_intake)."""
    key = f"blob:{name}:{etag}"
    return batch_id_for(settings.job_id_secret, settings.batches.caller, key, b"")


def timer_runs(api: Api) -> int:
    """How many times the batch timer has run (devhost logs one line per function run)."""
    log = api.stack.devhost.log_path if api.stack.devhost else None
    assert log is not None
    return log.read_text(errors="replace").count("function=claim_batches ")


def wait_timer_runs(api: Api, count: int) -> None:
    """Wait for ``count`` more timer runs (each lists incoming/ again)."""
    target = timer_runs(api) + count
    wait_until(lambda: timer_runs(api) >= target, timeout=30, what=f"{count} timer runs")


def claimed(drops: Drops, name: str) -> None:
    wait_until(lambda: name not in drops.names("incoming/"), timeout=30, what=f"{name} claimed")


def batch_ids(durable: Durable) -> set[str]:
    return {instance["instanceId"] for instance in durable.instances("bat-")}


def restart_devhost(stack: LocalStack, while_down: Callable[[], None]) -> None:
    """Stop devhost as a deployment or a scale-in does (SIGTERM), do ``while_down``, start it
    again on the same state."""
    assert stack.devhost is not None
    stack.devhost.stop()
    while_down()
    stack.devhost = stack.devhost_process()
    stack.devhost.start()


def check_ran_once(
    api: Api, run: BatchRun, manifest: list[Any], mark: int, *, seen_running: bool = True
) -> dict[str, Any]:
    """The batch ran to its end with every item saved and its report complete, and every item
    was billed once, for the image it saved (the callers count any refusal: check_refusals).
    The batch's last answer."""
    check_progress(run, seen_running=seen_running)
    final = run.final
    assert final["state"] == "completed", final
    report = read_report(final)
    check_report_lines(report, manifest)
    check_totals(report, final)
    items_count = sum(1 for line in manifest if "custom_id" in line)
    assert len(report.by_state("saved")) == final["counts"]["saved"] == items_count
    metas = {job_id: metadata(api, job_id) for job_id in report.jobs()}
    per_job = ledger_of(api.ledger(mark), metas)
    for job_id, entries in per_job.items():
        billed = [(e["outcome"], e["billable"]) for e in entries if e["billable"]]
        assert billed == [("completed", True)], (job_id, entries)
        # Anything else the route answered it was a refusal, never billed.
        assert [e["status"] for e in entries if not e["billable"]] == [429] * (len(entries) - 1)
        assert len(metas[job_id]["attempts"]) == len(entries)
    return final


def check_refusals(ledger: list[dict[str, Any]], *, allowed: int) -> None:
    """At most ``allowed`` 429s, none billed. An attempt admitted before a kill -9 and re-run
    after the restart still sends if it is less than max(SEND_GRACE_S = 2 s, a spacing) past
    its slot (orchestrators.image_job), and the governor counts it at its slot until it
    reports: here a spacing is 0.8 s, so it goes out beside the next admitted send, and when
    its report is slow the window the governor sees frees a send before the route's does.
    Seen once in about twenty runs on a loaded 2-core machine."""
    refused = [e for e in ledger if e["status"] == 429]
    assert len(refused) <= allowed, refused
    assert not any(e["billable"] for e in refused)


def test_a_batch_of_many_waves_continues_as_new_and_counts_every_item(
    api: Api, drops: Drops, durable: Durable
):
    manifest = items(25, "waves")
    mark = api.ledger_mark()
    batch_id = started(api.http.post("/api/batches", json={"items": manifest}))
    run = follow(api, batch_id, timeout_s=90)
    # Never more than IMAGE_BATCH_IN_FLIGHT items at once.
    assert max(answer.body["counts"]["running"] for answer in run.answers) <= 4
    final = check_ran_once(api, run, manifest, mark)
    assert final["counts"]["saved"] == 25
    assert [e["status"] for e in api.ledger(mark)] == [200] * 25
    # Five waves, two per execution: three executions, each with its own results.
    stored = drops.names(f"{batch_id}/")
    assert [n for n in stored if "/wave-" in n] == [f"{batch_id}/wave-{w}.json" for w in range(5)]
    assert [n for n in stored if "/results-" in n] == [
        f"{batch_id}/results-{e}.jsonl" for e in range(3)
    ]
    status = durable.status(batch_id)
    assert status is not None
    assert status["runtimeStatus"] == "Completed"
    last = status["input"]
    last = json.loads(last) if isinstance(last, str) else last
    assert (last["execution"], last["next_wave"], last["waves"]) == (2, 4, 5)


def test_a_dropped_manifest_is_claimed_once_and_runs_as_one_batch(
    api: Api, drops: Drops, durable: Durable, settings: AppSettings
):
    before = batch_ids(durable)
    mark = api.ledger_mark()
    manifest = items(6, "drop")
    name = "incoming/catalogue-1.jsonl"
    batch_id = claim_id(settings, name, drops.drop(name, jsonl(manifest)))
    claimed(drops, name)
    # The claim kept the manifest under the batch's id and started the batch under that id.
    assert drops.read(f"claimed/{batch_id}.jsonl") == jsonl(manifest)
    check_ran_once(api, follow(api, batch_id), manifest, mark)
    # Later runs find nothing more to claim.
    wait_timer_runs(api, 2)
    assert batch_ids(durable) == before | {batch_id}
    assert len(api.ledger(mark)) == 6


def test_a_kill_9_in_the_middle_of_a_dropped_batch_leaves_it_processed_once(
    api: Api, drops: Drops, durable: Durable, settings: AppSettings
):
    before = batch_ids(durable)
    mark = api.ledger_mark()
    manifest = [{"batch": {"route": "openai"}}, *items(11, "kill")]
    name = "incoming/catalogue-2.jsonl"
    batch_id = claim_id(settings, name, drops.drop(name, jsonl(manifest)))
    claimed(drops, name)

    def between_sends() -> bool:
        """Three items sent, and every attempt the governor admitted is still to be sent, a
        while from now: none is in flight or being stored (its slot is held until it reports),
        none is about to go."""
        if len(api.ledger(mark)) < 3:
            return False
        now = time.time()
        slots = durable.route_state("openai")["pacer"]["slots"]
        return all(slot["send_at"] > now + KILL_MARGIN_S for slot in slots)

    wait_until(between_sends, timeout=60, interval=0.01, what="a moment between two sends")
    sent_before = len(api.ledger(mark))
    api.stack.crash_devhost()

    final = check_ran_once(api, follow(api, batch_id, timeout_s=90), manifest, mark)
    assert sent_before < final["counts"]["saved"] == 11
    ledger = api.ledger(mark)
    assert sum(1 for e in ledger if e["billable"]) == 11
    check_refusals(ledger, allowed=1)
    assert batch_ids(durable) == before | {batch_id}
    assert drops.names("incoming/") == []
    # It ran across executions (three waves, two per execution), the kill in one of them.
    assert [n for n in drops.names(f"{batch_id}/") if "/results-" in n] == [
        f"{batch_id}/results-0.jsonl",
        f"{batch_id}/results-1.jsonl",
    ]


def test_uploads_waiting_through_a_restart_are_claimed_once_even_one_whose_claim_cannot_finish(
    api: Api, drops: Drops, durable: Durable, settings: AppSettings
):
    """Two manifests dropped while devhost is down. The first is leased by someone else, so
    the claim cannot delete it: its batch starts and runs, and every later run repeats the
    claim (a crash between its steps leaves the same), which must neither start the batch
    again nor hold up the other upload."""
    before = batch_ids(durable)
    mark = api.ledger_mark()
    stuck_lines, plain_lines = items(3, "stuck"), items(3, "plain")
    stuck, plain = "incoming/restart-a.jsonl", "incoming/restart-b.jsonl"
    ids: dict[str, str] = {}
    leases: list[BlobLeaseClient] = []

    def drop_both() -> None:
        ids[stuck] = claim_id(settings, stuck, drops.drop(stuck, jsonl(stuck_lines)))
        leases.append(drops.lease(stuck))
        ids[plain] = claim_id(settings, plain, drops.drop(plain, jsonl(plain_lines)))

    restart_devhost(api.stack, drop_both)
    claimed(drops, plain)
    check_ran_once(api, follow(api, ids[plain]), plain_lines, mark)

    # The leased upload's batch ran all the same, once, and stays done while runs go on.
    first = check_ran_once(api, follow(api, ids[stuck]), stuck_lines, mark, seen_running=False)
    assert drops.names("incoming/") == [stuck]
    wait_timer_runs(api, 3)
    answer = api.http.get(f"/api/batches/{ids[stuck]}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["createdAt"] == first["createdAt"]
    assert answer.json()["state"] == "completed"
    assert len(api.ledger(mark)) == 6

    # Once the lease is gone, the next run finishes the claim: the upload is deleted.
    leases[0].break_lease()
    claimed(drops, stuck)
    wait_timer_runs(api, 2)
    assert api.http.get(f"/api/batches/{ids[stuck]}").json()["createdAt"] == first["createdAt"]
    assert batch_ids(durable) == before | set(ids.values())
    assert len(api.ledger(mark)) == 6
