"""What one episode writes, collected before any of it is written, and how a call goes into it.

Both the episode runner (a new activity or sub-orchestration action) and the host-side retry
logic (the next attempt of a with-retry call) schedule calls; they share `schedule_call` and the
task id counter from here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from devhost import history as h
from devhost.store import CallSpec, InstanceRow, InstanceRuntime

__all__ = ["Plan", "next_id", "schedule_call"]


@dataclass
class Plan:
    """Everything one episode writes, collected first so a failure writes none of it."""

    events: list[h.Event] = field(default_factory=list)
    work: list[dict[str, Any]] = field(default_factory=list)
    children: list[dict[str, Any]] = field(default_factory=list)
    cancel_timers: list[int] = field(default_factory=list)
    # Entity calls and signals to queue: entity_id, name, input, request_id, signal.
    entity_ops: list[dict[str, Any]] = field(default_factory=list)
    continue_as_new: str | None = None
    did_continue: bool = False
    error: str | None = None


def next_id(rt: InstanceRuntime) -> int:
    """Hand out the next task id, in the order the SDK hands them out too."""
    value = int(rt["next_id"])
    rt["next_id"] = value + 1
    return value


def schedule_call(
    inst: InstanceRow,
    group: CallSpec,
    task_id: int,
    now: datetime,
    plan: Plan,
) -> None:
    """Schedule an activity or a sub-orchestration under `task_id` (first try or retry)."""
    name = group["name"]
    input_json = group.get("input")
    if group["kind"] == "activity":
        plan.events.append(h.task_scheduled(now, task_id=task_id, name=name, input_json=input_json))
        plan.work.append(
            {"kind": "activity", "task_id": task_id, "name": name, "input": input_json}
        )
        return
    child_id = group.get("instance_id") or str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"{inst.instance_id}/{inst.execution_id}/{task_id}")
    )
    plan.events.append(
        h.sub_orchestration_created(
            now, task_id=task_id, name=name, instance_id=child_id, input_json=input_json
        )
    )
    plan.children.append(
        {"name": name, "instance_id": child_id, "input": input_json, "task_id": task_id}
    )
