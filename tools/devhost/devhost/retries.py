"""Host-side retries of CallActivityWithRetry and CallSubOrchestratorWithRetry, as DTFx does them.

azure-functions-durable 1.x sends a with-retry call once and leaves the attempts to the host:
after each failed attempt a retry timer, when it fires the call again, each with a new task id
the SDK counts as well. The episode runner asks here which events belong to a with-retry call
(`retry_for`, `allocates`) and hands those to `apply_retry_event`. The bookkeeping lives in the
instance's runtime (`InstanceRuntime.retries`, one `RetryGroup` per call still running).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from devhost import history as h
from devhost.episode_plan import Plan, next_id, schedule_call
from devhost.history import EventType
from devhost.instances import iso
from devhost.replay import ActionType
from devhost.store import CallSpec, InstanceRow, InstanceRuntime, RetryGroup

__all__ = [
    "DEFAULT_MAX_RETRY_INTERVAL",
    "allocates",
    "apply_retry_event",
    "retry_delay",
    "retry_for",
    "track_retry",
]

# The extension's RetryOptions default for maxRetryIntervalInMilliseconds (6 days).
DEFAULT_MAX_RETRY_INTERVAL = timedelta(days=6)


def track_retry(
    rt: InstanceRuntime,
    action: dict[str, Any],
    group: CallSpec,
    task_id: int,
    now: datetime,
) -> None:
    """Start the bookkeeping of a with-retry call just scheduled under `task_id`."""
    if action.get("actionType") not in (
        ActionType.CALL_ACTIVITY_WITH_RETRY,
        ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY,
    ):
        return
    options = dict(action.get("retryOptions") or {})
    options.setdefault("maxNumberOfAttempts", 1)
    rt["retries"].append(
        {
            **group,
            "options": options,
            "failures": 0,
            "first_attempt": iso(now),
            "task_id": task_id,
            "timer_id": None,
        }
    )


def retry_for(rt: InstanceRuntime, event: h.Event) -> RetryGroup | None:
    """The with-retry call this completion or fired timer belongs to, if any."""
    kind = event["EventType"]
    for group in rt["retries"]:
        if kind == EventType.TimerFired:
            if group.get("timer_id") is not None and group["timer_id"] == event.get("TimerId"):
                return group.copy()
        elif group.get("task_id") is not None and group["task_id"] == event.get("TaskScheduledId"):
            return group.copy()
    return None


def allocates(rt: InstanceRuntime, event: h.Event) -> bool:
    """Whether the SDK hands out a new id for this event without resuming the orchestrator:
    a failed attempt, or a fired retry timer with attempts left."""
    group = retry_for(rt, event)
    if group is None:
        return False
    kind = event["EventType"]
    if kind in (EventType.TaskFailed, EventType.SubOrchestrationInstanceFailed):
        return True
    if kind == EventType.TimerFired:
        return int(group["failures"]) < int(group["options"]["maxNumberOfAttempts"])
    return False


def apply_retry_event(inst: InstanceRow, event: h.Event, now: datetime, plan: Plan) -> None:
    """Do what DTFx's RetryInterceptor does for one failure or one fired retry timer.

    After every failed attempt, the last one included, a retry timer with a new id; when it
    fires, the call again with a new id, or (all attempts failed) nothing: the SDK then
    delivers the failure to the orchestrator.
    """
    rt = inst.runtime
    groups = rt["retries"]
    found = retry_for(rt, event)
    assert found is not None, "only retry events allocate ids"
    group = groups[groups.index(found)]
    options = group["options"]
    max_attempts = int(options["maxNumberOfAttempts"])
    if event["EventType"] == EventType.TimerFired:
        task_id = next_id(rt)
        group["task_id"] = task_id
        group["timer_id"] = None
        schedule_call(inst, group, task_id, now, plan)
        return
    group["failures"] = int(group["failures"]) + 1
    group["task_id"] = None
    timer_id = next_id(rt)
    group["timer_id"] = timer_id
    if group["failures"] >= max_attempts:
        # DTFx's "dummy timer for back-compat": fires at once, then the failure surfaces.
        fire_at = now
    else:
        delay = retry_delay(options, attempt=group["failures"] - 1)
        expires = options.get("retryTimeoutInMilliseconds")
        first_attempt = h.parse_time(group["first_attempt"])
        if expires is not None and now >= first_attempt + timedelta(milliseconds=expires):
            # DTFx stops retrying without a timer here, which azure-functions-durable 1.x
            # cannot follow (it waits for the timer forever). Fail loudly instead.
            plan.error = (
                f"retryTimeoutInMilliseconds={expires} of '{group['name']}' expired after "
                f"{group['failures']} failed attempt(s); devhost cannot hand an early retry "
                "failure to azure-functions-durable 1.x"
            )
            return
        fire_at = now + delay
    plan.events.append(h.timer_created(now, timer_id=timer_id, fire_at=fire_at))
    plan.work.append({"kind": "timer", "task_id": timer_id, "fire_at": iso(fire_at)})


def retry_delay(options: Mapping[str, Any], *, attempt: int) -> timedelta:
    """DTFx RetryInterceptor.ComputeNextDelay: first * coefficient^attempt, capped."""
    first = float(options.get("firstRetryIntervalInMilliseconds", 0))
    coefficient = float(options.get("backoffCoefficient", 1.0))
    cap_ms = options.get("maxRetryIntervalInMilliseconds")
    cap = DEFAULT_MAX_RETRY_INTERVAL if cap_ms is None else timedelta(milliseconds=float(cap_ms))
    delay_ms = first * coefficient**attempt
    return timedelta(milliseconds=delay_ms) if delay_ms < cap.total_seconds() * 1000 else cap
