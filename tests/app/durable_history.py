"""History helpers for replay tests: build the events the Durable host would hand the SDK.

Facts from docs/reference/durable-host-protocol.md; the orchestrator is driven through the
SDK's own handle, so these tests replay exactly as Azure does, without a host.

Durable Entities, as the extension records them for the Python SDK (the message shapes are
tools/devhost/devhost/entity_protocol.py's, which pins them against the SDK):

- a call (action 7) or signal (action 9) takes the next task id; the host records it as an
  EventSent (14) under that id whose Input is the request message, carrying a fresh request id;
- a call is answered in a later episode by an EventRaised (15) named by that request id, whose
  Input is ``{"result": <the operation's result as JSON text>}`` (plus ``exceptionType`` when
  the operation failed: the task then throws). A signal is never answered.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df

T0 = datetime(2026, 5, 7, 13, 46, 12, tzinfo=UTC)
# The Name of the EventSent that carries an entity operation's request message.
ENTITY_REQUEST = "op"


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
    # How many actions the last ``step`` answered with (V2: one list that only grows).
    _actions_seen: int = field(default=0, init=False)
    # The request id of each entity call the host sent, by the call's task id.
    _entity_requests: dict[int, str] = field(default_factory=dict, init=False)

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

    def step(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One episode: its state and the actions that are new since the previous ``step``."""
        state = self.episode()
        actions = new_actions(state, self._actions_seen)
        self._actions_seen = len(_top_level(state))
        return state, actions

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

    def entity_sent(
        self, task_id: int, entity: str, operation: str, input_: Any = None, *, signal: bool
    ) -> str:
        """The host's record that the episode's entity call or signal left (no answer yet):
        an EventSent under the task id carrying the request message; its request id returned.

        ``entity`` is the scheduler id (``@name@key``); ``input_`` the action's input. The SDK
        reads only the message's ``id``; the rest is there as the extension writes it.
        """
        # Deterministic, as devhost makes it, so that two equal histories are equal.
        request_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.instance_id}/{task_id}"))
        message = {
            "op": operation,
            "signal": signal,
            "input": None if input_ is None else json.dumps(json.dumps(input_)),
            "id": request_id,
            "parent": self.instance_id,
            "parentExecution": "execution-1",
            "timestamp": _ts(self.now),
        }
        self.events.append(
            self._event(
                14, task_id, InstanceId=entity, Name=ENTITY_REQUEST, Input=json.dumps(message)
            )
        )
        if not signal:
            self._entity_requests[task_id] = request_id
        return request_id

    def signal_sent(self, task_id: int, entity: str, operation: str, input_: Any = None) -> None:
        """The host's record of the episode's signal (never answered)."""
        self.entity_sent(task_id, entity, operation, input_, signal=True)

    def entity_answer(
        self, task_id: int, result: Any, *, after_s: float, failed: bool = False
    ) -> None:
        """A new episode in which a sent entity call is answered: an EventRaised named by its
        request id. ``failed``: the operation raised, ``result`` is its message."""
        self.events.append(self._event(13))
        self.now += timedelta(seconds=after_s)
        self._started()
        response: dict[str, Any] = {"result": json.dumps(result)}
        if failed:
            response["exceptionType"] = "EntityOperationFailed"
        request_id = self._entity_requests[task_id]
        self.events.append(self._event(15, -1, Name=request_id, Input=json.dumps(response)))

    def call_entity(
        self,
        task_id: int,
        entity: str,
        operation: str,
        result: Any,
        *,
        after_s: float,
        input_: Any = None,
    ) -> None:
        """The episode's entity call is sent and, in the next episode, answered with ``result``."""
        self.entity_sent(task_id, entity, operation, input_, signal=False)
        self.entity_answer(task_id, result, after_s=after_s)

    def fire_timer(self, timer_id: int, fire_at: str) -> None:
        self.events.append(self._event(10, timer_id, FireAt=fire_at))
        self.events.append(self._event(13))
        self.now = datetime.strptime(fire_at[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
        self._started()
        self.events.append(self._event(11, -1, TimerId=timer_id, FireAt=fire_at))


def new_actions(state: dict[str, Any], seen: int) -> list[dict[str, Any]]:
    """Schema V2 actions are one growing list: only the tail after ``seen`` is new.

    WhenAny (11) and WhenAll (12) carry their tasks as compound actions: they are flattened (a
    retried activity inside a WhenAny is a WhenAll of its own). Inputs arrive as JSON text; they
    are parsed here so tests read them as data.
    """
    tail: list[dict[str, Any]] = []
    for action in _top_level(state)[seen:]:
        for leaf in _leaves(action):
            parsed = dict(leaf)
            if isinstance(parsed.get("input"), str):
                parsed["input"] = json.loads(parsed["input"])
            tail.append(parsed)
    return tail


def _leaves(action: dict[str, Any]) -> list[dict[str, Any]]:
    compound = action.get("compoundActions")
    if not compound:
        return [action]
    return [leaf for child in compound for leaf in _leaves(child)]


def _top_level(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The episode's actions, each WhenAny or WhenAll one action (V2 sends ``[[...]]``)."""
    return [
        a for group in state["actions"] for a in (group if isinstance(group, list) else [group])
    ]


def activities(actions: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """CallActivity (0) and CallActivityWithRetry (1) actions of ``name``."""
    return [a for a in actions if a["actionType"] in (0, 1) and a["functionName"] == name]


def timers(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in actions if a["actionType"] == 5]


def entity_calls(actions: list[dict[str, Any]], operation: str) -> list[dict[str, Any]]:
    """CallEntity (7) actions of ``operation``; ``instanceId`` is the entity's ``@name@key``."""
    return [a for a in actions if a["actionType"] == 7 and a["operation"] == operation]


def entity_signals(actions: list[dict[str, Any]], operation: str) -> list[dict[str, Any]]:
    """SignalEntity (9) actions of ``operation``."""
    return [a for a in actions if a["actionType"] == 9 and a["operation"] == operation]
