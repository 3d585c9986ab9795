"""A hand-written fake of the SDK's DurableOrchestrationClient, for the HTTP handlers' tests.

It answers as the SDK does over the host's management API: ``get_status`` hands back a
DurableOrchestrationStatus built from the host's JSON (empty for a 404, ``Message`` for an error
answer), ``start_new`` and ``raise_event`` raise a bare Exception when the host refuses,
``read_entity_state`` hands back an EntityStateResponse (``entity_exists`` False for a 404) and
raises a bare Exception for any other status. It can fail on cue (``error_answers``, ``down``,
``slow_s``, ``entity_errors``) and counts every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from azure.durable_functions.models.DurableOrchestrationStatus import (
    DurableOrchestrationStatus,
)
from azure.durable_functions.models.EntityStateResponse import EntityStateResponse

RUNNING = ("Pending", "Running")


class FakeDurableClient:
    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        # Entity states by "@name@key", as the host stores them (JSON values).
        self.entities: dict[str, Any] = {}
        self.calls: list[tuple[str, str]] = []
        self.events: list[tuple[str, str]] = []
        self.error_answers = False  # get_status answers with the host's error body
        self.down = False  # every call raises as a refused connection does
        self.slow_s = 0.0  # every call takes this long
        self.refuse_events = False
        self.entity_errors = False  # read_entity_state meets an error answer (a 500)
        self.refuse_starts = False
        # start_new reports success without creating anything (Azure's concurrent starts).
        self.silent_starts = False
        # get_status hands back a status built from this body instead (an odd error answer).
        self.answer_override: Any = None
        # Called with the instance id just before a start or an event is handled: a race.
        self.before_start: Callable[[str], None] | None = None
        self.before_event: Callable[[str], None] | None = None

    def put(
        self,
        instance_id: str,
        job_input: dict[str, Any],
        *,
        status: str = "Running",
        custom: Any = None,
        output: Any = None,
        created: str = "2026-05-07T13:46:12Z",
    ) -> None:
        self.instances[instance_id] = {
            "name": "image_job",
            "instanceId": instance_id,
            "runtimeStatus": status,
            "input": job_input,
            "customStatus": custom,
            "output": output,
            "createdTime": created,
            "lastUpdatedTime": created,
        }

    async def _call(self, name: str, instance_id: str) -> None:
        self.calls.append((name, instance_id))
        if self.slow_s:
            await asyncio.sleep(self.slow_s)
        if self.down:
            raise aiohttp.ClientConnectionError("connection refused")

    def count(self, name: str) -> int:
        return sum(1 for call, _ in self.calls if call == name)

    async def get_status(
        self,
        instance_id: str,
        show_history: bool = False,
        show_history_output: bool = False,
        show_input: bool = False,
    ) -> Any:
        await self._call("get_status", instance_id)
        if self.error_answers:
            return DurableOrchestrationStatus.from_json({"Message": "Something went wrong"})
        if self.answer_override is not None:
            return DurableOrchestrationStatus.from_json(self.answer_override)
        body = self.instances.get(instance_id)
        if body is None:
            return DurableOrchestrationStatus.from_json("")
        shown = dict(body) if show_input else {k: v for k, v in body.items() if k != "input"}
        return DurableOrchestrationStatus.from_json(shown)

    async def start_new(
        self,
        orchestration_function_name: str,
        instance_id: str | None = None,
        client_input: Any | None = None,
    ) -> str:
        assert instance_id is not None
        await self._call("start_new", instance_id)
        if self.before_start:
            self.before_start(instance_id)
        existing = self.instances.get(instance_id)
        if self.silent_starts:
            return instance_id
        if self.refuse_starts or (existing and existing["runtimeStatus"] in RUNNING):
            raise Exception(f"An instance with ID '{instance_id}' already exists.")
        self.put(instance_id, dict(client_input or {}), status="Pending")
        return instance_id

    async def raise_event(
        self,
        instance_id: str,
        event_name: str,
        event_data: Any = None,
        task_hub_name: str | None = None,
        connection_name: str | None = None,
    ) -> None:
        await self._call("raise_event", instance_id)
        if self.before_event:
            self.before_event(instance_id)
        existing = self.instances.get(instance_id)
        if self.refuse_events or not existing or existing["runtimeStatus"] not in RUNNING:
            raise Exception(f"No instance with ID '{instance_id}' is running.")
        self.events.append((instance_id, event_name))

    async def read_entity_state(
        self,
        entityId: Any,
        task_hub_name: str | None = None,
        connection_name: str | None = None,
    ) -> EntityStateResponse:
        key = f"@{entityId.name}@{entityId.key}"
        await self._call("read_entity_state", key)
        if self.entity_errors:  # what the SDK raises for any status but 200 and 404
            raise Exception("The operation failed with an unexpected status code 500")
        if key not in self.entities:
            return EntityStateResponse(False)
        return EntityStateResponse(True, self.entities[key])
