"""What every part of the engine shares about an instance: its runtime statuses, how one is
created, and how a sub-orchestration that ends tells its parent.

The episode runner (a sub-orchestration starts, an orchestration ends) and the management
operations (start, terminate) both do these things, so they live below both. Functions over the
Store and the Clock; each writes inside the caller's transaction.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from devhost import history as h
from devhost.clock import Clock
from devhost.errors import InstanceAlreadyExists
from devhost.store import InstanceRow, Store, new_runtime

__all__ = [
    "ACTIVE",
    "CANCELED",
    "COMPLETED",
    "CONTINUED_AS_NEW",
    "FAILED",
    "PENDING",
    "RUNNING",
    "SUSPENDED",
    "TERMINAL",
    "TERMINATED",
    "create_instance",
    "iso",
    "notify_parent",
]

PENDING = "Pending"
RUNNING = "Running"
COMPLETED = "Completed"
CONTINUED_AS_NEW = "ContinuedAsNew"
FAILED = "Failed"
CANCELED = "Canceled"
TERMINATED = "Terminated"
SUSPENDED = "Suspended"
# Terminal statuses: a new start with the same id replaces them (NonRunningStates).
TERMINAL = frozenset({COMPLETED, FAILED, TERMINATED, CANCELED})
ACTIVE = frozenset({PENDING, RUNNING, CONTINUED_AS_NEW, SUSPENDED})


def iso(when: datetime) -> str:
    """Stored times: UTC ISO 8601 with microseconds, which sort correctly as text."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def create_instance(
    store: Store,
    clock: Clock,
    name: str,
    instance_id: str,
    input_json: str | None,
    *,
    parent: dict[str, Any] | None,
    status_input: str | None = None,
) -> None:
    """Write a Pending instance and its ExecutionStarted (inside the caller's transaction)."""
    existing = store.get_instance(instance_id)
    if existing is not None and existing.status not in TERMINAL:
        raise InstanceAlreadyExists(instance_id, existing.status)
    now = clock.now()
    execution_id = uuid.uuid4().hex
    if existing is not None:
        # A non-running instance is replaced by a new execution under the same id.
        store.clear_execution(instance_id)
    store.put_instance(
        InstanceRow(
            instance_id=instance_id,
            execution_id=execution_id,
            name=name,
            status=PENDING,
            input=input_json,
            output=None,
            custom_status=None,
            created_time=iso(now),
            last_updated_time=iso(now),
            parent=parent,
            runtime=new_runtime(),
            status_input=status_input,
        )
    )
    started = h.execution_started(
        now,
        name=name,
        input_json=input_json,
        instance_id=instance_id,
        execution_id=execution_id,
        parent=None
        if parent is None
        else {
            "Name": parent.get("name"),
            "OrchestrationInstance": {
                "InstanceId": parent["instance_id"],
                "ExecutionId": parent["execution_id"],
            },
            "TaskScheduleId": parent["task_id"],
        },
    )
    store.add_inbox(instance_id, execution_id, started)


def notify_parent(
    store: Store, inst: InstanceRow, now: datetime, *, failed_reason: str | None
) -> str | None:
    """Tell a parent orchestration its sub-orchestration ended (in the caller's transaction)."""
    parent = inst.parent
    if parent is None:
        return None
    if failed_reason is None:
        event = h.sub_orchestration_completed(
            now, task_id=parent["task_id"], result_json=inst.output
        )
    else:
        event = h.sub_orchestration_failed(
            now, task_id=parent["task_id"], reason=failed_reason, details=None
        )
    store.add_inbox(parent["instance_id"], parent["execution_id"], event)
    return str(parent["instance_id"])
