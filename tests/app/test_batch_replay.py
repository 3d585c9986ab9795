"""The batch orchestration (orchestrators.image_batch, orchestrators.batch_api_flow), replayed
through the SDK's handle from hand-built histories (tests/app/durable_history.py).

Activities with a durable retry take a task id per try and one per wait between tries (the
SDK's RetryAbleTask): a try that fails is followed by a timer, then the next try.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

import wiring
from orchestrators.batch_api_flow import (
    API_ABANDON,
    API_CANCEL,
    API_COLLECT_CHUNK,
    API_COLLECT_END,
    API_POLL,
    API_SUBMIT,
    CANCEL_SETTLE_POLLS,
    COLLECT_RETRY,
    POLL_RETRY,
)
from orchestrators.image_batch import (
    BATCH_RETRY,
    CANCEL_EVENT,
    READ_WAVE,
    REPORT,
    RESULTS,
    SPLIT,
    bp,
)
from orchestrators.image_job import ORCHESTRATOR as IMAGE_JOB
from orchestrators.route_entity import CANCEL_BATCH
from rules.batch_records import (
    BatchCounts,
    BatchDecided,
    BatchInput,
    BatchReport,
    BatchSplit,
    CollectedChunk,
    Upstream,
    WaveItem,
)
from rules.batches import BatchMode, BatchPlan
from rules.timing import iso_utc

from .app_settings import only_settings
from .durable_history import (
    History,
    activities,
    entity_signals,
    new_actions,
    orchestrator_handle,
    timers,
)
from .test_orchestrator_replay import SETTINGS

BATCH = "bat-0123456789abcdef01234567"
DECIDED = BatchDecided(
    in_flight=200, waves_per_execution=5, routes=("azure",), poll_s=60.0, give_up_s=90_000.0
)


@pytest.fixture(autouse=True)
def app_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with only_settings(monkeypatch, SETTINGS):
        yield


@pytest.fixture(scope="module")
def handle() -> Any:
    return orchestrator_handle(bp, "image_batch")


def batch_input(
    mode: BatchMode = BatchMode.BATCH_API,
    *,
    waves: int | None = 1,
    decided: BatchDecided | None = DECIDED,
) -> dict[str, Any]:
    plan = BatchPlan(
        mode=mode,
        reason="a deadline 30 h away on a route with the Batch API",
        items=2,
        invalid=0,
        realtime_usd=0.02,
        batch_api_usd=0.01,
        realtime_s=12.0,
        deadline=None,
        route="azure" if mode is BatchMode.BATCH_API else None,
    )
    return BatchInput(
        batch_id=BATCH,
        caller="caller-digest",
        created_at="2026-11-30T09:00:00.000Z",
        manifest=f"claimed/{BATCH}.jsonl",
        plan=plan,
        waves=waves,
        counts=BatchCounts(items=2),
        decided=decided,
    ).to_json()


def stamp(moment: datetime) -> str:
    """A timer's FireAt as the host writes it (microseconds)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def upstream(status: str, **more: Any) -> dict[str, Any]:
    return Upstream(batch="batch_up1", status=status, total=2, **more).to_json()


def fail_through_retries(history: History, first_id: int, name: str, tries: int) -> int:
    """Every try of the retried activity (task ``first_id``) fails, each followed by the SDK's
    wait; the next free task id is returned."""
    task = first_id
    for _ in range(tries):
        history.schedule_activity(task, name)
        history.task_failed(task, "ConnectionError", "the route is not answering", after_s=1)
        history.fire_timer(task + 1, stamp(history.now + timedelta(seconds=5)))
        task += 2
    return task


def report(history: History, task: int) -> dict[str, Any]:
    counts = BatchCounts(items=2, failed=2)
    done = BatchReport(f"{BATCH}/report.jsonl", f"{BATCH}/report.csv", counts).to_json()
    history.complete_activity(task, REPORT, done, after_s=1)
    state = history.episode()
    assert state["isDone"] is True
    output: dict[str, Any] = state["output"]
    return output


def submitted(handle: Any, **input_: Any) -> History:
    """A Batch API batch through its submit (task 0) to its first poll wait (timer, task 1)."""
    history = History(handle, BATCH, batch_input(**input_))
    _, actions = history.step()
    only(activities(actions, API_SUBMIT))
    history.complete_activity(0, API_SUBMIT, upstream("validating"), after_s=1)
    _, actions = history.step()
    only(timers(actions))
    return history


def test_a_poll_that_fails_counts_as_unchanged_and_the_next_poll_comes_on_its_timer(handle):
    history = submitted(handle)
    history.fire_timer(1, stamp(history.now + timedelta(seconds=60)))
    _, actions = history.step()
    poll = only(activities(actions, API_POLL))
    assert poll["input"]["upstream"] == "batch_up1"

    task = fail_through_retries(history, 2, API_POLL, POLL_RETRY.max_number_of_attempts)
    state, actions = history.step()
    # Not failed, nothing cancelled: the next poll waits on its timer (twice the first wait).
    assert state["isDone"] is False
    assert activities(actions, API_ABANDON) == []
    wait = only(timers(actions))
    assert wait["fireAt"].startswith(iso_utc(history.now + timedelta(seconds=120))[:19])

    history.fire_timer(task, wait["fireAt"])
    _, actions = history.step()
    only(activities(actions, API_POLL))
    history.complete_activity(task + 1, API_POLL, upstream("in_progress"), after_s=1)
    state, actions = history.step()
    assert state["customStatus"]["upstream_status"] == "in_progress"
    only(timers(actions))


def test_past_the_completion_window_the_upstream_batch_is_cancelled_and_the_batch_fails(handle):
    history = submitted(handle, decided=replace(DECIDED, give_up_s=100.0))
    # The first wait (60 s), a poll that fails; the next wait ends at the window's end (100 s).
    history.fire_timer(1, stamp(history.now + timedelta(seconds=60)))
    history.step()
    task = fail_through_retries(history, 2, API_POLL, POLL_RETRY.max_number_of_attempts)
    _, actions = history.step()
    history.fire_timer(task, only(timers(actions))["fireAt"])
    _, actions = history.step()
    task = fail_through_retries(history, task + 1, API_POLL, POLL_RETRY.max_number_of_attempts)
    _state, actions = history.step()

    abandon = only(activities(actions, API_ABANDON))
    assert abandon["input"]["upstream"] == "batch_up1"
    assert "past its completion window" in abandon["input"]["reason"]
    history.complete_activity(task, API_ABANDON, {"upstream": upstream("cancelling")}, after_s=1)
    # The cancel is waited out (a poll on a timer): it ends with nothing finished.
    _, actions = history.step()
    history.fire_timer(task + 1, only(timers(actions))["fireAt"])
    _, actions = history.step()
    only(activities(actions, API_POLL))
    history.complete_activity(task + 2, API_POLL, upstream("cancelled"), after_s=1)
    _, actions = history.step()
    end = only(activities(actions, API_COLLECT_END))
    assert end["input"]["chunks"] == []  # every item ends failed, with its metadata
    assert end["input"]["status"] == "unfinished"
    history.complete_activity(task + 3, API_COLLECT_END, {"items": 2}, after_s=1)
    _, actions = history.step()
    assert only(activities(actions, REPORT))["input"]["executions"] == 1
    output = report(history, task + 4)
    assert output["state"] == "failed"
    assert "past its completion window" in output["reason"]
    assert output["report_jsonl"] == f"{BATCH}/report.jsonl"


def past_the_window(handle: Any) -> tuple[History, int]:
    """A Batch API batch whose polls fail until its completion window has passed: the next
    free task id once its abandon (cancel and record) is scheduled as that id."""
    history = submitted(handle, decided=replace(DECIDED, give_up_s=60.0))
    history.fire_timer(1, stamp(history.now + timedelta(seconds=60)))
    history.step()
    task = fail_through_retries(history, 2, API_POLL, POLL_RETRY.max_number_of_attempts)
    _, actions = history.step()
    only(activities(actions, API_ABANDON))
    return history, task


def test_an_upstream_batch_found_completed_after_a_failure_here_is_still_collected(handle):
    """Its images were generated and billed: the abandon finds the upstream batch completed,
    and its output is collected as the items' images before the batch ends failed."""
    history, task = past_the_window(handle)
    done = upstream("completed", output_file="file_out")
    history.complete_activity(task, API_ABANDON, {"upstream": done}, after_s=1)
    _, actions = history.step()
    chunk = only(activities(actions, API_COLLECT_CHUNK))["input"]
    assert (chunk["file_id"], chunk["offset"]) == ("file_out", 0)
    got = CollectedChunk(f"{BATCH}/collect/output-0.jsonl", 2, None).to_json()
    history.complete_activity(task + 1, API_COLLECT_CHUNK, got, after_s=5)
    _, actions = history.step()
    end = only(activities(actions, API_COLLECT_END))["input"]
    assert end["chunks"] == [f"{BATCH}/collect/output-0.jsonl"]
    assert end["status"] == "completed"
    history.complete_activity(task + 2, API_COLLECT_END, {"items": 2}, after_s=1)
    _, actions = history.step()
    only(activities(actions, REPORT))
    output = report(history, task + 3)
    assert output["state"] == "failed"
    assert "past its completion window" in output["reason"]
    assert "collected" in output["reason"]


def test_a_cancel_after_a_failure_here_is_waited_out_and_what_it_finished_collected(handle):
    history, task = past_the_window(handle)
    history.complete_activity(task, API_ABANDON, {"upstream": upstream("cancelling")}, after_s=1)
    task += 1
    for status in ("cancelling", "cancelled"):
        _, actions = history.step()
        history.fire_timer(task, only(timers(actions))["fireAt"])
        _, actions = history.step()
        only(activities(actions, API_POLL))
        ended = upstream(status, output_file="file_out" if status == "cancelled" else None)
        history.complete_activity(task + 1, API_POLL, ended, after_s=1)
        task += 2
    _, actions = history.step()
    only(activities(actions, API_COLLECT_CHUNK))
    got = CollectedChunk(f"{BATCH}/collect/output-0.jsonl", 1, None).to_json()
    history.complete_activity(task, API_COLLECT_CHUNK, got, after_s=5)
    _, actions = history.step()
    end = only(activities(actions, API_COLLECT_END))["input"]
    assert (end["status"], end["chunks"]) == ("cancelled", [f"{BATCH}/collect/output-0.jsonl"])


def test_a_cancel_that_does_not_end_is_waited_for_a_bounded_while(handle):
    history, task = past_the_window(handle)
    history.complete_activity(task, API_ABANDON, {"upstream": upstream("cancelling")}, after_s=1)
    task += 1
    for _ in range(CANCEL_SETTLE_POLLS):
        _, actions = history.step()
        assert activities(actions, API_COLLECT_END) == []
        history.fire_timer(task, only(timers(actions))["fireAt"])
        history.step()
        history.complete_activity(task + 1, API_POLL, upstream("cancelling"), after_s=1)
        task += 2
    _, actions = history.step()
    assert timers(actions) == []
    end = only(activities(actions, API_COLLECT_END))["input"]
    assert (end["status"], end["chunks"]) == ("unfinished", [])


def test_a_collect_that_failed_is_not_tried_again_by_the_abandon(handle):
    """When collecting the output is what failed (through its retries), the abandon does not
    collect again: what was collected stays, the rest ends failed."""
    history = submitted(handle)
    history.fire_timer(1, stamp(history.now + timedelta(seconds=60)))
    history.step()
    history.complete_activity(2, API_POLL, upstream("completed", output_file="f"), after_s=1)
    history.step()
    task = fail_through_retries(history, 3, API_COLLECT_CHUNK, COLLECT_RETRY.max_number_of_attempts)
    _, actions = history.step()
    only(activities(actions, API_ABANDON))
    done = upstream("completed", output_file="f")
    history.complete_activity(task, API_ABANDON, {"upstream": done}, after_s=1)
    _, actions = history.step()
    assert activities(actions, API_COLLECT_CHUNK) == []
    end = only(activities(actions, API_COLLECT_END))["input"]
    assert (end["status"], end["chunks"]) == ("unfinished", [])


def test_the_output_is_collected_in_chunks_each_from_where_the_last_stopped(handle):
    history = submitted(handle)
    history.fire_timer(1, stamp(history.now + timedelta(seconds=60)))
    history.step()
    done = upstream("completed", output_file="file_out", error_file="file_err")
    history.complete_activity(2, API_POLL, done, after_s=1)
    _, actions = history.step()
    first = only(activities(actions, API_COLLECT_CHUNK))["input"]
    assert (first["file_id"], first["offset"]) == ("file_out", 0)

    more = CollectedChunk(f"{BATCH}/collect/output-0.jsonl", 50, 4096).to_json()
    history.complete_activity(3, API_COLLECT_CHUNK, more, after_s=60)
    _, actions = history.step()
    second = only(activities(actions, API_COLLECT_CHUNK))["input"]
    assert (second["file_id"], second["offset"]) == ("file_out", 4096)

    last = CollectedChunk(f"{BATCH}/collect/output-4096.jsonl", 3, None).to_json()
    history.complete_activity(4, API_COLLECT_CHUNK, last, after_s=5)
    _, actions = history.step()
    errors = only(activities(actions, API_COLLECT_CHUNK))["input"]
    assert (errors["file_id"], errors["offset"]) == ("file_err", 0)

    err = CollectedChunk(f"{BATCH}/collect/error-0.jsonl", 1, None).to_json()
    history.complete_activity(5, API_COLLECT_CHUNK, err, after_s=1)
    _, actions = history.step()
    end = only(activities(actions, API_COLLECT_END))["input"]
    assert end["chunks"] == [
        f"{BATCH}/collect/output-0.jsonl",
        f"{BATCH}/collect/output-4096.jsonl",
        f"{BATCH}/collect/error-0.jsonl",
    ]
    assert end["status"] == "completed"


def test_a_collect_that_fails_through_its_retries_ends_the_batch_failed_keeping_what_it_stored(
    handle,
):
    history = submitted(handle)
    history.fire_timer(1, stamp(history.now + timedelta(seconds=60)))
    history.step()
    history.complete_activity(2, API_POLL, upstream("completed", output_file="f"), after_s=1)
    history.step()
    more = CollectedChunk(f"{BATCH}/collect/output-0.jsonl", 50, 4096).to_json()
    history.complete_activity(3, API_COLLECT_CHUNK, more, after_s=60)
    history.step()
    task = fail_through_retries(history, 4, API_COLLECT_CHUNK, COLLECT_RETRY.max_number_of_attempts)
    _, actions = history.step()
    only(activities(actions, API_ABANDON))
    history.complete_activity(task, API_ABANDON, {"upstream": upstream("completed")}, after_s=1)
    _, actions = history.step()
    end = only(activities(actions, API_COLLECT_END))["input"]
    assert end["chunks"] == [f"{BATCH}/collect/output-0.jsonl"]


def test_a_cancel_while_the_manifest_is_split_submits_nothing_upstream(handle):
    history = History(handle, BATCH, batch_input(waves=None))
    _, actions = history.step()
    only(activities(actions, SPLIT))
    history.schedule_activity(0, SPLIT)
    history.raise_event(CANCEL_EVENT, "{}", after_s=0.5)
    history.activity_result(0, BatchSplit(items=2, invalid=0, waves=1).to_json(), after_s=1)
    _state, actions = history.step()

    assert activities(actions, API_SUBMIT) == []
    results = only(activities(actions, RESULTS))["input"]
    assert results["unread_waves"] == [0]  # every item reported cancelled, never sent
    assert results["results"] == []
    history.complete_activity(1, RESULTS, {"written": 2}, after_s=1)
    output = report(history, 2)
    assert output["state"] == "cancelled"


def test_a_wave_that_cannot_be_read_ends_the_batch_failed_with_its_report(handle):
    history = History(handle, BATCH, batch_input(BatchMode.REALTIME, waves=2))
    _, actions = history.step()
    only(activities(actions, READ_WAVE))
    task = fail_through_retries(history, 0, READ_WAVE, BATCH_RETRY.max_number_of_attempts)
    _state, actions = history.step()

    results = only(activities(actions, RESULTS))["input"]
    assert results["unread_waves"] == [0, 1]
    history.complete_activity(task, RESULTS, {"written": 2}, after_s=1)
    _, actions = history.step()
    only(activities(actions, REPORT))
    output = report(history, task + 1)
    assert output["state"] == "failed"
    assert "wave 0" in output["reason"]


def test_the_batch_activities_ride_out_a_blob_outage_of_minutes(handle):
    """Blob is out for over five minutes while a wave is read. The host retries the read on
    the retry options the orchestration gave it (each failed try, a durable wait, the next
    try); replayed through those tries, the batch waits on, and the read that finally
    succeeds starts the wave's items: the batch never fails for it."""
    history = History(handle, BATCH, batch_input(BatchMode.REALTIME, waves=1))
    _, actions = history.step()
    read = only(activities(actions, READ_WAVE))
    options = read["retryOptions"]
    wait_s = options["firstRetryIntervalInMilliseconds"] / 1000
    started = history.now
    task = 0
    while history.now - started < timedelta(minutes=5):
        history.schedule_activity(task, READ_WAVE)
        history.task_failed(task, "ServiceRequestError", "Blob is not answering", after_s=1)
        history.fire_timer(task + 1, stamp(history.now + timedelta(seconds=wait_s)))
        state, actions = history.step()
        assert state["isDone"] is False
        assert actions == []  # still waiting on the same read
        task += 2
    assert task // 2 < options["maxNumberOfAttempts"]  # tries are left after five minutes
    history.complete_activity(task, READ_WAVE, wave(2), after_s=1)
    state, actions = history.step()
    assert state["isDone"] is False
    items = [a for a in actions if a["actionType"] == 2 and a["functionName"] == IMAGE_JOB]
    assert len(items) == 2
    assert activities(actions, RESULTS) == []


def test_a_report_that_cannot_be_written_still_ends_the_batch_in_a_terminal_state(handle):
    history = History(handle, BATCH, batch_input(BatchMode.REALTIME, waves=0))
    _, actions = history.step()
    history.complete_activity(0, RESULTS, {"written": 0}, after_s=1)
    _, actions = history.step()
    only(activities(actions, REPORT))
    fail_through_retries(history, 1, REPORT, BATCH_RETRY.max_number_of_attempts)
    state = history.episode()
    assert state["isDone"] is True
    assert state["output"]["state"] == "failed"
    assert "report" in state["output"]["reason"]


def wave(count: int) -> list[dict[str, Any]]:
    return [WaveItem(i + 1, f"c{i}", f"img-{i}", {"job": i}).to_json() for i in range(count)]


def test_items_in_flight_are_frozen_in_the_input_not_read_from_the_settings(
    handle, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("IMAGE_BATCH_IN_FLIGHT", "200")
    wiring.settings.cache_clear()
    frozen = replace(DECIDED, in_flight=2)
    history = History(handle, BATCH, batch_input(BatchMode.REALTIME, decided=frozen))
    history.step()
    history.complete_activity(0, READ_WAVE, wave(5), after_s=1)
    _, actions = history.step()
    started = [a for a in actions if a["actionType"] == 2 and a["functionName"] == IMAGE_JOB]
    assert len(started) == 2


@pytest.mark.parametrize("mode", [BatchMode.REALTIME, BatchMode.BATCH_API])
def test_a_frozen_batch_never_reads_the_settings(handle, monkeypatch: pytest.MonkeyPatch, mode):
    """Malformed settings (no route at all) fail no batch of version 2: it schedules by its
    input, in either mode."""
    monkeypatch.setenv("IMAGE_ROUTES", "")
    wiring.settings.cache_clear()
    with pytest.raises(Exception, match="IMAGE_ROUTES"):
        wiring.settings()
    history = History(handle, BATCH, batch_input(mode, decided=DECIDED))
    state, actions = history.step()
    assert not state.get("error")
    assert actions  # its first step (the split, or the first wave) is scheduled


def test_an_input_of_the_previous_version_still_reads_its_in_flight_from_the_settings(
    handle, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("IMAGE_BATCH_IN_FLIGHT", "3")
    wiring.settings.cache_clear()
    old = batch_input(BatchMode.REALTIME, decided=None)
    assert old["v"] == 1
    assert "decided" not in old
    history = History(handle, BATCH, old)
    history.step()
    history.complete_activity(0, READ_WAVE, wave(5), after_s=1)
    state = history.episode()
    started = [
        a for a in new_actions(state, 0) if a["actionType"] == 2 and a["functionName"] == IMAGE_JOB
    ]
    assert len(started) == 3


def test_a_cancel_during_the_submit_cancels_the_upstream_batch_at_once(handle):
    history = History(handle, BATCH, batch_input())
    history.step()
    history.schedule_activity(0, API_SUBMIT)
    history.raise_event(CANCEL_EVENT, "{}", after_s=0.5)
    history.activity_result(0, upstream("validating"), after_s=1)
    _, actions = history.step()
    cancel = only(activities(actions, API_CANCEL))
    assert cancel["input"]["upstream"] == "batch_up1"
    history.complete_activity(2, API_CANCEL, upstream("cancelling"), after_s=1)
    _, actions = history.step()
    assert activities(actions, API_CANCEL) == []  # once: then polled until it has ended
    only(timers(actions))


def test_a_cancel_reaches_every_route_the_split_found_its_items_at(handle):
    """The routes a cancel reaches are those the items may queue at, as the split found them
    (each item's route and its failover partner), not the settings' routes when the batch
    started: one an item names that was not among those still hears the cancel."""
    history = History(handle, BATCH, batch_input(BatchMode.REALTIME, waves=None))
    _, actions = history.step()
    only(activities(actions, SPLIT))
    split = BatchSplit(items=2, invalid=0, waves=1, routes=("azure", "openai")).to_json()
    history.complete_activity(0, SPLIT, split, after_s=1)
    _, actions = history.step()
    only(activities(actions, READ_WAVE))
    history.complete_activity(1, READ_WAVE, wave(2), after_s=1)
    _, actions = history.step()
    started = [a for a in actions if a["actionType"] == 2 and a["functionName"] == IMAGE_JOB]
    assert len(started) == 2
    history.raise_event(CANCEL_EVENT, "{}", after_s=5)
    _, actions = history.step()
    reached = [a["instanceId"] for a in entity_signals(actions, CANCEL_BATCH)]
    assert reached == ["@route@azure", "@route@openai"]
