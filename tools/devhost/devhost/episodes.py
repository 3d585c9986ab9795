"""The episode runner: one replay of an orchestration and everything that follows from it.

An episode loads the instance and its inbox, picks the messages the SDK must see and in which
order, replays the history through the orchestrator's handle (replay.py), turns the new tail of
the returned V2 actions into history events and work (activities, timers, sub-orchestrations,
waits for external events, continue-as-new) and writes all of it in one transaction. Events that
belong to a with-retry call go through retries.py. The Engine decides when an episode runs and
runs the work it produces; the runner reaches back only through the three callbacks it is given.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any

from devhost import history as h
from devhost.clock import Clock
from devhost.entity_protocol import operation_input, parse_scheduler_id, request_message
from devhost.episode_plan import Plan, next_id, schedule_call
from devhost.errors import InstanceAlreadyExists, UnknownEntity, UnknownOrchestrator
from devhost.functions import log_invocation, timed
from devhost.history import EventType
from devhost.instances import (
    COMPLETED,
    CONTINUED_AS_NEW,
    FAILED,
    PENDING,
    RUNNING,
    SUSPENDED,
    TERMINAL,
    create_instance,
    iso,
    notify_parent,
)
from devhost.replay import (
    ACTION_NAMES,
    ActionType,
    EpisodeResult,
    OrchestratorHandle,
    build_context,
    flatten,
    run_episode,
)
from devhost.retries import allocates, apply_retry_event, retry_for, track_retry
from devhost.store import (
    CallSpec,
    InboxMessage,
    InstanceRow,
    InstanceRuntime,
    Store,
    WorkItem,
    new_runtime,
)

__all__ = ["EpisodeRunner"]


class EpisodeRunner:
    """Runs one episode of an instance at a time, as the Engine asks; synchronous throughout."""

    def __init__(
        self,
        *,
        store: Store,
        orchestrators: Mapping[str, OrchestratorHandle],
        clock: Clock,
        log: logging.Logger,
        kick: Callable[[str], None],
        launch: Callable[[WorkItem], None],
        changed_now: Callable[[str], None],
        entities: Collection[str] = (),
    ) -> None:
        self.store = store
        # The app's entity names, lowercased: a call or signal to another name fails the
        # orchestration, as the extension's ThrowIfFunctionDoesNotExist does.
        self.entities = entities
        self.orchestrators = orchestrators
        self.clock = clock
        self.log = log
        # The Engine's scheduling: run an episode of an instance soon, start a work item, and
        # wake whoever waits for an instance to change.
        self._kick = kick
        self._launch = launch
        self._changed_now = changed_now

    def run(self, instance_id: str) -> None:
        """One episode of `instance_id`, if its inbox holds something it can take now."""
        inst = self.store.get_instance(instance_id)
        if inst is None:
            return
        messages = self.store.inbox(instance_id)
        if inst.status in TERMINAL:
            if messages:
                with self.store.transaction():
                    self.store.delete_inbox([m.msg_id for m in messages])
            return
        if inst.status == SUSPENDED:
            return  # completions and events wait in the inbox until resume
        rt = inst.runtime
        stale = [m.msg_id for m in messages if m.execution_id != inst.execution_id]
        chosen, first = self._choose(
            rt, [m for m in messages if m.execution_id == inst.execution_id]
        )
        if not chosen:
            if stale:
                with self.store.transaction():
                    self.store.delete_inbox(stale)
            return
        now = self.clock.now()
        elapsed = timed()
        plan = Plan()
        new_events = [h.orchestrator_started(now)]
        for message in chosen:
            new_events.append(message.event)
            self._account(
                inst, message.event, allocating=message.msg_id in first, now=now, plan=plan
            )
        handle = self.orchestrators.get(inst.name)
        if plan.error is not None:
            result = EpisodeResult(is_done=False, error=plan.error)
        elif handle is None:
            result = EpisodeResult(
                is_done=False, error=f"orchestrator '{inst.name}' is not registered in this app"
            )
        else:
            context = build_context(
                instance_id=inst.instance_id,
                input_json=inst.input,
                past=self.store.load_history(instance_id),
                new=new_events,
                parent_instance_id=None if inst.parent is None else inst.parent["instance_id"],
            )
            result = run_episode(handle, context)
        if result.error is None:
            self._plan_actions(inst, result, now, plan)
        outcome = self._commit(
            inst, result, plan, new_events, [*stale, *(m.msg_id for m in chosen)], now
        )
        log_invocation(
            self.log,
            function=inst.name,
            invocation_id=uuid.uuid4().hex,
            instance_id=instance_id,
            duration_s=elapsed(),
            outcome=outcome,
        )

    def _choose(
        self, rt: InstanceRuntime, messages: list[InboxMessage]
    ) -> tuple[list[InboxMessage], set[int]]:
        """The messages this episode replays, in the order the SDK must see them.

        ExecutionStarted first; then retry failures and retry timers that make the SDK hand out
        a new id without resuming the orchestrator (so the host and the SDK count ids alike);
        then everything else in arrival order. A raised event stays buffered in the inbox until
        a wait for its name is open (first come, first served, as DTFx buffers them).
        """
        open_waits = dict(rt["open_waits"])
        entity_calls = rt.get("entity_calls", {})
        starts: list[InboxMessage] = []
        allocating: list[InboxMessage] = []
        others: list[InboxMessage] = []
        for message in messages:
            event = message.event
            kind = event["EventType"]
            if kind == EventType.ExecutionStarted:
                starts.append(message)
            elif kind == EventType.EventRaised:
                name = event.get("Name") or ""
                if name in entity_calls:
                    others.append(message)  # an entity's answer to a call
                elif open_waits.get(name, 0) > 0:
                    open_waits[name] -= 1
                    others.append(message)
            elif allocates(rt, event):
                allocating.append(message)
            else:
                others.append(message)
        first = {m.msg_id for m in allocating}
        return [*starts, *allocating, *others], first

    def _account(
        self, inst: InstanceRow, event: h.Event, *, allocating: bool, now: datetime, plan: Plan
    ) -> None:
        """Update the bookkeeping for one event this episode replays."""
        rt = inst.runtime
        kind = event["EventType"]
        if kind == EventType.EventRaised:
            name = event.get("Name") or ""
            if name in rt.get("entity_calls", {}):
                del rt["entity_calls"][name]
                return
            rt["open_waits"][name] = max(0, int(rt["open_waits"].get(name, 0)) - 1)
            return
        if allocating:
            apply_retry_event(inst, event, now, plan)
            return
        group = retry_for(rt, event)
        if group is not None and kind in (
            EventType.TaskCompleted,
            EventType.SubOrchestrationInstanceCompleted,
            EventType.TimerFired,
        ):
            # Succeeded, or the final retry timer fired and the SDK now sees the failure.
            rt["retries"] = [g for g in rt["retries"] if g != group]

    def _plan_actions(
        self, inst: InstanceRow, result: EpisodeResult, now: datetime, plan: Plan
    ) -> None:
        """Turn the new tail of the V2 actions list into history events and work."""
        rt = inst.runtime
        seen = int(rt["action_count"])
        if len(result.actions) < seen:
            plan.error = (
                f"non-deterministic orchestrator: {len(result.actions)} actions after replay, "
                f"{seen} before"
            )
            return
        flat_ids: list[int | None] = rt["flat_ids"]
        for index, action in enumerate(flatten(result.actions[:seen])):
            # A timer cancelled after it was scheduled (isCanceled flips on the same action).
            if (
                action.get("actionType") == ActionType.CREATE_TIMER
                and action.get("isCanceled")
                and index < len(flat_ids)
                and flat_ids[index] is not None
            ):
                plan.cancel_timers.append(int(flat_ids[index] or 0))
        rt["action_count"] = len(result.actions)
        for action in flatten(result.actions[seen:]):
            kind = action.get("actionType")
            if kind in (ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY):
                task_id = next_id(rt)
                group: CallSpec = {
                    "kind": "activity",
                    "name": str(action.get("functionName")),
                    "input": action.get("input"),
                }
                schedule_call(inst, group, task_id, now, plan)
                track_retry(rt, action, group, task_id, now)
                flat_ids.append(task_id)
            elif kind in (
                ActionType.CALL_SUB_ORCHESTRATOR,
                ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY,
            ):
                task_id = next_id(rt)
                group = {
                    "kind": "suborchestration",
                    "name": str(action.get("functionName")),
                    "input": action.get("input"),
                    "instance_id": action.get("instanceId"),
                }
                schedule_call(inst, group, task_id, now, plan)
                track_retry(rt, action, group, task_id, now)
                flat_ids.append(task_id)
            elif kind == ActionType.CREATE_TIMER:
                task_id = next_id(rt)
                fire_at = h.parse_time(str(action.get("fireAt")))
                plan.events.append(h.timer_created(now, timer_id=task_id, fire_at=fire_at))
                if not action.get("isCanceled"):
                    plan.work.append({"kind": "timer", "task_id": task_id, "fire_at": iso(fire_at)})
                flat_ids.append(task_id)
            elif kind == ActionType.WAIT_FOR_EXTERNAL_EVENT:
                name = str(action.get("externalEventName"))
                rt["open_waits"][name] = int(rt["open_waits"].get(name, 0)) + 1
                flat_ids.append(None)
            elif kind in (ActionType.CALL_ENTITY, ActionType.SIGNAL_ENTITY):
                task_id = next_id(rt)
                problem = self._plan_entity_op(
                    inst, action, task_id, now, plan, signal=kind == ActionType.SIGNAL_ENTITY
                )
                if problem is not None:
                    plan.error = problem
                    return
                flat_ids.append(task_id)
            elif kind == ActionType.CONTINUE_AS_NEW:
                plan.did_continue = True
                plan.continue_as_new = action.get("input")
                flat_ids.append(None)
                break
            else:
                label = ACTION_NAMES.get(kind if isinstance(kind, int) else -1, "unknown")
                plan.error = (
                    f"devhost does not support the {label} action (actionType {kind!r}) that "
                    f"orchestrator '{inst.name}' scheduled"
                )
                return

    def _plan_entity_op(
        self,
        inst: InstanceRow,
        action: dict[str, Any],
        task_id: int,
        now: datetime,
        plan: Plan,
        *,
        signal: bool,
    ) -> str | None:
        """An EventSent under `task_id` and the operation to queue; why not, if it cannot be."""
        target = str(action.get("instanceId"))
        try:
            name, _key = parse_scheduler_id(target)
        except ValueError as exc:
            return str(exc)
        if name.lower() not in self.entities:
            return str(UnknownEntity(name))
        # Deterministic, so a re-run of this episode after a crash names the same request.
        request_id = str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"{inst.instance_id}/{inst.execution_id}/{task_id}")
        )
        operation = str(action.get("operation"))
        input_field = operation_input(action.get("input"))
        plan.events.append(
            h.event_sent(
                now,
                event_id=task_id,
                instance_id=target,
                name="op",
                input_json=request_message(
                    request_id=request_id,
                    operation=operation,
                    input_field=input_field,
                    signal=signal,
                    parent_instance_id=inst.instance_id,
                    parent_execution_id=inst.execution_id,
                    timestamp=h.event_timestamp(now),
                ),
            )
        )
        plan.entity_ops.append(
            {
                "entity_id": target,
                "name": operation,
                "input": input_field,
                "request_id": request_id,
                "signal": signal,
            }
        )
        if not signal:
            inst.runtime.setdefault("entity_calls", {})[request_id] = task_id
        return None

    def _commit(
        self,
        inst: InstanceRow,
        result: EpisodeResult,
        plan: Plan,
        new_events: list[h.Event],
        consumed: list[int],
        now: datetime,
    ) -> str:
        """Write the episode in one transaction, then start its work. Returns the outcome."""
        error = plan.error or result.error
        new_work: list[WorkItem] = []
        kick: set[str] = set()
        with self.store.transaction():
            self.store.delete_inbox(consumed)
            if result.custom_status is not None:
                inst.custom_status = json.dumps(result.custom_status)
            inst.last_updated_time = iso(now)
            if inst.status == PENDING:
                inst.status = RUNNING
            if error is not None:
                message = f"Orchestrator function '{inst.name}' failed: {error}"
                inst.output = json.dumps(message)
                self._end_execution(inst, now, new_events, FAILED, message, kick)
                outcome = FAILED
            elif plan.did_continue:
                # A new execution: fresh history and bookkeeping. Raised events still buffered
                # (no wait took them) are dropped, as DTFx does when the orchestrator cannot ask
                # to preserve unprocessed events (the Python SDK's continue_as_new cannot).
                self.store.clear_execution(inst.instance_id)
                inst.execution_id = uuid.uuid4().hex
                inst.runtime = new_runtime()
                inst.input = plan.continue_as_new
                inst.status_input = None  # the status shows the new execution's input
                inst.output = None
                inst.status = RUNNING
                self.store.put_instance(inst)
                self.store.add_inbox(
                    inst.instance_id,
                    inst.execution_id,
                    h.execution_started(
                        now,
                        name=inst.name,
                        input_json=inst.input,
                        instance_id=inst.instance_id,
                        execution_id=inst.execution_id,
                    ),
                )
                kick.add(inst.instance_id)
                outcome = CONTINUED_AS_NEW
            elif result.is_done:
                inst.output = json.dumps(result.output) if result.has_output else None
                events = [*new_events, *plan.events]
                self._end_execution(inst, now, events, COMPLETED, None, kick)
                outcome = COMPLETED
            else:
                self.store.append_history(
                    inst.instance_id, [*new_events, *plan.events, h.orchestrator_completed(now)]
                )
                for timer_id in plan.cancel_timers:
                    self.store.delete_timer(inst.instance_id, timer_id)
                for work in plan.work:
                    new_work.append(
                        self.store.add_work(
                            instance_id=inst.instance_id,
                            execution_id=inst.execution_id,
                            kind=work["kind"],
                            task_id=work["task_id"],
                            name=work.get("name"),
                            input_json=work.get("input"),
                            fire_at=work.get("fire_at"),
                        )
                    )
                for child in plan.children:
                    kick.add(self._start_child(inst, child, now))
                self.store.put_instance(inst)
                outcome = RUNNING
                if self._has_deliverable(inst):
                    kick.add(inst.instance_id)
            if error is None:
                # Signals go out whether the orchestration goes on, ends or continues as new.
                for op in plan.entity_ops:
                    self.store.add_entity_op(
                        op["entity_id"],
                        op["name"],
                        op["input"],
                        request_id=op["request_id"],
                        parent_instance_id=None if op["signal"] else inst.instance_id,
                        parent_execution_id=None if op["signal"] else inst.execution_id,
                    )
                    kick.add(op["entity_id"])
        self._changed_now(inst.instance_id)
        for item in new_work:
            self._launch(item)
        for instance_id in kick:
            self._kick(instance_id)
        return outcome

    def _end_execution(
        self,
        inst: InstanceRow,
        now: datetime,
        events: list[h.Event],
        status: str,
        failed_reason: str | None,
        kick: set[str],
    ) -> None:
        """Close the execution as ``status`` (its output already set): no more work, the
        completion in history, and the parent told (it is kicked after the commit)."""
        inst.status = status
        self.store.clear_execution_work(inst.instance_id)
        self.store.append_history(
            inst.instance_id,
            [
                *events,
                h.execution_completed(now, status=status, result_json=inst.output),
                h.orchestrator_completed(now),
            ],
        )
        self.store.put_instance(inst)
        parent = notify_parent(self.store, inst, now, failed_reason=failed_reason)
        if parent:
            kick.add(parent)

    def _start_child(self, inst: InstanceRow, child: dict[str, Any], now: datetime) -> str:
        """Create a sub-orchestration instance, or tell the parent at once why it cannot start."""
        parent = {
            "instance_id": inst.instance_id,
            "execution_id": inst.execution_id,
            "task_id": child["task_id"],
            "name": inst.name,
        }
        reason: str | None = None
        if child["name"] not in self.orchestrators:
            reason = str(UnknownOrchestrator(child["name"]))
        else:
            try:
                with self.store.transaction():
                    create_instance(
                        self.store,
                        self.clock,
                        child["name"],
                        child["instance_id"],
                        child["input"],
                        parent=parent,
                    )
            except InstanceAlreadyExists as exc:
                reason = str(exc)
        if reason is None:
            return str(child["instance_id"])
        event = h.sub_orchestration_failed(
            now, task_id=child["task_id"], reason=reason, details=None
        )
        self.store.add_inbox(inst.instance_id, inst.execution_id, event)
        return inst.instance_id

    def _has_deliverable(self, inst: InstanceRow) -> bool:
        open_waits = inst.runtime["open_waits"]
        entity_calls = inst.runtime.get("entity_calls", {})
        for message in self.store.inbox(inst.instance_id):
            if message.execution_id != inst.execution_id:
                continue
            if message.event["EventType"] != EventType.EventRaised:
                return True
            name = message.event.get("Name") or ""
            if name in entity_calls or open_waits.get(name, 0) > 0:
                return True
        return False

    def fail(self, instance_id: str, exc: Exception) -> None:
        """Fail the instance whose episode raised `exc`, and tell its parent."""
        inst = self.store.get_instance(instance_id)
        if inst is None or inst.status in TERMINAL:
            return
        now = self.clock.now()
        message = f"devhost engine error in '{inst.name}': {type(exc).__name__}: {exc}"
        with self.store.transaction():
            self.store.clear_execution_work(instance_id)
            self.store.append_history(
                instance_id, [h.execution_completed(now, status=FAILED, result_json=None)]
            )
            inst.status = FAILED
            inst.output = json.dumps(message)
            inst.last_updated_time = iso(now)
            self.store.put_instance(inst)
            parent = notify_parent(self.store, inst, now, failed_reason=message)
        self._changed_now(instance_id)
        if parent:
            self._kick(parent)
