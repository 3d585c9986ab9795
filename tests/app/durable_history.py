"""History helpers for replay tests: build the events the Durable host would hand the SDK.

Facts from docs/reference/durable-host-protocol.md; the orchestrator is driven through the
SDK's own handle, so these tests replay exactly as Azure does, without a host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df

T0 = datetime(2026, 5, 7, 13, 46, 12, tzinfo=UTC)


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def orchestrator_handle(blueprint: df.Blueprint, name: str) -> Any:
    app = df.DFApp()
    app.register_functions(blueprint)
    for function in app.get_functions():
        if function.get_function_name() == name:
            return function.get_user_function()
    raise AssertionError(f"no orchestrator {name}")


@dataclass
class History:
    """A growing history; each ``episode`` call replays it through the handle."""

    handle: Any
    instance_id: str
    input: Any
    now: datetime = T0
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._started()
        self.events.append(
            self._event(0, Name="image_job", Version="", Input=json.dumps(self.input))
        )

    def _event(self, event_type: int, event_id: int = -1, **extra: Any) -> dict[str, Any]:
        return {
            "EventType": event_type,
            "EventId": event_id,
            "IsPlayed": False,
            "Timestamp": _ts(self.now),
            **extra,
        }

    def _started(self) -> None:
        self.events.append(self._event(12))

    def episode(self) -> dict[str, Any]:
        context = {
            "history": self.events,
            "input": json.dumps(self.input),
            "instanceId": self.instance_id,
            "isReplaying": False,
            "parentInstanceId": None,
            "upperSchemaVersion": 1,
            "upperSchemaVersionNew": 2,
        }
        state: dict[str, Any] = json.loads(self.handle(json.dumps(context)))
        return state

    def schedule_activity(self, task_id: int, name: str) -> None:
        """The host's record that the episode's activity was scheduled (no result yet)."""
        self.events.append(self._event(4, task_id, Name=name, Input=None))

    def schedule_timer(self, timer_id: int, fire_at: str) -> None:
        self.events.append(self._event(10, timer_id, FireAt=fire_at))

    def activity_result(self, task_id: int, result: Any, *, after_s: float) -> None:
        """A new episode in which an already scheduled activity completes."""
        self.events.append(self._event(13))
        self.now += timedelta(seconds=after_s)
        self._started()
        self.events.append(self._event(5, -1, TaskScheduledId=task_id, Result=json.dumps(result)))

    def task_failed(self, task_id: int, reason: str, details: str, *, after_s: float) -> None:
        """A new episode in which an already scheduled activity failed (it raised)."""
        self.events.append(self._event(13))
        self.now += timedelta(seconds=after_s)
        self._started()
        self.events.append(
            self._event(6, -1, TaskScheduledId=task_id, Reason=reason, Details=details)
        )

    def complete_activity(self, task_id: int, name: str, result: Any, *, after_s: float) -> None:
        self.schedule_activity(task_id, name)
        self.activity_result(task_id, result, after_s=after_s)

    def raise_event(self, name: str, data: Any, *, after_s: float) -> None:
        self.events.append(self._event(13))
        self.now += timedelta(seconds=after_s)
        self._started()
        self.events.append(self._event(15, -1, Name=name, Input=json.dumps(data)))

    def fire_timer(self, timer_id: int, fire_at: str) -> None:
        self.events.append(self._event(10, timer_id, FireAt=fire_at))
        self.events.append(self._event(13))
        self.now = datetime.strptime(fire_at[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
        self._started()
        self.events.append(self._event(11, -1, TimerId=timer_id, FireAt=fire_at))


def new_actions(state: dict[str, Any], seen: int) -> list[dict[str, Any]]:
    """Schema V2 actions are one growing list: only the tail after ``seen`` is new.

    WhenAny (11) and WhenAll (12) carry their tasks as compound actions: they are flattened.
    Inputs arrive as JSON text; they are parsed here so tests read them as data.
    """
    flat = [
        a for group in state["actions"] for a in (group if isinstance(group, list) else [group])
    ]
    tail: list[dict[str, Any]] = []
    for action in flat[seen:]:
        for leaf in action.get("compoundActions") or [action]:
            parsed = dict(leaf)
            if isinstance(parsed.get("input"), str):
                parsed["input"] = json.loads(parsed["input"])
            tail.append(parsed)
    return tail


def activities(actions: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """CallActivity (0) and CallActivityWithRetry (1) actions of ``name``."""
    return [a for a in actions if a["actionType"] in (0, 1) and a["functionName"] == name]


def timers(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in actions if a["actionType"] == 5]
