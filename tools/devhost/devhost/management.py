"""The engine's management operations: start, status, list and query, raise event, terminate,
suspend, resume, restart and purge, and the status JSON they answer with.

management_api.py maps the Durable management HTTP API onto the Engine, and the Engine hands these
calls to `Management`. Each operation is a short synchronous step over the Store (one transaction
where it writes); it reaches the Engine's scheduling only through the two callbacks it is given.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any

from devhost import history as h
from devhost.clock import Clock
from devhost.errors import InstanceNotActive, InstanceNotFound, UnknownOrchestrator
from devhost.instances import (
    PENDING,
    RUNNING,
    SUSPENDED,
    TERMINAL,
    TERMINATED,
    create_instance,
    iso,
    notify_parent,
)
from devhost.replay import OrchestratorHandle
from devhost.store import InstanceRow, Store

__all__ = ["Management", "render_status"]


class Management:
    """The operations behind the Engine's management calls, which the Engine makes async."""

    def __init__(
        self,
        *,
        store: Store,
        orchestrators: Mapping[str, OrchestratorHandle],
        clock: Clock,
        kick: Callable[[str], None],
        changed_now: Callable[[str], None],
    ) -> None:
        self.store = store
        self.orchestrators = orchestrators
        self.clock = clock
        # The Engine's scheduling: run an episode of an instance soon, and wake whoever waits
        # for an instance to change.
        self._kick = kick
        self._changed_now = changed_now

    def start_new(
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
            create_instance(
                self.store,
                self.clock,
                name,
                instance_id,
                input_json,
                parent=None,
                status_input=status_input,
            )
        self._changed_now(instance_id)
        self._kick(instance_id)
        return instance_id

    def get_status(
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
        status = render_status(inst, show_input=show_input)
        if show_history and inst.status != PENDING:
            status["historyEvents"] = h.render_history(
                self.store.load_history(instance_id),
                show_history_output=show_history_output,
                show_input=show_input,
            )
        return status

    def list_instances(
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
            created_from=None if created_from is None else iso(created_from),
            created_to=None if created_to is None else iso(created_to),
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
        return [render_status(row, show_input=show_input) for row in page], token

    def raise_event(self, instance_id: str, name: str, data_json: str | None) -> None:
        inst = self._require(instance_id)
        if inst.status in TERMINAL:
            raise InstanceNotActive(instance_id, inst.status)
        with self.store.transaction():
            event = h.event_raised(self.clock.now(), name=name, input_json=data_json)
            self.store.add_inbox(instance_id, inst.execution_id, event)
        self._kick(instance_id)

    def terminate(self, instance_id: str, reason: str | None) -> None:
        inst = self._require(instance_id)
        if inst.status in TERMINAL:
            raise InstanceNotActive(instance_id, inst.status)
        self._finish_terminated(inst, reason)

    def suspend(self, instance_id: str, reason: str | None) -> None:
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
            inst.last_updated_time = iso(now)
            self.store.put_instance(inst)
        self._changed_now(instance_id)

    def resume(self, instance_id: str, reason: str | None) -> None:
        inst = self._require(instance_id)
        if inst.status in TERMINAL:
            raise InstanceNotActive(instance_id, inst.status)
        if inst.status != SUSPENDED:
            return
        now = self.clock.now()
        with self.store.transaction():
            self.store.append_history(instance_id, [h.execution_resumed(now, reason=reason)])
            inst.status = inst.runtime.pop("status_before_suspend", RUNNING)
            inst.last_updated_time = iso(now)
            self.store.put_instance(inst)
        self._changed_now(instance_id)
        self._kick(instance_id)

    def restart(self, instance_id: str, *, new_instance_id: bool) -> str:
        inst = self._require(instance_id)
        target = uuid.uuid4().hex if new_instance_id else instance_id
        return self.start_new(inst.name, target, inst.input, status_input=inst.status_input)

    def purge(self, instance_id: str) -> int:
        deleted = self.store.delete_instance(instance_id)
        self._changed_now(instance_id)
        return 1 if deleted else 0

    def purge_many(
        self,
        *,
        created_from: datetime,
        created_to: datetime | None,
        statuses: Collection[str],
    ) -> int:
        rows = self.store.query_instances(
            created_from=iso(created_from),
            created_to=iso(created_to or self.clock.now()),
            statuses=list(statuses),
        )
        count = 0
        for row in rows:
            count += self.purge(row.instance_id)
        return count

    def _require(self, instance_id: str) -> InstanceRow:
        inst = self.store.get_instance(instance_id)
        if inst is None:
            raise InstanceNotFound(instance_id)
        return inst

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
            inst.last_updated_time = iso(now)
            self.store.put_instance(inst)
            parent = notify_parent(
                self.store, inst, now, failed_reason=f"terminated: {reason or ''}"
            )
        self._changed_now(inst.instance_id)
        if parent:
            self._kick(parent)


def render_status(inst: InstanceRow, *, show_input: bool) -> dict[str, Any]:
    """The status JSON of one instance, as the management API shows it."""
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


def _shown_input(inst: InstanceRow) -> str | None:
    return inst.status_input if inst.status_input is not None else inst.input


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


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
