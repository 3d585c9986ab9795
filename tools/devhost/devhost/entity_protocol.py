"""The out-of-process entity protocol, as azure-functions-durable 1.x reads and writes it.

Pure data, no I/O: the id forms, the batch request the host hands an entity function, the batch
result it returns, and the messages that carry an orchestration's entity call and its answer.
Every fact here is what the installed SDK parses or produces (the file:line references are to
azure/durable_functions in site-packages, version 1.7); devhost_tests/test_protocol_conformance.py
pins them against the SDK itself.

- An entity instance id is `@{name lowercased}@{key}` (models/utils/entity_utils.py:44,
  EntityId.get_scheduler_id); the name is case-insensitive, the key is not.
- Batch request (models/DurableEntityContext.py:106-119, entity.py:56-62): a JSON object with
  exactly `self` ({name, key}), `exists`, `state` (the stored state's JSON text, or null) and
  `batch`, a list of operations each with `name` and `input`. Any other top-level key breaks
  `DurableEntityContext(**json_dict)`, so there is none. An operation's `input` is the JSON text
  of the input *as a JSON string* (`get_input` does json.loads, then df_loads on the result,
  DurableEntityContext.py:186-188): the SDK's own `df_dumps(value)` text, serialized once more.
- Batch result (entity.py:69-85, models/entities/EntityState.py:64-67, OperationResult.py:89-92):
  `entityExists`, `entityState` (JSON text), `results` (one per operation, in order:
  `isError`, `duration` ms, `startTime` ms since the epoch, `result` as JSON text; an error's
  result is `str(exception)` as JSON text) and `signals` (always empty: the Python entity context
  has no signal_entity).
- An orchestration's call (models/actions/CallEntityAction.py:41-44, actionType 7) and signal
  (SignalEntityAction.py:41-44, actionType 9) carry `instanceId` (the scheduler id), `operation`
  and `input` (df_dumps text). Each takes the next task id
  (models/DurableOrchestrationContext.py:785 for a yielded call; :624 in
  `_record_fire_and_forget_action` for a signal).
- The call is answered through history (models/TaskOrchestrationExecutor.py:31, 146-156, 195-228):
  an EventSent (14) whose EventId is the call's task id and whose Input is the request message
  JSON with an `id` (a GUID), then an EventRaised (15) whose Name is that GUID and whose Input is
  the response message JSON `{"result": <result JSON text>}`, plus `exceptionType` when the
  operation failed (models/entities/ResponseMessage.py:46: only the key's presence counts; the task
  then throws `Exception(<decoded result>)`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BatchResult",
    "EntityOperation",
    "OperationOutcome",
    "batch_request",
    "error_result",
    "operation_input",
    "parse_batch_result",
    "parse_scheduler_id",
    "request_message",
    "response_message",
    "scheduler_id",
]

# What `exceptionType` says in a failed operation's response. The SDK reads only its presence;
# the extension's own text is not derivable from the SDK, so devhost names the failure plainly.
EXCEPTION_TYPE = "EntityOperationFailed"


def scheduler_id(name: str, key: str) -> str:
    """`@name@key` with the name lowercased, as EntityId.get_scheduler_id writes it."""
    return f"@{name.lower()}@{key}"


def parse_scheduler_id(entity_id: str) -> tuple[str, str]:
    """(name, key) of `@name@key`; raises ValueError for anything else."""
    if not entity_id.startswith("@") or "@" not in entity_id[1:]:
        raise ValueError(f"not an entity instance id: {entity_id!r}")
    name, key = entity_id[1:].split("@", 1)
    if not name or not key:
        raise ValueError(f"not an entity instance id: {entity_id!r}")
    return name, key


def operation_input(token: Any) -> str | None:
    """An operation's `input` field from the input as the extension holds it (a JSON token).

    The orchestrator's action `input` is the df_dumps text, a string token; the client's HTTP body
    (the SDK posts `json.dumps(value)` as JSON) parses to that same string token. The extension
    serializes the token once more, so the entity's `get_input` decodes twice. None: no input.
    """
    if token is None:
        return None
    return json.dumps(token)


@dataclass(frozen=True)
class EntityOperation:
    """One operation to deliver: its name and its `input` field as the batch carries it."""

    name: str
    input: str | None
    signal: bool
    request_id: str | None = None


def batch_request(
    name: str, key: str, state_json: str | None, operations: list[EntityOperation]
) -> str:
    """The JSON the host hands the entity function for one batch."""
    return json.dumps(
        {
            "self": {"name": name, "key": key},
            "exists": state_json is not None,
            "state": state_json,
            "batch": [
                # `name` and `input` are what the SDK reads; `signal` and `id` ride along as the
                # extension's operation request carries them (the SDK ignores extra keys here).
                {"name": op.name, "input": op.input, "signal": op.signal, "id": op.request_id}
                for op in operations
            ],
        }
    )


@dataclass(frozen=True)
class OperationOutcome:
    is_error: bool
    result_json: str


@dataclass(frozen=True)
class BatchResult:
    exists: bool
    state_json: str | None
    results: list[OperationOutcome] = field(default_factory=list)
    signals: list[Any] = field(default_factory=list)


def parse_batch_result(text: str, operations: int) -> BatchResult:
    """Read the entity function's return value; raises ValueError if it is not the SDK's form."""
    body = json.loads(text)
    if not isinstance(body, dict):
        raise ValueError(f"entity result is not a JSON object: {text[:200]!r}")
    raw_results = body.get("results")
    if not isinstance(raw_results, list) or len(raw_results) != operations:
        raise ValueError(
            f"entity result has {len(raw_results) if isinstance(raw_results, list) else 'no'}"
            f" results for {operations} operations"
        )
    results: list[OperationOutcome] = []
    for item in raw_results:
        result = item.get("result")
        results.append(
            OperationOutcome(
                is_error=bool(item.get("isError")),
                result_json="null" if result is None else str(result),
            )
        )
    exists = bool(body.get("entityExists"))
    state = body.get("entityState")
    return BatchResult(
        exists=exists,
        state_json=str(state) if exists and state is not None else None,
        results=results,
        signals=list(body.get("signals") or []),
    )


def error_result(message: str) -> OperationOutcome:
    """A failed operation whose entity function never gave a result (devhost's own failure)."""
    return OperationOutcome(is_error=True, result_json=json.dumps(message))


def request_message(
    *,
    request_id: str,
    operation: str,
    input_field: str | None,
    signal: bool,
    parent_instance_id: str,
    parent_execution_id: str,
    timestamp: str,
) -> str:
    """The EventSent `Input` for an orchestration's call or signal (the SDK reads only `id`)."""
    message: dict[str, Any] = {
        "op": operation,
        "signal": signal,
        "input": input_field,
        "id": request_id,
        "parent": parent_instance_id,
        "parentExecution": parent_execution_id,
        "timestamp": timestamp,
    }
    return json.dumps(message)


def response_message(outcome: OperationOutcome) -> str:
    """The EventRaised `Input` that answers a call: `{"result": ...}` (+ `exceptionType`)."""
    message: dict[str, Any] = {"result": outcome.result_json}
    if outcome.is_error:
        message["exceptionType"] = EXCEPTION_TYPE
    return json.dumps(message)
