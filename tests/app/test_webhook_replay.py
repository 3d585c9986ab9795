"""Webhooks in the orchestrations, replayed through the SDK's handle from hand-built histories:
the job hands its end's event to a delivery started apart and completes without waiting for
it; the delivery retries on durable timers with the same event and stops when it is done."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

import wiring
from orchestrators import webhook_delivery
from orchestrators.image_job import FINISH, GENERATE
from orchestrators.image_job import bp as jobs_bp
from orchestrators.route_entity import REPORT
from orchestrators.webhook_delivery import DELIVER, START
from rules.job_records import JobInput, JobState, Outcome
from rules.records import RecordUnreadable
from rules.webhook_events import job_event
from rules.webhooks import DeliveryAttempt, DeliverySchedule, WebhookDelivery, WebhookTarget

from .durable_history import T0, History, activities, orchestrator_handle, timers
from .test_orchestrator_replay import (
    PROMPT,
    ROUTE,
    SETTINGS,
    admit,
    fire_at,
    job_input,
    only,
    saved,
)

TARGET = WebhookTarget("https://hooks.example.com/in?token=t", "http://127.0.0.1:7071/api/images")


@pytest.fixture(autouse=True)
def app_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("IMAGE_", "IMAGES_")):
            monkeypatch.delenv(name)
    for name, value in {
        **SETTINGS,
        "IMAGE_WEBHOOK_SECRET": "test-only-webhook-secret-0123",
        "IMAGE_WEBHOOK_MAX_ATTEMPTS": "3",
    }.items():
        monkeypatch.setenv(name, value)
    wiring.settings.cache_clear()
    yield
    wiring.settings.cache_clear()


def hooked_job() -> dict[str, Any]:
    job = JobInput.from_json(job_input())
    return JobInput.from_json({**job.to_json(), "v": 3, "webhook": TARGET.to_json()}).to_json()


def test_the_job_starts_its_delivery_after_metadata_and_ends_without_waiting_for_it():
    history = History(orchestrator_handle(jobs_bp, "image_job"), "img-1", hooked_job())
    history.step()
    admit(history, 0)
    history.step()
    history.complete_activity(1, GENERATE, saved(1), after_s=22)
    _, actions = history.step()
    assert activities(actions, START) == []  # metadata.json first
    history.signal_sent(2, ROUTE, REPORT)
    history.complete_activity(3, FINISH, {"metadata_blob": "img-1/metadata.json"}, after_s=0.2)
    state, actions = history.step()
    assert state["isDone"] is False
    start = only(activities(actions, START))
    delivery = WebhookDelivery.from_json(start["input"])
    assert delivery.job_id == "img-1"
    assert delivery.caller == "caller-digest"
    assert delivery.target == TARGET
    assert delivery.event.webhook_id == "msg_img-1_saved"
    assert delivery.event.data["statusUrl"] == "http://127.0.0.1:7071/api/images/img-1"
    assert delivery.event.data["image"]["width"] == 1024
    assert PROMPT not in str(start["input"])
    history.complete_activity(4, START, {"started": True}, after_s=0.05)
    state = history.episode()
    assert state["isDone"] is True
    assert state["output"]["state"] == "saved"


def test_a_job_without_a_webhook_starts_no_delivery():
    history = History(orchestrator_handle(jobs_bp, "image_job"), "img-1", job_input())
    history.step()
    admit(history, 0)
    history.step()
    history.complete_activity(1, GENERATE, saved(1), after_s=22)
    history.step()
    history.signal_sent(2, ROUTE, REPORT)
    history.complete_activity(3, FINISH, {}, after_s=0.2)
    state, actions = history.step()
    assert activities(actions, START) == []
    assert state["isDone"] is True


def test_a_delivery_that_cannot_be_started_leaves_the_jobs_outcome():
    history = History(orchestrator_handle(jobs_bp, "image_job"), "img-1", hooked_job())
    history.step()
    admit(history, 0)
    history.step()
    history.complete_activity(1, GENERATE, saved(1), after_s=22)
    history.step()
    history.signal_sent(2, ROUTE, REPORT)
    history.complete_activity(3, FINISH, {"metadata_blob": "img-1/metadata.json"}, after_s=0.2)
    _, actions = history.step()
    assert only(activities(actions, START))["actionType"] == 1  # with retry: the host retries
    # The host retries it: after each of the 5 failures a retry timer, then the task again.
    for failure in range(5):
        task_id = 4 + 2 * failure
        history.schedule_activity(task_id, START)
        history.task_failed(task_id, "start refused", "no answer", after_s=1)
        history.fire_timer(task_id + 1, "2026-05-07T14:00:00.0000000Z")
    state = history.episode()
    assert state["isDone"] is True
    assert state["output"]["state"] == "saved"
    assert state["output"]["metadata_blob"] == "img-1/metadata.json"


def delivery_input() -> dict[str, Any]:
    event = job_event("img-1", Outcome(JobState.SAVED, attempt=1), TARGET, T0)
    return WebhookDelivery("img-1", "2026-05-07T13:46:00.000Z", "digest", TARGET, event).to_json()


def attempt(number: int, status: int | None, error: str | None = None) -> dict[str, Any]:
    return DeliveryAttempt(number, "t", 20, status_code=status, error=error).to_json()


@pytest.fixture(scope="module")
def delivery_handle() -> Any:
    return orchestrator_handle(webhook_delivery.bp, webhook_delivery.ORCHESTRATOR)


def test_a_500_is_retried_on_a_durable_timer_with_the_attempts_so_far(delivery_handle: Any):
    history = History(delivery_handle, "img-1-webhook", delivery_input())
    _, actions = history.step()
    first = only(activities(actions, DELIVER))
    assert first["input"]["attempts"] == []
    history.complete_activity(0, DELIVER, attempt(1, 500), after_s=0.1)
    state, actions = history.step()
    timer = only(timers(actions))
    assert fire_at(timer) - history.now == timedelta(seconds=5)  # the schedule's first wait
    history.fire_timer(1, timer["fireAt"])
    _, actions = history.step()
    second = only(activities(actions, DELIVER))
    assert [a["status_code"] for a in second["input"]["attempts"]] == [500]
    assert second["input"]["event"] == first["input"]["event"]  # the same event, the same id
    history.complete_activity(2, DELIVER, attempt(2, 200), after_s=0.1)
    state = history.episode()
    assert state["isDone"] is True
    assert state["output"]["state"] == "delivered"
    assert [a["status_code"] for a in state["output"]["attempts"]] == [500, 200]


def test_the_delivery_gives_up_after_the_last_attempt(delivery_handle: Any):
    history = History(delivery_handle, "img-1-webhook", delivery_input())
    history.step()
    task = 0
    for number, wait in ((1, 5), (2, 30)):
        history.complete_activity(task, DELIVER, attempt(number, 503), after_s=0.1)
        _, actions = history.step()
        timer = only(timers(actions))
        assert fire_at(timer) - history.now == timedelta(seconds=wait)
        history.fire_timer(task + 1, timer["fireAt"])
        history.step()
        task += 2
    history.complete_activity(task, DELIVER, attempt(3, 503), after_s=0.1)
    state = history.episode()
    assert state["isDone"] is True
    assert state["output"]["state"] == "failed"
    assert len(state["output"]["attempts"]) == 3


def test_a_refused_target_is_not_tried_again(delivery_handle: Any):
    history = History(delivery_handle, "img-1-webhook", delivery_input())
    history.step()
    refused = attempt(1, None, "refused: the host resolves to a loopback address")
    history.complete_activity(0, DELIVER, refused, after_s=0.1)
    state, actions = history.step()
    assert timers(actions) == []
    assert state["isDone"] is True
    assert state["output"]["state"] == "refused"


def test_an_activity_that_failed_is_a_failed_attempt_tried_again(delivery_handle: Any):
    history = History(delivery_handle, "img-1-webhook", delivery_input())
    history.step()
    history.schedule_activity(0, DELIVER)
    history.task_failed(0, "boom", "a bug", after_s=0.1)
    state, actions = history.step()
    assert state["isDone"] is False
    only(timers(actions))


def test_the_delivery_follows_the_schedule_frozen_at_its_start_not_the_settings_of_now(
    delivery_handle: Any, monkeypatch: pytest.MonkeyPatch
):
    """The settings allow 3 attempts (and first wait 5 s); the delivery started under 2, after
    a 12 s wait: a settings change never replays it differently."""
    frozen = WebhookDelivery.from_json(delivery_input())
    frozen = replace(frozen, schedule=DeliverySchedule((12.0,), max_attempts=2))
    assert frozen.to_json()["v"] == 2
    history = History(delivery_handle, "img-1-webhook", frozen.to_json())
    history.step()
    history.complete_activity(0, DELIVER, attempt(1, 503), after_s=0.1)
    _, actions = history.step()
    timer = only(timers(actions))
    assert fire_at(timer) - history.now == timedelta(seconds=12)
    history.fire_timer(1, timer["fireAt"])
    _, actions = history.step()
    assert only(activities(actions, DELIVER))["input"]["schedule"]["max_attempts"] == 2
    history.complete_activity(2, DELIVER, attempt(2, 503), after_s=0.1)
    state = history.episode()
    assert state["isDone"] is True
    assert state["output"]["state"] == "failed"
    assert len(state["output"]["attempts"]) == 2


def test_the_start_freezes_the_settings_schedule_into_the_delivery(monkeypatch):
    """The start activity (which may read the settings) gives the delivery its schedule; a
    version 1 delivery without one reads as before (the orchestration falls back to the
    settings of the moment)."""
    started: dict[str, Any] = {}

    class Client:
        async def get_status(self, instance: str) -> None:
            return None

        async def start_new(self, name: str, instance: str, value: dict[str, Any]) -> None:
            started.update(name=name, instance=instance, value=value)

    old = delivery_input()
    assert old["v"] == 1
    assert WebhookDelivery.from_json(old).schedule is None
    function = next(
        f.get_user_function()
        for f in _app_functions()
        if f.get_function_name() == "start_webhook_delivery"
    )
    # The activity's own code, past the SDK's wrapper that builds the client from its binding.
    asyncio.run(function.__wrapped__(old, Client()))
    delivery = WebhookDelivery.from_json(started["value"])
    assert started["value"]["v"] == 2
    assert delivery.schedule == DeliverySchedule((5.0, 30.0, 120.0, 600.0, 3600.0), 3)
    with pytest.raises(RecordUnreadable, match="newer"):
        WebhookDelivery.from_json({**started["value"], "v": 3})


def _app_functions() -> list[Any]:
    import azure.durable_functions as df

    from activities.blueprint import bp as activities_bp

    app = df.DFApp()
    app.register_functions(activities_bp)
    return list(app.get_functions())


def test_a_delivery_with_its_schedule_frozen_never_reads_the_settings(
    delivery_handle: Any, monkeypatch: pytest.MonkeyPatch
):
    """Settings that no longer load (no route named) fail no version 2 delivery: it retries
    and ends by the schedule in its input alone."""
    monkeypatch.setenv("IMAGE_ROUTES", "")
    wiring.settings.cache_clear()
    with pytest.raises(Exception, match="IMAGE_ROUTES"):
        wiring.settings()
    frozen = replace(
        WebhookDelivery.from_json(delivery_input()),
        schedule=DeliverySchedule((12.0,), max_attempts=2),
    )
    history = History(delivery_handle, "img-1-webhook", frozen.to_json())
    state, _ = history.step()
    assert not state.get("error")
    history.complete_activity(0, DELIVER, attempt(1, 503), after_s=0.1)
    state, actions = history.step()
    assert not state.get("error")
    timer = only(timers(actions))
    history.fire_timer(1, timer["fireAt"])
    history.step()
    history.complete_activity(2, DELIVER, attempt(2, 503), after_s=0.1)
    state = history.episode()
    assert state["isDone"] is True
    assert state["output"]["state"] == "failed"
