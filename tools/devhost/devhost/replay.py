"""One orchestrator episode through the SDK's own handle, schema V2.

The engine owns the history; this module turns it into the context JSON the Functions host sends
(durable-host-protocol.md, "Running one orchestrator episode"), calls the handle, and reads back
the orchestrator state, including the `$OutOfProcData$` form the SDK raises when the user's code
throws. Pure apart from calling the handle: no clock, no store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devhost.history import Event

OrchestratorHandle = Callable[[str], str]

OUT_OF_PROC_MARKER = "$OutOfProcData$:"
# What the Functions host sends: upperSchemaVersion 1 (V2) and upperSchemaVersionNew 2, which
# azure-functions-durable 1.7 turns into ReplaySchema.V3 (state "schemaVersion": 2). Actions keep
# the V2 form (one growing list, with-retry calls wrapped in WhenAll); V3 only adds long-timer
# splitting, which stays off because the context names no maximumShortTimerDuration.
UPPER_SCHEMA_VERSION = 1
UPPER_SCHEMA_VERSION_NEW = 2


class ActionType:
    """The SDK's ActionType numbers (azure/durable_functions/models/actions/ActionType.py)."""

    CALL_ACTIVITY = 0
    CALL_ACTIVITY_WITH_RETRY = 1
    CALL_SUB_ORCHESTRATOR = 2
    CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
    CONTINUE_AS_NEW = 4
    CREATE_TIMER = 5
    WAIT_FOR_EXTERNAL_EVENT = 6
    CALL_ENTITY = 7
    CALL_HTTP = 8
    SIGNAL_ENTITY = 9
    SCHEDULED_SIGNAL_ENTITY = 10
    WHEN_ANY = 11
    WHEN_ALL = 12


ACTION_NAMES = {
    0: "CallActivity",
    1: "CallActivityWithRetry",
    2: "CallSubOrchestrator",
    3: "CallSubOrchestratorWithRetry",
    4: "ContinueAsNew",
    5: "CreateTimer",
    6: "WaitForExternalEvent",
    7: "CallEntity",
    8: "CallHttp",
    9: "SignalEntity",
    10: "ScheduledSignalEntity",
    11: "WhenAny",
    12: "WhenAll",
}


@dataclass(frozen=True)
class EpisodeResult:
    """What one call of the handle said.

    `actions` is the whole V2 list (every action since the execution started); `error` is set
    when the orchestrator raised, and then `is_done` is false.
    """

    is_done: bool
    output: Any = None
    has_output: bool = False
    error: str | None = None
    custom_status: Any = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    schema_version: int | None = None


def build_context(
    *,
    instance_id: str,
    input_json: str | None,
    past: list[Event],
    new: list[Event],
    parent_instance_id: str | None = None,
) -> str:
    """Context JSON for the handle: past events are marked played, this episode's are not."""
    history = [{**event, "IsPlayed": True} for event in past]
    history += [{**event, "IsPlayed": False} for event in new]
    context = {
        "history": history,
        "input": input_json,
        "instanceId": instance_id,
        "isReplaying": bool(past),
        "parentInstanceId": parent_instance_id,
        "upperSchemaVersion": UPPER_SCHEMA_VERSION,
        "upperSchemaVersionNew": UPPER_SCHEMA_VERSION_NEW,
    }
    return json.dumps(context)


def parse_state(state_json: str) -> EpisodeResult:
    state = json.loads(state_json)
    if not isinstance(state, dict):
        raise ValueError(f"orchestrator state is not a JSON object: {state_json[:200]!r}")
    groups = state.get("actions") or []
    if len(groups) > 1:
        raise ValueError(
            f"schema V2 expects one actions list, the orchestrator sent {len(groups)} lists"
        )
    return EpisodeResult(
        is_done=bool(state.get("isDone")),
        output=state.get("output"),
        has_output="output" in state,
        error=state.get("error"),
        custom_status=state.get("customStatus"),
        actions=list(groups[0]) if groups else [],
        schema_version=state.get("schemaVersion"),
    )


def run_episode(handle: OrchestratorHandle, context_json: str) -> EpisodeResult:
    """Call the handle; a user exception comes back as a result with `error` set.

    Anything else that goes wrong (the SDK itself failing, no `$OutOfProcData$`) also becomes
    an error result, so one broken orchestration never takes the engine down.
    """
    try:
        state_json = handle(context_json)
    except Exception as exc:  # the SDK raises plain Exception carrying the state
        text = str(exc)
        if OUT_OF_PROC_MARKER in text:
            state = parse_state(text.split(OUT_OF_PROC_MARKER, 1)[1])
            error = state.error or text.split("\n\n" + OUT_OF_PROC_MARKER, 1)[0]
            return EpisodeResult(
                is_done=False,
                error=error,
                custom_status=state.custom_status,
                actions=state.actions,
                schema_version=state.schema_version,
            )
        return EpisodeResult(is_done=False, error=f"{type(exc).__name__}: {text}")
    try:
        return parse_state(state_json)
    except (ValueError, TypeError) as exc:
        return EpisodeResult(is_done=False, error=f"unreadable orchestrator state: {exc}")


def flatten(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Atomic actions in scheduling order: WhenAll/WhenAny are replaced by their children.

    This is the order in which the SDK hands out task ids (shared by tasks and timers).
    """
    flat: list[dict[str, Any]] = []
    for action in actions:
        if action.get("actionType") in (ActionType.WHEN_ALL, ActionType.WHEN_ANY):
            flat.extend(flatten(list(action.get("compoundActions") or [])))
        else:
            flat.append(action)
    return flat
