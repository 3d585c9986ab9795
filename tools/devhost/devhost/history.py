"""History events as the Durable extension writes them, and their rendering in status JSON.

The SDK replays an orchestration from these dicts (durable-host-protocol.md: `EventType`,
`EventId`, `IsPlayed`, `Timestamp` plus per-type fields), and the management API shows them in
`historyEvents` the way the extension's DurableClient does (functions-host-http.md). Pure data:
no I/O, no clock; every builder takes its timestamp.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

Event = dict[str, Any]


class EventType(IntEnum):
    """DurableTask.Core's EventType; the names are what `historyEvents` shows."""

    ExecutionStarted = 0
    ExecutionCompleted = 1
    ExecutionFailed = 2
    ExecutionTerminated = 3
    TaskScheduled = 4
    TaskCompleted = 5
    TaskFailed = 6
    SubOrchestrationInstanceCreated = 7
    SubOrchestrationInstanceCompleted = 8
    SubOrchestrationInstanceFailed = 9
    TimerCreated = 10
    TimerFired = 11
    OrchestratorStarted = 12
    OrchestratorCompleted = 13
    EventSent = 14
    EventRaised = 15
    ContinueAsNew = 16
    GenericEvent = 17
    HistoryState = 18
    ExecutionSuspended = 19
    ExecutionResumed = 20


def event_timestamp(when: datetime) -> str:
    """.NET's round-trip form with seven fraction digits, e.g. 2024-05-01T10:00:00.1234567Z."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def status_time(when: datetime) -> str:
    """`createdTime`/`lastUpdatedTime` in status JSON: no fraction."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Read back what `event_timestamp`, the SDK's fireAt or isoformat wrote (UTC)."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1]
    if "+" in value[10:]:
        value = value[: value.index("+", 10)]
    if "." in value:
        head, fraction = value.split(".", 1)
        value = f"{head}.{fraction[:6]}"
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _event(kind: EventType, when: datetime, event_id: int = -1, **fields: Any) -> Event:
    return {
        "EventType": int(kind),
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": event_timestamp(when),
        **fields,
    }


def execution_started(
    when: datetime,
    *,
    name: str,
    input_json: str | None,
    instance_id: str,
    execution_id: str,
    parent: dict[str, Any] | None = None,
) -> Event:
    return _event(
        EventType.ExecutionStarted,
        when,
        Name=name,
        Version="",
        Input=input_json,
        OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
        ParentInstance=parent,
        Tags=None,
    )


def execution_completed(when: datetime, *, status: str, result_json: str | None) -> Event:
    return _event(
        EventType.ExecutionCompleted, when, OrchestrationStatus=status, Result=result_json
    )


def execution_terminated(when: datetime, *, reason_json: str | None) -> Event:
    return _event(EventType.ExecutionTerminated, when, Input=reason_json)


def execution_suspended(when: datetime, *, reason: str | None) -> Event:
    return _event(EventType.ExecutionSuspended, when, Reason=reason)


def execution_resumed(when: datetime, *, reason: str | None) -> Event:
    return _event(EventType.ExecutionResumed, when, Reason=reason)


def orchestrator_started(when: datetime) -> Event:
    return _event(EventType.OrchestratorStarted, when)


def orchestrator_completed(when: datetime) -> Event:
    return _event(EventType.OrchestratorCompleted, when)


def task_scheduled(when: datetime, *, task_id: int, name: str, input_json: str | None) -> Event:
    return _event(EventType.TaskScheduled, when, task_id, Name=name, Version="", Input=input_json)


def task_completed(when: datetime, *, task_id: int, result_json: str | None) -> Event:
    return _event(EventType.TaskCompleted, when, TaskScheduledId=task_id, Result=result_json)


def task_failed(when: datetime, *, task_id: int, reason: str, details: str | None) -> Event:
    return _event(
        EventType.TaskFailed, when, TaskScheduledId=task_id, Reason=reason, Details=details
    )


def sub_orchestration_created(
    when: datetime, *, task_id: int, name: str, instance_id: str, input_json: str | None
) -> Event:
    return _event(
        EventType.SubOrchestrationInstanceCreated,
        when,
        task_id,
        Name=name,
        Version="",
        InstanceId=instance_id,
        Input=input_json,
    )


def sub_orchestration_completed(when: datetime, *, task_id: int, result_json: str | None) -> Event:
    return _event(
        EventType.SubOrchestrationInstanceCompleted,
        when,
        TaskScheduledId=task_id,
        Result=result_json,
    )


def sub_orchestration_failed(
    when: datetime, *, task_id: int, reason: str, details: str | None
) -> Event:
    return _event(
        EventType.SubOrchestrationInstanceFailed,
        when,
        TaskScheduledId=task_id,
        Reason=reason,
        Details=details,
    )


def timer_created(when: datetime, *, timer_id: int, fire_at: datetime) -> Event:
    return _event(EventType.TimerCreated, when, timer_id, FireAt=event_timestamp(fire_at))


def timer_fired(when: datetime, *, timer_id: int, fire_at: datetime) -> Event:
    return _event(EventType.TimerFired, when, TimerId=timer_id, FireAt=event_timestamp(fire_at))


def event_sent(
    when: datetime, *, event_id: int, instance_id: str, name: str, input_json: str | None
) -> Event:
    """An orchestration's message to another instance; for an entity call or signal the Input
    is the request message (entity_protocol.request_message)."""
    return _event(
        EventType.EventSent, when, event_id, InstanceId=instance_id, Name=name, Input=input_json
    )


def event_raised(when: datetime, *, name: str, input_json: str | None) -> Event:
    return _event(EventType.EventRaised, when, Name=name, Input=input_json)


def _parsed(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def render_history(
    events: list[Event], *, show_history_output: bool, show_input: bool
) -> list[dict[str, Any]]:
    """`historyEvents` as DurableClient.GetDurableOrchestrationStatusAsync renders them.

    OrchestratorStarted/Completed are dropped; a TaskScheduled or SubOrchestrationInstanceCreated
    that has its completion is folded into it (FunctionName, ScheduledTime, Input); an unfinished
    one stays. Results appear only with show_history_output, parsed as JSON.
    """
    scheduled: dict[tuple[str, int], tuple[int, Event]] = {}
    dropped: set[int] = set()
    rendered: list[dict[str, Any] | None] = []
    for index, source in enumerate(events):
        item = dict(source)
        kind = EventType(item["EventType"])
        item["EventType"] = kind.name
        if kind in (EventType.TaskScheduled, EventType.SubOrchestrationInstanceCreated):
            scheduled[(kind.name, item["EventId"])] = (index, source)
            item.pop("Version", None)
        elif kind in (
            EventType.TaskCompleted,
            EventType.TaskFailed,
            EventType.SubOrchestrationInstanceCompleted,
            EventType.SubOrchestrationInstanceFailed,
        ):
            prefix = (
                "TaskScheduled"
                if kind in (EventType.TaskCompleted, EventType.TaskFailed)
                else "SubOrchestrationInstanceCreated"
            )
            match = scheduled.get((prefix, item.get("TaskScheduledId", -2)))
            if match is not None:
                origin_index, origin = match
                item["ScheduledTime"] = origin["Timestamp"]
                item["FunctionName"] = origin.get("Name")
                if show_input:
                    item["Input"] = origin.get("Input")
                dropped.add(origin_index)
            item.pop("TaskScheduledId", None)
            completed = kind in (
                EventType.TaskCompleted,
                EventType.SubOrchestrationInstanceCompleted,
            )
            if completed and not show_history_output:
                item.pop("Result", None)
            elif completed:
                item["Result"] = _parsed(item.get("Result"))
        elif kind is EventType.ExecutionStarted:
            item["FunctionName"] = item.pop("Name", None)
            for key in ("OrchestrationInstance", "ParentInstance", "Version", "Tags"):
                item.pop(key, None)
        elif kind is EventType.ExecutionCompleted:
            if show_history_output:
                item["Result"] = _parsed(item.get("Result"))
            else:
                item.pop("Result", None)
        elif kind is EventType.TimerFired:
            item.pop("TimerId", None)
        elif kind in (EventType.OrchestratorStarted, EventType.OrchestratorCompleted):
            dropped.add(index)
        if not show_input:
            item.pop("Input", None)
        item.pop("EventId", None)
        item.pop("IsPlayed", None)
        rendered.append(item)
    return [
        item for index, item in enumerate(rendered) if item is not None and index not in dropped
    ]
