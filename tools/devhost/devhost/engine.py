"""devhost's orchestration engine: Durable Functions semantics over the SDK's own replay code.

The engine keeps each instance's history in the Store, replays it through the orchestrator's
`Orchestrator.create(fn)` handle (schema V2, see replay.py) whenever something new happened, and
turns the new tail of the returned actions into work: activities run concurrently on the event
loop (capped by a semaphore), timers wait on the Clock, sub-orchestrations become instances of
their own. What the Durable extension and DTFx do, and where devhost follows them, is in
docs/reference/durable-host-protocol.md and functions-host-http.md; the few places where
devhost chooses differently say so where they happen.

Everything runs on one event loop. An episode (load, replay, commit) is synchronous, so episodes
of one instance never overlap and every episode is written in one transaction.

This module is the facade and the scheduling: which instance runs an episode next, the activity
and timer workers, and waiting for an instance to change. The rest lives next to it:
episodes.py (one episode, from inbox to commit), retries.py (host-side retries of with-retry
calls), management.py (the management operations and the status JSON), instances.py (statuses,
creating an instance, telling a parent) and errors.py (the exceptions re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from concurrent.futures import Executor
from datetime import datetime
from typing import Any

from devhost import history as h
from devhost.clock import Clock
from devhost.entities import EntityFunction, EntityRunner
from devhost.entity_protocol import operation_input, scheduler_id
from devhost.episodes import EpisodeRunner
from devhost.errors import (
    InstanceAlreadyExists,
    InstanceNotActive,
    InstanceNotFound,
    UnknownEntity,
    UnknownOrchestrator,
)
from devhost.functions import log_invocation, timed
from devhost.instances import TERMINAL
from devhost.management import Management, render_status
from devhost.replay import OrchestratorHandle
from devhost.store import Store, WorkItem

__all__ = [
    "ActivityInvoker",
    "Engine",
    "InstanceAlreadyExists",
    "InstanceNotActive",
    "InstanceNotFound",
    "OrchestratorHandle",
    "UnknownEntity",
    "UnknownOrchestrator",
]

ActivityInvoker = Callable[[str | None], Awaitable[str | None]]


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
        entities: Mapping[str, EntityFunction] | None = None,
        executor: Executor | None = None,
    ) -> None:
        if max_concurrent_activities < 1:
            raise ValueError("max_concurrent_activities must be at least 1")
        self.store = store
        self.orchestrators = dict(orchestrators)
        self.activities = dict(activities)
        # Keyed by the lowercased entity name (entity names are case-insensitive).
        self.entities = {name.lower(): fn for name, fn in (entities or {}).items()}
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
        # Both share this engine's store, clock and orchestrators dict (not copies of them).
        self._episodes = EpisodeRunner(
            store=self.store,
            orchestrators=self.orchestrators,
            clock=self.clock,
            log=self.log,
            kick=self._kick,
            launch=self._launch,
            changed_now=self._changed_now,
            entities=self.entities,
        )
        self._entities = EntityRunner(
            store=self.store,
            entities=self.entities,
            clock=self.clock,
            log=self.log,
            kick=self._kick,
            changed_now=self._changed_now,
            executor=executor,
        )
        self._management = Management(
            store=self.store,
            orchestrators=self.orchestrators,
            clock=self.clock,
            kick=self._kick,
            changed_now=self._changed_now,
        )

    # lifecycle

    async def start(self) -> None:
        """Resume every unfinished orchestration; re-run activities that were running."""
        self._semaphore = asyncio.Semaphore(self.max_concurrent_activities)
        self._started = True
        for item in self.store.work_items():
            self._launch(item)
        for inst in self.store.unfinished_instances(TERMINAL):
            self._kick(inst.instance_id)
        # Entity operations not yet processed, the batch a crash interrupted among them.
        for entity_id in self.store.entities_with_ops():
            self._kick(entity_id)

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

    # management (management.py does the work)

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
        return self._management.start_new(name, instance_id, input_json, status_input=status_input)

    async def get_status(
        self,
        instance_id: str,
        *,
        show_history: bool = False,
        show_history_output: bool = False,
        show_input: bool = True,
    ) -> dict[str, Any] | None:
        return self._management.get_status(
            instance_id,
            show_history=show_history,
            show_history_output=show_history_output,
            show_input=show_input,
        )

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
        return self._management.list_instances(
            created_from=created_from,
            created_to=created_to,
            statuses=statuses,
            prefix=prefix,
            top=top,
            continuation=continuation,
            show_input=show_input,
        )

    async def raise_event(self, instance_id: str, name: str, data_json: str | None) -> None:
        self._management.raise_event(instance_id, name, data_json)

    async def terminate(self, instance_id: str, reason: str | None) -> None:
        self._management.terminate(instance_id, reason)

    async def suspend(self, instance_id: str, reason: str | None) -> None:
        self._management.suspend(instance_id, reason)

    async def resume(self, instance_id: str, reason: str | None) -> None:
        self._management.resume(instance_id, reason)

    async def rewind(self, instance_id: str, reason: str | None) -> None:
        raise NotImplementedError("rewind is not implemented by devhost's engine")

    async def restart(self, instance_id: str, *, new_instance_id: bool) -> str:
        return self._management.restart(instance_id, new_instance_id=new_instance_id)

    async def purge(self, instance_id: str) -> int:
        return self._management.purge(instance_id)

    async def purge_many(
        self,
        *,
        created_from: datetime,
        created_to: datetime | None,
        statuses: Collection[str],
    ) -> int:
        return self._management.purge_many(
            created_from=created_from, created_to=created_to, statuses=statuses
        )

    # entities

    async def signal_entity(self, name: str, key: str, operation: str, input_token: Any) -> None:
        """Queue a one-way operation; `input_token` is the input as the extension holds it (the
        parsed JSON body: the SDK's JSON string), None for no input."""
        self._entities.function_for(name)
        entity_id = scheduler_id(name, key)
        with self.store.transaction():
            self.store.add_entity_op(entity_id, operation, operation_input(input_token))
        self._kick(entity_id)

    async def read_entity_state(self, name: str, key: str) -> str | None:
        """The entity's state JSON text, or None if it does not exist."""
        return self.store.get_entity(scheduler_id(name, key))

    async def wait_for_entity(self, name: str, key: str, timeout_s: float) -> None:
        """Wait until the entity has no operation waiting (or `timeout_s` runs out)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        entity_id = scheduler_id(name, key)
        while self.store.entity_ops(entity_id, 1):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            changed = self._changed.setdefault(entity_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

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
                return render_status(inst, show_input=True)
            changed = self._changed.setdefault(instance_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

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
                if instance_id.startswith("@"):
                    # An entity (orchestration instance ids cannot start with @): one batch.
                    try:
                        if await self._entities.run(instance_id):
                            self._dirty.add(instance_id)
                    except Exception:
                        self.log.exception("devhost engine: batch of %s failed", instance_id)
                    await asyncio.sleep(0)
                    continue
                try:
                    self._episodes.run(instance_id)
                except Exception as exc:
                    # A bug in devhost must not leave the instance Running forever in silence.
                    self.log.exception("devhost engine: episode of %s failed", instance_id)
                    self._episodes.fail(instance_id, exc)
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
