"""The durable client, seen as a job store: the one seam between the HTTP edge and the Durable
Functions host, with its answers typed and its failures translated.

The SDK's client answers a missing instance and an error alike with a falsy status (only the
error's body, ``Message``, tells them apart) and raises a bare Exception for error answers of
the start and raise-event calls; transport problems come as aiohttp errors. Here an absent
instance is None, a conflicting start is False, and everything else that fails is
StoreUnavailable: the edge never guesses "absent" from an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from http_api.errors import StoreUnavailable
from orchestrators.route_entity import route_entity_id
from rules.batch_records import BatchInput, BatchOutcome, BatchStatus
from rules.job_records import CustomStatus, JobInput, Outcome
from rules.records import as_object
from rules.route_model import RouteState
from rules.timing import iso_utc


class DurableClient(Protocol):
    """What the edge uses of ``azure.durable_functions.DurableOrchestrationClient``."""

    async def get_status(
        self,
        instance_id: str,
        show_history: bool = ...,
        show_history_output: bool = ...,
        show_input: bool = ...,
    ) -> Any: ...

    async def start_new(
        self,
        orchestration_function_name: str,
        instance_id: str | None = ...,
        client_input: Any | None = ...,
    ) -> str: ...

    async def raise_event(
        self,
        instance_id: str,
        event_name: str,
        event_data: Any = ...,
        task_hub_name: str | None = ...,
        connection_name: str | None = ...,
    ) -> None: ...

    async def read_entity_state(
        self,
        entityId: Any,
        task_hub_name: str | None = ...,
        connection_name: str | None = ...,
    ) -> Any: ...


@dataclass(frozen=True)
class JobInstance:
    """One job's durable status, typed. ``output`` is set once the orchestration completed."""

    instance_id: str
    runtime_status: str
    job: JobInput
    custom_status: CustomStatus | None
    output: Outcome | None
    created_at: datetime | None
    updated_at: datetime | None

    @property
    def created_iso(self) -> str | None:
        return iso_utc(self.created_at) if self.created_at else None

    @property
    def updated_iso(self) -> str | None:
        return iso_utc(self.updated_at) if self.updated_at else None


@dataclass(frozen=True)
class BatchInstance:
    """One batch's durable status, typed. ``outcome`` is set once the orchestration completed."""

    batch_id: str
    runtime_status: str
    batch: BatchInput
    status: BatchStatus | None
    outcome: BatchOutcome | None


class DurableJobs:
    def __init__(self, client: DurableClient) -> None:
        self._client = client

    async def look(self, instance_id: str) -> JobInstance | None:
        """The job's status, None when no such instance exists.

        Raises StoreUnavailable on an error answer or no answer; RecordUnreadable when the
        instance's records cannot be read (another orchestration's, or a newer version).
        """
        try:
            status = await self._client.get_status(instance_id, show_input=True)
        except Exception as exc:
            raise StoreUnavailable(
                f"status request failed: {type(exc).__name__}", job_id=instance_id
            ) from exc
        if status and status.runtime_status is not None:
            runtime = status.runtime_status.name
            output = status.output if runtime == "Completed" else None
            return JobInstance(
                instance_id=instance_id,
                runtime_status=runtime,
                job=JobInput.from_json(status.input_),
                custom_status=CustomStatus.from_json(status.custom_status),
                output=Outcome.from_json(as_object(output, "outcome")) if output else None,
                created_at=_utc(status.created_time),
                updated_at=_utc(status.last_updated_time),
            )
        if not _empty_answer(status):
            # The SDK hides the status code (400, 404 and 500 alike become a status object):
            # only an empty body is the host's 404; anything said is an error, not "absent".
            raise StoreUnavailable("the job store answered with an error", job_id=instance_id)
        return None

    async def look_batch(self, batch_id: str) -> BatchInstance | None:
        """The batch's status, None when no such instance exists (as ``look``)."""
        try:
            status = await self._client.get_status(batch_id, show_input=True)
        except Exception as exc:
            raise StoreUnavailable(f"status request failed: {type(exc).__name__}") from exc
        if status and status.runtime_status is not None:
            runtime = status.runtime_status.name
            output = status.output if runtime == "Completed" else None
            return BatchInstance(
                batch_id=batch_id,
                runtime_status=runtime,
                batch=BatchInput.from_json(status.input_),
                status=BatchStatus.from_json(status.custom_status),
                outcome=BatchOutcome.from_json(output) if output else None,
            )
        if not _empty_answer(status):
            raise StoreUnavailable("the job store answered with an error")
        return None

    async def start_batch(self, orchestrator: str, batch_id: str, batch: dict[str, Any]) -> bool:
        """Start the batch; False when the start was refused (it exists already)."""
        try:
            await self._client.start_new(orchestrator, batch_id, batch)
        except Exception:  # the SDK raises a bare Exception for a refused start
            return False
        return True

    async def start(self, orchestrator: str, instance_id: str, job: JobInput) -> bool:
        """Start the job; False when the start was refused (another start won the race, which
        the caller confirms with ``look``)."""
        try:
            await self._client.start_new(orchestrator, instance_id, job.to_json())
        except Exception:  # the SDK raises a bare Exception for a refused start
            return False
        return True

    async def raise_event(self, instance_id: str, event: str) -> bool:
        """Raise ``event`` on the instance; False when it was refused (it has ended, say)."""
        try:
            await self._client.raise_event(instance_id, event, {})
        except Exception:  # refused, or no answer: the caller looks again to tell which
            return False
        return True

    async def route_state(self, route: str) -> RouteState:
        """The route entity's state (rules.route_model); empty for a route no attempt asked
        about yet. Raises StoreUnavailable when the host does not answer, RecordUnreadable for
        a state a newer deployment wrote."""
        try:
            found = await self._client.read_entity_state(route_entity_id(route))
        except Exception as exc:
            raise StoreUnavailable(f"route state request failed: {type(exc).__name__}") from exc
        if not found.entity_exists:
            return RouteState()
        return RouteState.from_json(found.entity_state)


def _empty_answer(status: Any) -> bool:
    """Whether the SDK built ``status`` from an empty body: its own fields unset, nothing else."""
    fields = vars(status)
    return all(value is None for name, value in fields.items() if name.startswith("_")) and all(
        not value for name, value in fields.items() if not name.startswith("_")
    )


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
