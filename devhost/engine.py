"""devhost's orchestration engine: Durable Functions semantics over the SDK's own replay code.

The engine keeps each instance's history in the Store, replays it through the orchestrator's
`Orchestrator.create(fn)` handle (schema V2, see replay.py) whenever something new happened, and
turns the new tail of the returned actions into work: activities run concurrently on the event
loop (capped by a semaphore), timers wait on the Clock, sub-orchestrations become instances of
their own. What the Durable extension and DTFx do, and where devhost follows them, is in
shared/reference/durable-host-protocol.md and functions-host-http.md; the few places where
devhost chooses differently say so where they happen.

Everything runs on one event loop. An episode (load, replay, commit) is synchronous, so episodes
of one instance never overlap and every episode is written in one transaction.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import traceback
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from devhost import history as h
from devhost.clock import Clock
from devhost.functions import log_invocation, timed
from devhost.history import EventType
from devhost.replay import (
    ACTION_NAMES,
    ActionType,
    EpisodeResult,
    OrchestratorHandle,
    build_context,
    flatten,
    run_episode,
)
from devhost.store import (
    CallSpec,
    InboxMessage,
    InstanceRow,
    InstanceRuntime,
    RetryGroup,
    Store,
    WorkItem,
    new_runtime,
)

__all__ = [
    "ActivityInvoker",
    "Engine",
    "InstanceAlreadyExists",
    "InstanceNotActive",
    "InstanceNotFound",
    "OrchestratorHandle",
    "UnknownOrchestrator",
]

ActivityInvoker = Callable[[str | None], Awaitable[str | None]]

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

# The extension's RetryOptions default for maxRetryIntervalInMilliseconds (6 days).
DEFAULT_MAX_RETRY_INTERVAL = timedelta(days=6)


class InstanceNotFound(Exception):
    def __init__(self, instance_id: str) -> None:
        super().__init__(f"No orchestration instance with id '{instance_id}'.")
        self.instance_id = instance_id


class InstanceAlreadyExists(Exception):
    def __init__(self, instance_id: str, runtime_status: str) -> None:
        super().__init__(
            f"An Orchestration instance with the status {runtime_status} already exists."
        )
        self.instance_id = instance_id
        self.runtime_status = runtime_status


class InstanceNotActive(Exception):
    def __init__(self, instance_id: str, runtime_status: str) -> None:
        super().__init__(
            f"The orchestration instance '{instance_id}' is {runtime_status} and cannot take this"
            " operation."
        )
        self.instance_id = instance_id
        self.runtime_status = runtime_status


class UnknownOrchestrator(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function."
        )
        self.name = name


def _iso(when: datetime) -> str:
    """Stored times: UTC ISO 8601 with microseconds, which sort correctly as text."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _shown_input(inst: InstanceRow) -> str | None:
    return inst.status_input if inst.status_input is not None else inst.input


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass
class _Plan:
    """Everything one episode writes, collected first so a failure writes none of it."""

    events: list[h.Event] = field(default_factory=list)
    work: list[dict[str, Any]] = field(default_factory=list)
    children: list[dict[str, Any]] = field(default_factory=list)
    cancel_timers: list[int] = field(default_factory=list)
    continue_as_new: str | None = None
    did_continue: bool = False
    error: str | None = None


class Engine:
    """Runs orchestrations and activities; the HTTP host maps its calls and exceptions."""

    def __init__(
        self,
        *,
        store: Store,
        orchestrators: Mapping[str, OrchestratorHandle],
        activities: Mapping[str, ActivityInvoker],
        clock: Clock,
        task_hub: str,
        max_concurrent_activities: int = 10,
        log: logging.Logger | None = None,
    ) -> None:
        if max_concurrent_activities < 1:
            raise ValueError("max_concurrent_activities must be at least 1")
        self.store = store
        self.orchestrators = dict(orchestrators)
        self.activities = dict(activities)
        self.clock = clock
        self.task_hub = task_hub
        self.max_concurrent_activities = max_concurrent_activities
        self.log = log or logging.getLogger("devhost.engine")
        self._semaphore: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._changed: dict[str, asyncio.Event] = {}
        self._started = False

    # lifecycle

    async def start(self) -> None:
        """Resume every unfinished orchestration; re-run activities that were running."""
        self._semaphore = asyncio.Semaphore(self.max_concurrent_activities)
        self._started = True
        for item in self.store.work_items():
            self._launch(item)
        for inst in self.store.unfinished_instances(TERMINAL):
            self._kick(inst.instance_id)

    async def stop(self) -> None:
        """Cancel workers. Committed state stays; unfinished activities run again next start."""
        self._started = False
        pending = [*self._tasks, *self._runners.values()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()
        self._runners.clear()

    # management

    async def start_new(
        self,
        name: str,
        instance_id: str | None,
        input_json: str | None,
        *,
        status_input: str | None = None,
    ) -> str:
        """Start `name`; `input_json` is what the orchestrator's context gets, `status_input`
        the JSON text the status API shows when that differs (see InstanceRow.status_input)."""
        if name not in self.orchestrators:
            raise UnknownOrchestrator(name)
        instance_id = instance_id or uuid.uuid4().hex
        with self.store.transaction():
            self._create_instance(
                name, instance_id, input_json, parent=None, status_input=status_input
            )
        self._changed_now(instance_id)
        self._kick(instance_id)
        return instance_id

    async def get_status(
        self,
        instance_id: str,
        *,
        show_history: bool = False,
        show_history_output: bool = False,
        show_input: bool = True,
    ) -> dict[str, Any] | None:
        inst = self.store.get_instance(instance_id)
        if inst is None:
            return None
        status = self._status(inst, show_input=show_input)
        if show_history and inst.status != PENDING:
            status["historyEvents"] = h.render_history(
                self.store.load_history(instance_id),
                show_history_output=show_history_output,
                show_input=show_input,
            )
        return status

    async def list_instances(
        self,
        *,
        created_from: datetime | None,
        created_to: datetime | None,
        statuses: Collection[str],
        prefix: str | None,
        top: int,
        continuation: str | None,
        show_input: bool,
    ) -> tuple[list[dict[str, Any]], str | None]:
        top = max(1, top)
        rows = self.store.query_instances(
            created_from=None if created_from is None else _iso(created_from),
            created_to=None if created_to is None else _iso(created_to),
            statuses=list(statuses),
            prefix=prefix,
            after=_decode_token(continuation),
            limit=top + 1,
        )
        page = rows[:top]
        token = None
        if len(rows) > top:
            last = page[-1]
            token = _encode_token(last.created_time, last.instance_id)
        return [self._status(row, show_input=show_input) for row in page], token

    async def raise_event(self, instance_id: str, name: str, data_json: str | None) -> None:
        inst = self._require(instance_id)
        if inst.status in TERMINAL:
            raise InstanceNotActive(instance_id, inst.status)
        with self.store.transaction():
            event = h.event_raised(self.clock.now(), name=name, input_json=data_json)
            self.store.add_inbox(instance_id, inst.execution_id, event)
        self._kick(instance_id)

    async def terminate(self, instance_id: str, reason: str | None) -> None:
        inst = self._require(instance_id)
        if inst.status in TERMINAL:
            raise InstanceNotActive(instance_id, inst.status)
        self._finish_terminated(inst, reason)

    async def suspend(self, instance_id: str, reason: str | None) -> None:
        inst = self._require(instance_id)
        if inst.status in TERMINAL:
            raise InstanceNotActive(instance_id, inst.status)
        if inst.status == SUSPENDED:
            return
        now = self.clock.now()
        with self.store.transaction():
            self.store.append_history(instance_id, [h.execution_suspended(now, reason=reason)])
            inst.runtime["status_before_suspend"] = inst.status
            inst.status = SUSPENDED
            inst.last_updated_time = _iso(now)
            self.store.put_instance(inst)
        self._changed_now(instance_id)

    async def resume(self, instance_id: str, reason: str | None) -> None:
        inst = self._require(instance_id)
        if inst.status in TERMINAL:
            raise InstanceNotActive(instance_id, inst.status)
        if inst.status != SUSPENDED:
            return
        now = self.clock.now()
        with self.store.transaction():
            self.store.append_history(instance_id, [h.execution_resumed(now, reason=reason)])
            inst.status = inst.runtime.pop("status_before_suspend", RUNNING)
            inst.last_updated_time = _iso(now)
            self.store.put_instance(inst)
        self._changed_now(instance_id)
        self._kick(instance_id)

    async def rewind(self, instance_id: str, reason: str | None) -> None:
        raise NotImplementedError("rewind is not implemented by devhost's engine")

    async def restart(self, instance_id: str, *, new_instance_id: bool) -> str:
        inst = self._require(instance_id)
        target = uuid.uuid4().hex if new_instance_id else instance_id
        return await self.start_new(inst.name, target, inst.input, status_input=inst.status_input)

    async def purge(self, instance_id: str) -> int:
        deleted = self.store.delete_instance(instance_id)
        self._changed_now(instance_id)
        return 1 if deleted else 0

    async def purge_many(
        self,
        *,
        created_from: datetime,
        created_to: datetime | None,
        statuses: Collection[str],
    ) -> int:
        rows = self.store.query_instances(
            created_from=_iso(created_from),
            created_to=_iso(created_to or self.clock.now()),
            statuses=list(statuses),
        )
        count = 0
        for row in rows:
            count += await self.purge(row.instance_id)
        return count

    async def wait_for_completion(
        self, instance_id: str, timeout_s: float
    ) -> dict[str, Any] | None:
        """The status once terminal, or the current status when `timeout_s` runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            inst = self.store.get_instance(instance_id)
            if inst is None:
                return None
            remaining = deadline - loop.time()
            if inst.status in TERMINAL or remaining <= 0:
                return self._status(inst, show_input=True)
            changed = self._changed.setdefault(instance_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    # instances

    def _require(self, instance_id: str) -> InstanceRow:
        inst = self.store.get_instance(instance_id)
        if inst is None:
            raise InstanceNotFound(instance_id)
        return inst

    def _create_instance(
        self,
        name: str,
        instance_id: str,
        input_json: str | None,
        *,
        parent: dict[str, Any] | None,
        status_input: str | None = None,
    ) -> None:
        """Write a Pending instance and its ExecutionStarted (inside the caller's transaction)."""
        existing = self.store.get_instance(instance_id)
        if existing is not None and existing.status not in TERMINAL:
            raise InstanceAlreadyExists(instance_id, existing.status)
        now = self.clock.now()
        execution_id = uuid.uuid4().hex
        if existing is not None:
            # A non-running instance is replaced by a new execution under the same id.
            self.store.clear_execution(instance_id)
        self.store.put_instance(
            InstanceRow(
                instance_id=instance_id,
                execution_id=execution_id,
                name=name,
                status=PENDING,
                input=input_json,
                output=None,
                custom_status=None,
                created_time=_iso(now),
                last_updated_time=_iso(now),
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
        self.store.add_inbox(instance_id, execution_id, started)

    def _status(self, inst: InstanceRow, *, show_input: bool) -> dict[str, Any]:
        return {
            "name": inst.name,
            "instanceId": inst.instance_id,
            "runtimeStatus": inst.status,
            "input": _loads(_shown_input(inst)) if show_input else None,
            "customStatus": _loads(inst.custom_status),
            "output": _loads(inst.output),
            "createdTime": h.status_time(datetime.fromisoformat(inst.created_time)),
            "lastUpdatedTime": h.status_time(datetime.fromisoformat(inst.last_updated_time)),
        }

    def _finish_terminated(self, inst: InstanceRow, reason: str | None) -> None:
        now = self.clock.now()
        reason_json = json.dumps(reason)
        with self.store.transaction():
            self.store.clear_execution_work(inst.instance_id)
            self.store.append_history(
                inst.instance_id,
                [
                    h.execution_terminated(now, reason_json=reason_json),
                    h.execution_completed(now, status=TERMINATED, result_json=reason_json),
                ],
            )
            inst.status = TERMINATED
            inst.output = reason_json
            inst.last_updated_time = _iso(now)
            self.store.put_instance(inst)
            parent = self._notify_parent(inst, now, failed_reason=f"terminated: {reason or ''}")
        self._changed_now(inst.instance_id)
        if parent:
            self._kick(parent)

    def _fail_internal(self, instance_id: str, exc: Exception) -> None:
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
            inst.last_updated_time = _iso(now)
            self.store.put_instance(inst)
            parent = self._notify_parent(inst, now, failed_reason=message)
        self._changed_now(instance_id)
        if parent:
            self._kick(parent)

    def _notify_parent(
        self, inst: InstanceRow, now: datetime, *, failed_reason: str | None
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
        self.store.add_inbox(parent["instance_id"], parent["execution_id"], event)
        return str(parent["instance_id"])

    # scheduling

    def _kick(self, instance_id: str) -> None:
        """Make sure an episode runs for this instance soon (at most one runner per instance)."""
        self._dirty.add(instance_id)
        if not self._started or instance_id in self._runners:
            return
        self._runners[instance_id] = asyncio.get_running_loop().create_task(
            self._runner(instance_id)
        )

    async def _runner(self, instance_id: str) -> None:
        try:
            while instance_id in self._dirty:
                self._dirty.discard(instance_id)
                try:
                    self._episode(instance_id)
                except Exception as exc:
                    # A bug in devhost must not leave the instance Running forever in silence.
                    self.log.exception("devhost engine: episode of %s failed", instance_id)
                    self._fail_internal(instance_id, exc)
                # Let workers and other instances run between two episodes of one instance.
                await asyncio.sleep(0)
        finally:
            self._runners.pop(instance_id, None)

    def _changed_now(self, instance_id: str) -> None:
        event = self._changed.pop(instance_id, None)
        if event is not None:
            event.set()

    def _launch(self, item: WorkItem) -> None:
        if not self._started:
            return
        runner = self._run_activity(item) if item.kind == "activity" else self._run_timer(item)
        task = asyncio.get_running_loop().create_task(runner)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_activity(self, item: WorkItem) -> None:
        assert self._semaphore is not None
        name = item.name or ""
        invoker = self.activities.get(name)
        async with self._semaphore:
            invocation_id = uuid.uuid4().hex
            elapsed = timed()
            if invoker is None:
                event = h.task_failed(
                    self.clock.now(),
                    task_id=item.task_id,
                    reason=f"The activity function '{name}' doesn't exist, is disabled, or is not"
                    " an activity function.",
                    details=None,
                )
                outcome = "Failed"
            else:
                try:
                    result = await invoker(item.input)
                except Exception as exc:
                    event = h.task_failed(
                        self.clock.now(),
                        task_id=item.task_id,
                        reason=str(exc) or type(exc).__name__,
                        details=traceback.format_exc(),
                    )
                    outcome = "Failed"
                else:
                    event = h.task_completed(
                        self.clock.now(), task_id=item.task_id, result_json=result
                    )
                    outcome = "Succeeded"
            log_invocation(
                self.log,
                function=name,
                invocation_id=invocation_id,
                instance_id=item.instance_id,
                duration_s=elapsed(),
                outcome=outcome,
            )
        with self.store.transaction():
            still_pending = self.store.delete_work(item.work_id)
            if still_pending:
                self.store.add_inbox(item.instance_id, item.execution_id, event)
        if still_pending:
            self._kick(item.instance_id)

    async def _run_timer(self, item: WorkItem) -> None:
        fire_at = h.parse_time(item.fire_at or "")
        await self.clock.sleep_until(fire_at)
        with self.store.transaction():
            still_pending = self.store.delete_work(item.work_id)
            if still_pending:
                event = h.timer_fired(self.clock.now(), timer_id=item.task_id, fire_at=fire_at)
                self.store.add_inbox(item.instance_id, item.execution_id, event)
        if still_pending:
            self._kick(item.instance_id)

    # episodes

    def _episode(self, instance_id: str) -> None:
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
        plan = _Plan()
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
                if open_waits.get(name, 0) > 0:
                    open_waits[name] -= 1
                    others.append(message)
            elif self._allocates(rt, event):
                allocating.append(message)
            else:
                others.append(message)
        first = {m.msg_id for m in allocating}
        return [*starts, *allocating, *others], first

    @staticmethod
    def _retry_for(rt: InstanceRuntime, event: h.Event) -> RetryGroup | None:
        """The with-retry call this completion or fired timer belongs to, if any."""
        kind = event["EventType"]
        for group in rt["retries"]:
            if kind == EventType.TimerFired:
                if group.get("timer_id") is not None and group["timer_id"] == event.get("TimerId"):
                    return group.copy()
            elif group.get("task_id") is not None and group["task_id"] == event.get(
                "TaskScheduledId"
            ):
                return group.copy()
        return None

    def _account(
        self, inst: InstanceRow, event: h.Event, *, allocating: bool, now: datetime, plan: _Plan
    ) -> None:
        """Update the bookkeeping for one event this episode replays."""
        rt = inst.runtime
        kind = event["EventType"]
        if kind == EventType.EventRaised:
            name = event.get("Name") or ""
            rt["open_waits"][name] = max(0, int(rt["open_waits"].get(name, 0)) - 1)
            return
        if allocating:
            self._apply_retry_event(inst, event, now, plan)
            return
        group = self._retry_for(rt, event)
        if group is not None and kind in (
            EventType.TaskCompleted,
            EventType.SubOrchestrationInstanceCompleted,
            EventType.TimerFired,
        ):
            # Succeeded, or the final retry timer fired and the SDK now sees the failure.
            rt["retries"] = [g for g in rt["retries"] if g != group]

    def _allocates(self, rt: InstanceRuntime, event: h.Event) -> bool:
        group = self._retry_for(rt, event)
        if group is None:
            return False
        kind = event["EventType"]
        if kind in (EventType.TaskFailed, EventType.SubOrchestrationInstanceFailed):
            return True
        if kind == EventType.TimerFired:
            return int(group["failures"]) < int(group["options"]["maxNumberOfAttempts"])
        return False

    def _apply_retry_event(
        self, inst: InstanceRow, event: h.Event, now: datetime, plan: _Plan
    ) -> None:
        """Do what DTFx's RetryInterceptor does for one failure or one fired retry timer.

        After every failed attempt, the last one included, a retry timer with a new id; when it
        fires, the call again with a new id, or (all attempts failed) nothing: the SDK then
        delivers the failure to the orchestrator.
        """
        rt = inst.runtime
        groups = rt["retries"]
        found = self._retry_for(rt, event)
        assert found is not None, "only retry events allocate ids"
        group = groups[groups.index(found)]
        options = group["options"]
        max_attempts = int(options["maxNumberOfAttempts"])
        if event["EventType"] == EventType.TimerFired:
            task_id = self._next_id(rt)
            group["task_id"] = task_id
            group["timer_id"] = None
            self._schedule_call(inst, group, task_id, now, plan)
            return
        group["failures"] = int(group["failures"]) + 1
        group["task_id"] = None
        timer_id = self._next_id(rt)
        group["timer_id"] = timer_id
        if group["failures"] >= max_attempts:
            # DTFx's "dummy timer for back-compat": fires at once, then the failure surfaces.
            fire_at = now
        else:
            delay = _retry_delay(options, attempt=group["failures"] - 1)
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
        plan.work.append({"kind": "timer", "task_id": timer_id, "fire_at": _iso(fire_at)})

    @staticmethod
    def _next_id(rt: InstanceRuntime) -> int:
        value = int(rt["next_id"])
        rt["next_id"] = value + 1
        return value

    def _schedule_call(
        self,
        inst: InstanceRow,
        group: CallSpec,
        task_id: int,
        now: datetime,
        plan: _Plan,
    ) -> None:
        """Schedule an activity or a sub-orchestration under `task_id` (first try or retry)."""
        name = group["name"]
        input_json = group.get("input")
        if group["kind"] == "activity":
            plan.events.append(
                h.task_scheduled(now, task_id=task_id, name=name, input_json=input_json)
            )
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

    def _plan_actions(
        self, inst: InstanceRow, result: EpisodeResult, now: datetime, plan: _Plan
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
                task_id = self._next_id(rt)
                group: CallSpec = {
                    "kind": "activity",
                    "name": str(action.get("functionName")),
                    "input": action.get("input"),
                }
                self._schedule_call(inst, group, task_id, now, plan)
                self._track_retry(rt, action, group, task_id, now)
                flat_ids.append(task_id)
            elif kind in (
                ActionType.CALL_SUB_ORCHESTRATOR,
                ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY,
            ):
                task_id = self._next_id(rt)
                group = {
                    "kind": "suborchestration",
                    "name": str(action.get("functionName")),
                    "input": action.get("input"),
                    "instance_id": action.get("instanceId"),
                }
                self._schedule_call(inst, group, task_id, now, plan)
                self._track_retry(rt, action, group, task_id, now)
                flat_ids.append(task_id)
            elif kind == ActionType.CREATE_TIMER:
                task_id = self._next_id(rt)
                fire_at = h.parse_time(str(action.get("fireAt")))
                plan.events.append(h.timer_created(now, timer_id=task_id, fire_at=fire_at))
                if not action.get("isCanceled"):
                    plan.work.append(
                        {"kind": "timer", "task_id": task_id, "fire_at": _iso(fire_at)}
                    )
                flat_ids.append(task_id)
            elif kind == ActionType.WAIT_FOR_EXTERNAL_EVENT:
                name = str(action.get("externalEventName"))
                rt["open_waits"][name] = int(rt["open_waits"].get(name, 0)) + 1
                flat_ids.append(None)
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

    def _track_retry(
        self,
        rt: InstanceRuntime,
        action: dict[str, Any],
        group: CallSpec,
        task_id: int,
        now: datetime,
    ) -> None:
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
                "first_attempt": _iso(now),
                "task_id": task_id,
                "timer_id": None,
            }
        )

    def _commit(
        self,
        inst: InstanceRow,
        result: EpisodeResult,
        plan: _Plan,
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
            inst.last_updated_time = _iso(now)
            if inst.status == PENDING:
                inst.status = RUNNING
            if error is not None:
                message = f"Orchestrator function '{inst.name}' failed: {error}"
                inst.output = json.dumps(message)
                inst.status = FAILED
                self.store.clear_execution_work(inst.instance_id)
                self.store.append_history(
                    inst.instance_id,
                    [
                        *new_events,
                        h.execution_completed(now, status=FAILED, result_json=inst.output),
                        h.orchestrator_completed(now),
                    ],
                )
                self.store.put_instance(inst)
                parent = self._notify_parent(inst, now, failed_reason=message)
                if parent:
                    kick.add(parent)
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
                inst.status = COMPLETED
                self.store.clear_execution_work(inst.instance_id)
                self.store.append_history(
                    inst.instance_id,
                    [
                        *new_events,
                        *plan.events,
                        h.execution_completed(now, status=COMPLETED, result_json=inst.output),
                        h.orchestrator_completed(now),
                    ],
                )
                self.store.put_instance(inst)
                parent = self._notify_parent(inst, now, failed_reason=None)
                if parent:
                    kick.add(parent)
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
        self._changed_now(inst.instance_id)
        for item in new_work:
            self._launch(item)
        for instance_id in kick:
            self._kick(instance_id)
        return outcome

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
                    self._create_instance(
                        child["name"], child["instance_id"], child["input"], parent=parent
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
        for message in self.store.inbox(inst.instance_id):
            if message.execution_id != inst.execution_id:
                continue
            if message.event["EventType"] != EventType.EventRaised:
                return True
            if open_waits.get(message.event.get("Name") or "", 0) > 0:
                return True
        return False


def _retry_delay(options: Mapping[str, Any], *, attempt: int) -> timedelta:
    """DTFx RetryInterceptor.ComputeNextDelay: first * coefficient^attempt, capped."""
    first = float(options.get("firstRetryIntervalInMilliseconds", 0))
    coefficient = float(options.get("backoffCoefficient", 1.0))
    cap_ms = options.get("maxRetryIntervalInMilliseconds")
    cap = DEFAULT_MAX_RETRY_INTERVAL if cap_ms is None else timedelta(milliseconds=float(cap_ms))
    delay_ms = first * coefficient**attempt
    return timedelta(milliseconds=delay_ms) if delay_ms < cap.total_seconds() * 1000 else cap


def _encode_token(created_time: str, instance_id: str) -> str:
    raw = json.dumps([created_time, instance_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str | None) -> tuple[str, str] | None:
    if not token:
        return None
    try:
        created_time, instance_id = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ValueError(f"invalid continuation token: {token[:50]!r}") from exc
    return str(created_time), str(instance_id)
