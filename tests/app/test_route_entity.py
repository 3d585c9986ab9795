"""The route entity function driven as the Functions host drives it: one batch of operations
in, the SDK's batch result out (azure-functions-durable's Entity.handle)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrators import route_entity
from orchestrators.route_entity import ADMIT, REPORT, ROUTE_ENTITY
from rules.route_model import RouteState
from rules.route_records import AdmitRequest, AttemptReport, Expectation, Priority

from .app_settings import only_settings
from .durable_history import orchestrator_handle

SETTINGS = {
    "IMAGE_ROUTES": "azure",
    "IMAGE_ROUTE_AZURE_BASE_URL": "http://127.0.0.1:8089",
    "IMAGE_ROUTE_AZURE_DEPLOYMENT": "gpt-image-2",
    "IMAGE_ROUTE_AZURE_OWNER": "azure",
    "IMAGE_ROUTE_AZURE_API_KEY": "test-key",
    "IMAGE_ROUTE_AZURE_REQUESTS_PER_MINUTE": "10",
    "IMAGES_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    "IMAGE_JOB_ID_SECRET": "test-secret-for-entity-tests",
}
T = 1_800_000_000.0
SHAPE = "gpt-image-2/1024/low/png/stream-1"
GUESS = Expectation(None, None, total_s=20.0, early_s=12.0, late_s=26.0, samples=0)


@pytest.fixture(autouse=True)
def app_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    route_entity._written.clear()
    # The entity reads the wall clock (its operations are not replayed): held still here.
    monkeypatch.setattr(time, "time", lambda: T)
    with only_settings(monkeypatch, SETTINGS):
        yield
    route_entity._written.clear()


def ask(job_id: str) -> dict[str, Any]:
    return {"name": ADMIT, "input": json.dumps(json.dumps(admit(job_id))), "signal": False}


def admit(job_id: str) -> dict[str, Any]:
    return AdmitRequest(job_id, 1, Priority.INTERACTIVE, 1, SHAPE, GUESS, queued_since=T).to_json()


def report(job_id: str) -> dict[str, Any]:
    done = AttemptReport(
        job_id=job_id, attempt=1, shape=SHAPE, failure_kind=None, sent_at=T, ended_at=T
    )
    return {"name": REPORT, "input": json.dumps(json.dumps(done.to_json())), "signal": True}


def run_batch(state: str | None, operations: list[dict[str, Any]]) -> dict[str, Any]:
    """One batch as the host hands it over (the extension's request shape; devhost's
    entity_protocol.batch_request writes the same), and the SDK's result."""
    handle = orchestrator_handle(route_entity.bp, "route")
    request = {
        "self": {"name": ROUTE_ENTITY, "key": "azure"},
        "exists": state is not None,
        "state": state,
        "batch": operations,
    }
    result: dict[str, Any] = json.loads(handle(json.dumps(request)))
    return result


def test_a_batch_answers_and_ends_as_the_same_operations_one_batch_each():
    operations = [ask("img-a"), ask("img-b"), report("img-a"), ask("img-c")]
    together = run_batch(None, operations)
    route_entity._written.clear()
    state: str | None = None
    alone: list[dict[str, Any]] = []
    for operation in operations:
        result = run_batch(state, [operation])
        state = result["entityState"]
        alone.extend(result["results"])
    # The answers to calls (a signal's result is dropped: the SDK repeats the one before it).
    calls = [n for n, operation in enumerate(operations) if not operation["signal"]]
    answered = [together["results"][n]["result"] for n in calls]
    assert answered == [alone[n]["result"] for n in calls]
    assert not any(r["isError"] for r in together["results"])
    assert json.loads(together["entityState"]) == json.loads(state or "null")
    admissions = [json.loads(result) for result in answered]
    assert [a["admitted"] for a in admissions] == [True, False, False]  # 10 a minute: one now


def test_the_state_is_parsed_once_a_batch_not_once_an_operation(monkeypatch):
    stored = run_batch(None, [ask(f"img-{n}") for n in range(5)])["entityState"]
    parsed: list[object] = []
    original = RouteState.from_json

    def counting(value: object) -> RouteState:
        parsed.append(value)
        return original(value)

    monkeypatch.setattr(RouteState, "from_json", counting)
    route_entity._written.clear()  # another worker wrote the stored state
    result = run_batch(stored, [ask(f"img-{n}") for n in range(5, 15)])
    assert len(parsed) == 1
    assert len(result["results"]) == 10
    assert json.loads(result["entityState"])  # written back whole
