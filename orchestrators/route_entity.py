"""The route entity: one durable entity per route (``@route@<name>``) holding its shared model.

Durable Entities process one operation at a time per entity, persist the state after each batch
and survive restarts, replays and scale-out (learn.microsoft.com/azure/azure-functions/durable/
durable-functions-entities), which is what a governor shared by every job on every worker needs.
The rules are pure (rules.route_model); this function only reads the state, the settings and the
wall clock (entity operations are not replayed, so the clock may be read here), applies one
operation and writes the state back.

Operations: ``admit`` (called: answers an Admission), ``summary`` (called: a RouteSummary for
a failover decision), ``report``, ``leave`` and ``cancel_batch`` (signalled).
"""

from __future__ import annotations

import time

import azure.durable_functions as df

import wiring
from rules import route_model
from rules.route_model import RouteState
from rules.route_records import AdmitRequest, AttemptReport

bp = df.Blueprint()

ROUTE_ENTITY = "route"
ADMIT = "admit"
REPORT = "report"
LEAVE = "leave"
SUMMARY = "summary"
CANCEL_BATCH = "cancel_batch"


def route_entity_id(route: str) -> df.EntityId:
    return df.EntityId(ROUTE_ENTITY, route)


# Per route, the JSON state this worker last wrote and the RouteState it was written from. The
# SDK persists the state once per batch and, between the operations of a batch, hands back the
# very object the previous operation set: that object is not parsed again. A batch that starts
# from the stored JSON brings a new object, which is parsed. With a hundred jobs queued, parsing
# the state was half of an operation's CPU, and one route's operations run one at a time.
_written: dict[str, tuple[object, RouteState]] = {}


def _state(context: df.DurableEntityContext) -> RouteState:
    raw = context.get_state(lambda: None)
    last = _written.get(context.entity_key)
    if last is not None and last[0] is raw:
        return last[1]
    return RouteState.from_json(raw)


@bp.entity_trigger(context_name="context", entity_name=ROUTE_ENTITY)
def route(context: df.DurableEntityContext) -> None:
    settings = wiring.settings()
    name = context.entity_key
    pace = settings.pace(name)
    state = _state(context)
    operation = context.operation_name
    now = time.time()
    if operation == ADMIT:
        state, admission = route_model.on_admit(
            state, pace, AdmitRequest.from_json(context.get_input()), now
        )
        context.set_result(admission.to_json())
    elif operation == REPORT:
        state = route_model.on_report(
            state, pace, AttemptReport.from_json(context.get_input()), now
        )
    elif operation == SUMMARY:
        context.set_result(route_model.summary(state, now).to_json())
    elif operation == CANCEL_BATCH:
        state = route_model.on_cancel_batch(state, str(context.get_input()), now)
    elif operation == LEAVE:
        state = route_model.on_leave(state, str(context.get_input()))
    else:
        raise ValueError(f"route entity: unknown operation {operation!r}")
    written = state.to_json()
    context.set_state(written)
    _written[name] = (written, state)
