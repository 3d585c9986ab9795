"""Durable entities: one batch of operations at a time per entity, applied in one transaction.

Operations (a client's signal, an orchestration's signal or call) wait in the `entity_ops` table
in arrival order. The Engine runs at most one runner per entity id (`@name@key`), so batches of
one entity never overlap; a batch hands the waiting operations to the entity function the way
the Python worker does (the trigger converter's EntityContext around the batch request JSON, a
sync function in the worker's thread pool), then writes the new state, deletes the operations
and puts each call's answer in its orchestration's inbox, all in one transaction. A crash before
that commit leaves every operation of the batch waiting, so the batch runs again on restart and
its results are recorded once. Protocol forms: entity_protocol.py.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from azure.functions import meta
from azure.functions.durable_functions import EnitityTriggerConverter

from devhost import history as h
from devhost.clock import Clock
from devhost.entity_protocol import (
    EntityOperation,
    OperationOutcome,
    batch_request,
    error_result,
    parse_batch_result,
    parse_scheduler_id,
    response_message,
)
from devhost.errors import UnknownEntity
from devhost.functions import log_invocation, timed
from devhost.instances import TERMINAL, iso
from devhost.store import EntityOp, Store

__all__ = ["MAX_BATCH", "EntityFunction", "EntityHandle", "EntityRunner"]

EntityHandle = Callable[[Any], Any]

# Operations per batch. The extension's maxEntityOperationBatchSize defaults to 50 on the
# Consumption plan (5000 elsewhere); the smaller one keeps a re-run after a crash short.
MAX_BATCH = 50


@dataclass(frozen=True)
class EntityFunction:
    """An `@app.entity_trigger` function: its entity name and the SDK's `Entity.create` handle."""

    name: str
    handle: EntityHandle = field(repr=False)


class EntityRunner:
    """Runs the batches of entity operations, as the Engine schedules them."""

    def __init__(
        self,
        *,
        store: Store,
        entities: Mapping[str, EntityFunction],
        clock: Clock,
        log: logging.Logger,
        kick: Callable[[str], None],
        changed_now: Callable[[str], None],
        executor: Executor | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.store = store
        self.entities = entities  # keyed by the lowercased entity name
        self.clock = clock
        self.log = log
        self._kick = kick
        self._changed_now = changed_now
        self._executor = executor
        self.max_batch = max_batch

    def function_for(self, name: str) -> EntityFunction:
        fn = self.entities.get(name.lower())
        if fn is None:
            raise UnknownEntity(name)
        return fn

    async def run(self, entity_id: str) -> bool:
        """Process one batch of `entity_id`; True if operations are still waiting after it."""
        ops = self.store.entity_ops(entity_id, self.max_batch)
        if not ops:
            return False
        name, key = parse_scheduler_id(entity_id)
        state = self.store.get_entity(entity_id)
        new_state = state
        elapsed = timed()
        fn = self.entities.get(name)
        if fn is None:
            reason = str(UnknownEntity(name))
            self.log.error(
                "devhost entities: %s (%d operations of %s)", reason, len(ops), entity_id
            )
            outcomes = [error_result(reason)] * len(ops)
            outcome = "Failed"
        else:
            request = batch_request(
                name,
                key,
                state,
                [
                    EntityOperation(
                        name=op.name, input=op.input, signal=op.is_signal, request_id=op.request_id
                    )
                    for op in ops
                ],
            )
            try:
                result = parse_batch_result(await self._invoke(fn.handle, request), len(ops))
            except Exception as exc:
                # The function failed as a whole (not one operation): every operation fails and
                # the state stays as it was.
                self.log.exception("devhost entities: entity function '%s' failed", fn.name)
                message = f"entity function '{fn.name}' failed: {type(exc).__name__}: {exc}"
                outcomes = [error_result(message)] * len(ops)
                outcome = "Failed"
            else:
                outcomes = result.results
                new_state = result.state_json
                outcome = "Succeeded"
                if result.signals:
                    # The Python SDK's entity context has no signal_entity, so this cannot come
                    # from it; refuse loudly rather than drop or guess a form.
                    self.log.error(
                        "devhost entities: %s sent %d signals; devhost does not deliver signals"
                        " from entities",
                        entity_id,
                        len(result.signals),
                    )
        parents = self._commit(entity_id, ops, outcomes, state, new_state)
        log_invocation(
            self.log,
            function=fn.name if fn is not None else name,
            invocation_id=uuid.uuid4().hex,
            instance_id=entity_id,
            duration_s=elapsed(),
            outcome=outcome,
        )
        self._changed_now(entity_id)
        for parent in parents:
            self._kick(parent)
        return len(ops) == self.max_batch

    async def _invoke(self, handle: EntityHandle, request: str) -> str:
        """Call the handle as the worker does: decode, run in the thread pool, encode."""
        context = EnitityTriggerConverter.decode(
            meta.Datum(type="json", value=request), trigger_metadata=None
        )
        loop = asyncio.get_running_loop()
        value = await loop.run_in_executor(self._executor, handle, context)
        if asyncio.iscoroutine(value):
            value.close()
            raise TypeError("an entity function must be synchronous (def, not async def)")
        encoded = EnitityTriggerConverter.encode(value, expected_type=None).value
        if not isinstance(encoded, str):
            raise TypeError(f"the entity handle returned {type(encoded).__name__}, not JSON text")
        return encoded

    def _commit(
        self,
        entity_id: str,
        ops: list[EntityOp],
        outcomes: list[OperationOutcome],
        state: str | None,
        new_state: str | None,
    ) -> set[str]:
        """State, processed operations and call answers in one transaction; the parents to
        kick after it."""
        now = self.clock.now()
        parents: set[str] = set()
        with self.store.transaction():
            self.store.delete_entity_ops([op.op_id for op in ops])
            if new_state != state:
                self.store.put_entity(entity_id, new_state, iso(now))
            for op, result in zip(ops, outcomes, strict=True):
                if op.is_signal or op.parent_instance_id is None:
                    continue
                parent = self.store.get_instance(op.parent_instance_id)
                if (
                    parent is None
                    or parent.execution_id != op.parent_execution_id
                    or parent.status in TERMINAL
                ):
                    continue  # nobody waits for this answer any more
                event = h.event_raised(
                    now, name=op.request_id or "", input_json=response_message(result)
                )
                self.store.add_inbox(parent.instance_id, parent.execution_id, event)
                parents.add(parent.instance_id)
        return parents
