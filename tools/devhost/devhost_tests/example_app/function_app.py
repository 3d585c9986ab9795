"""A small DFApp for devhost's tests: one function per Durable feature devhost must host.

Not the product app. Every HTTP starter uses the SDK's own DurableOrchestrationClient, so the
tests drive the same client code that runs in Azure against devhost's management API.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

# Calls per key of the activities that count (read through GET /api/calls/{key}).
CALLS: Counter[str] = Counter()
_CALLS_LOCK = threading.Lock()


def _count(key: str) -> int:
    with _CALLS_LOCK:
        CALLS[key] += 1
        return CALLS[key]


def _json(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


# --- HTTP starters and management, through the SDK's client --------------------------------


@app.route(route="orchestrators/{name}/{instance_id?}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = req.get_body()
    payload = json.loads(body) if body else None
    instance_id = await client.start_new(
        req.route_params["name"], req.route_params.get("instance_id"), payload
    )
    response: func.HttpResponse = client.create_check_status_response(req, instance_id)
    return response


@app.route(route="status/{instance_id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    history = req.params.get("history") == "1"
    st = await client.get_status(
        req.route_params["instance_id"], show_history=history, show_history_output=history
    )
    if not st:
        return _json({"found": False}, 404)
    body = st.to_json()
    body["found"] = True
    if history:
        body["historyEvents"] = st.historyEvents
    return _json(body)


@app.route(route="events/{instance_id}/{event}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def raise_event(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    body = req.get_body()
    await client.raise_event(
        req.route_params["instance_id"], req.route_params["event"], json.loads(body or b"null")
    )
    return func.HttpResponse(status_code=202)


@app.route(route="terminate/{instance_id}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def terminate(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    await client.terminate(req.route_params["instance_id"], req.params.get("reason", "test"))
    return func.HttpResponse(status_code=202)


@app.route(route="suspend/{instance_id}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def suspend(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    await client.suspend(req.route_params["instance_id"], "test")
    return func.HttpResponse(status_code=202)


@app.route(route="resume/{instance_id}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def resume(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    await client.resume(req.route_params["instance_id"], "test")
    return func.HttpResponse(status_code=202)


@app.route(route="purge/{instance_id}", methods=["DELETE"])
@app.durable_client_input(client_name="client")
async def purge(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    result = await client.purge_instance_history(req.route_params["instance_id"])
    return _json({"instancesDeleted": result.instances_deleted})


# --- plain HTTP functions (routing, auth, errors) ------------------------------------------


@app.route(route="hello/{name:alpha}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def hello(req: func.HttpRequest) -> func.HttpResponse:
    greeting = os.environ.get("EXAMPLE_GREETING", "?")
    return func.HttpResponse(f"{greeting} {req.route_params['name']}")


@app.route(route="items/{id:int?}", auth_level=func.AuthLevel.ANONYMOUS)
def items(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"method": req.method, "route": dict(req.route_params), "query": dict(req.params)})


@app.route(route="files/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def files(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"path": req.route_params.get("path")})


@app.route(route="echo", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.get_body(), mimetype="application/octet-stream")


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret detail that must not reach the caller")


@app.route(route="admin-only", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin ok")


@app.route(route="calls/{key}", auth_level=func.AuthLevel.ANONYMOUS)
def calls(req: func.HttpRequest) -> func.HttpResponse:
    with _CALLS_LOCK:
        return _json({"calls": CALLS[req.route_params["key"]]})


@app.route(route="entities/{name}/{key}/{op}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def signal_entity(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    body = req.get_body()
    entity = df.EntityId(req.route_params["name"], req.route_params["key"])
    await client.signal_entity(entity, req.route_params["op"], json.loads(body) if body else None)
    return func.HttpResponse(status_code=202)


@app.route(route="entities/{name}/{key}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def read_entity(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    entity = df.EntityId(req.route_params["name"], req.route_params["key"])
    found = await client.read_entity_state(entity)
    return _json({"exists": found.entity_exists, "state": found.entity_state})


# --- timers -----------------------------------------------------------------------------------


@app.timer_trigger(schedule="%EXAMPLE_TICK_SCHEDULE%", arg_name="timer", run_on_startup=True)
def tick(timer: func.TimerRequest) -> None:
    _count("tick-past-due" if timer.past_due else "tick")


# --- orchestrators ----------------------------------------------------------------------------


@app.orchestration_trigger(context_name="context")
def chain(context: df.DurableOrchestrationContext):
    cities = context.get_input() or ["Tokyo", "Seattle", "London"]
    results = []
    for city in cities:
        results.append((yield context.call_activity("say_hello", city)))
    return results


@app.orchestration_trigger(context_name="context")
def retry_exhaustion(context: df.DurableOrchestrationContext):
    key = context.get_input()
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=3)
    yield context.call_activity_with_retry("always_fails", options, key)
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def durable_timer(context: df.DurableOrchestrationContext):
    started = context.current_utc_datetime
    yield context.create_timer(started + timedelta(hours=1))
    return (context.current_utc_datetime - started).total_seconds()


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    deadline = context.current_utc_datetime + timedelta(days=1)
    timeout = context.create_timer(deadline)
    answer = context.wait_for_external_event("Approval")
    context.set_custom_status("waiting for approval")
    winner = yield context.task_any([answer, timeout])
    if winner == answer:
        timeout.cancel()
        context.set_custom_status("approved")
        return {"approved": answer.result}
    context.set_custom_status("timed out")
    return {"approved": None}


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    count = context.get_input()
    squares = yield context.task_all([context.call_activity("square", i) for i in range(count)])
    return sum(squares)


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    child = yield context.call_sub_orchestrator("chain", ["Paris", "Rome"])
    return {"child": child}


@app.orchestration_trigger(context_name="context")
def parent_with_retry(context: df.DurableOrchestrationContext):
    spec = context.get_input()
    options = df.RetryOptions(
        first_retry_interval_in_milliseconds=1000, max_number_of_attempts=spec["attempts"]
    )
    child = yield context.call_sub_orchestrator_with_retry("flaky_child", options, spec)
    return {"child": child}


@app.orchestration_trigger(context_name="context")
def flaky_child(context: df.DurableOrchestrationContext):
    # Fails until its `succeed_on`-th run; the count comes from an activity, so replays agree.
    spec = context.get_input()
    attempt = yield context.call_activity("count_call", spec["key"])
    if attempt < spec["succeed_on"]:
        raise ValueError(f"child attempt {attempt} failed")
    return f"child ok on attempt {attempt}"


@app.orchestration_trigger(context_name="context")
def echo_input(context: df.DurableOrchestrationContext):
    # What the orchestrator's context received, to compare with the status API's `input`.
    value = context.get_input()
    yield context.call_activity("say_hello", "echo")
    return {"input": value, "type": type(value).__name__}


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    n = context.get_input()
    if n < 3:
        context.continue_as_new(n + 1)
        return None
    return n


@app.orchestration_trigger(context_name="context")
def custom_status(context: df.DurableOrchestrationContext):
    context.set_custom_status({"stage": "one"})
    first = yield context.call_activity("say_hello", "stage one")
    context.set_custom_status({"stage": "two", "first": first})
    return "done"


@app.orchestration_trigger(context_name="context")
def fails(context: df.DurableOrchestrationContext):
    yield context.call_activity("say_hello", "before the failure")
    raise ValueError("the orchestrator gave up")


@app.orchestration_trigger(context_name="context")
def steps(context: df.DurableOrchestrationContext):
    # For the kill -9 test: step one completes, step two blocks until the gate file exists.
    spec = context.get_input()
    one = yield context.call_activity("record_step", {**spec, "step": "one"})
    two = yield context.call_activity("record_step", {**spec, "step": "two"})
    return [one, two]


@app.orchestration_trigger(context_name="context")
def entity_calls(context: df.DurableOrchestrationContext):
    # A signal, then calls to the same counter (answered in order), then a failing operation.
    counter = df.EntityId("Counter", context.get_input())
    context.signal_entity(counter, "add", 1)
    after_add = yield context.call_entity(counter, "add", 2)
    value = yield context.call_entity(counter, "get")
    try:
        yield context.call_entity(counter, "fail")
        error = None
    except Exception as exc:
        error = str(exc)
    both = yield context.task_all(
        [context.call_entity(counter, "add", 10), context.call_entity(counter, "add", 100)]
    )
    return {"after_add": after_add, "value": value, "error": error, "both": both}


@app.orchestration_trigger(context_name="context")
def detach(context: df.DurableOrchestrationContext):
    # Starts `chain` as an instance of its own through an activity's client, and ends without
    # waiting for it (the fire-and-forget start the Python SDK has no action for).
    started = yield context.call_activity("start_detached", context.get_input())
    return started


@app.orchestration_trigger(context_name="context")
def calls_no_entity(context: df.DurableOrchestrationContext):
    value = yield context.call_entity(df.EntityId("NoSuchEntity", "k"), "get")
    return value


# --- entities ---------------------------------------------------------------------------------


@app.entity_trigger(context_name="context", entity_name="Counter")
def counter_entity(context: df.DurableEntityContext) -> None:
    value = context.get_state(lambda: 0)
    operation = context.operation_name
    if operation == "add":
        value += context.get_input()
    elif operation == "add_gated":
        # For the kill -9 test: log the start, block until the gate file exists, then add.
        spec = context.get_input()
        with open(spec["log"], "a", encoding="utf-8") as f:
            f.write("start add_gated\n")
        if not os.path.exists(spec["gate"]):
            threading.Event().wait()  # until the process is killed
        value += spec["amount"]
    elif operation == "reset":
        value = 0
    elif operation == "fail":
        raise ValueError("the counter refuses")
    elif operation != "get":
        raise ValueError(f"unknown operation {operation}")
    context.set_state(value)
    context.set_result(value)


# --- activities -------------------------------------------------------------------------------


@app.activity_trigger(input_name="name")
def say_hello(name: str) -> str:
    return f"Hello {name}!"


@app.activity_trigger(input_name="key")
def always_fails(key: str) -> str:
    attempt = _count(key)
    raise ValueError(f"attempt {attempt} failed")


@app.activity_trigger(input_name="spec")
@app.durable_client_input(client_name="client")
async def start_detached(spec: dict[str, Any], client: df.DurableOrchestrationClient) -> str:
    return str(await client.start_new("chain", spec["instance"], spec["cities"]))


@app.activity_trigger(input_name="key")
def count_call(key: str) -> int:
    return _count(key)


@app.activity_trigger(input_name="n")
async def square(n: int) -> int:
    return n * n


@app.activity_trigger(input_name="spec")
def record_step(spec: dict[str, str]) -> str:
    with open(spec["log"], "a", encoding="utf-8") as f:
        f.write(f"start {spec['step']}\n")
    if spec["step"] == "two" and not os.path.exists(spec["gate"]):
        # Blocks until the process is killed; the restarted host finds the gate and goes on.
        threading.Event().wait()
    with open(spec["log"], "a", encoding="utf-8") as f:
        f.write(f"end {spec['step']}\n")
    return f"{spec['step']} done"
