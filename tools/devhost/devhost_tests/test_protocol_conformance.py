"""Pin every fact of durable-host-protocol.md against the installed azure-functions-durable.

Each orchestrator test feeds a HAND-BUILT history (plain dicts, not devhost's builders) to the
handle that `df.Orchestrator.create(fn)` returns, exactly as the Functions host does, and checks
what comes back. The client tests point `DurableOrchestrationClient` at a fake RPC base that
records what the SDK sends and answers what the test says. If an SDK upgrade changes one of these
facts, the matching test fails by name.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import azure.durable_functions as df
import pytest
from aiohttp import web
from azure.durable_functions.models.utils import http_utils

from devhost.management_api import client_binding, parse_bool
from loopserver import BackgroundServer

T = TypeVar("T")
T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def ts(seconds: float = 0) -> str:
    """The host's timestamp form, seven fraction digits."""
    when = T0 + timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def ev(event_type: int, seconds: float = 0, event_id: int = -1, **fields: Any) -> dict[str, Any]:
    return {
        "EventType": event_type,
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": ts(seconds),
        **fields,
    }


def started(input_json: str | None = None, name: str = "orch") -> list[dict[str, Any]]:
    return [ev(12), ev(0, Name=name, Version="", Input=input_json)]


def context(history: list[dict[str, Any]], input_json: str | None = None, **extra: Any) -> str:
    body = {
        "history": history,
        "input": input_json,
        "instanceId": "inst-1",
        "isReplaying": False,
        "parentInstanceId": None,
        "upperSchemaVersion": 1,
        "upperSchemaVersionNew": 2,
        **extra,
    }
    return json.dumps(body)


def call(
    fn: Any, history: list[dict[str, Any]], input_json: str | None = None, **extra: Any
) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(
        df.Orchestrator.create(fn)(context(history, input_json, **extra))
    )
    return state


def one_activity(ctx: Any) -> Any:
    result = yield ctx.call_activity("hello", ctx.get_input())
    return result


def test_state_keys_and_schema_v2_for_a_first_episode() -> None:
    state = call(one_activity, started('{"a": 1}'), '{"a": 1}')
    assert set(state) == {"isDone", "actions", "schemaVersion"}
    assert state["isDone"] is False
    # upperSchemaVersionNew=2 selects ReplaySchema.V3 (value 2): V2's growing actions list, plus
    # long-timer splitting only if the context names the timer durations (devhost does not).
    assert state["schemaVersion"] == 2
    assert state["actions"] == [[{"actionType": 0, "functionName": "hello", "input": '{"a": 1}'}]]


def test_upper_schema_version_alone_gives_v1_shape() -> None:
    state = json.loads(
        df.Orchestrator.create(one_activity)(
            json.dumps(
                {
                    "history": started(),
                    "input": None,
                    "instanceId": "i",
                    "isReplaying": False,
                    "parentInstanceId": None,
                    "upperSchemaVersion": 0,
                }
            )
        )
    )
    assert "schemaVersion" not in state
    assert state["actions"] == [[{"actionType": 0, "functionName": "hello", "input": "null"}]]


def test_completed_state_carries_output_and_the_whole_growing_actions_list() -> None:
    history = [
        *started('"x"'),
        ev(4, event_id=0, Name="hello", Input='"x"'),
        ev(13),
        ev(12, 1),
        ev(5, 1, TaskScheduledId=0, Result='"hi x"'),
    ]
    state = call(one_activity, history, '"x"')
    assert state["isDone"] is True
    assert state["output"] == "hi x"
    assert state["actions"] == [[{"actionType": 0, "functionName": "hello", "input": '"x"'}]]


def two_activities(ctx: Any) -> Any:
    a = yield ctx.call_activity("first", 1)
    b = yield ctx.call_activity("second", 2)
    return [a, b]


def test_v2_actions_grow_with_every_replay_and_only_the_tail_is_new() -> None:
    first = call(two_activities, started())["actions"][0]
    history = [*started(), ev(13), ev(12, 1), ev(5, 1, TaskScheduledId=0, Result="10")]
    second = call(two_activities, history)["actions"][0]
    assert len(first) == 1
    assert len(second) == 2
    assert second[0] == first[0]
    assert second[1]["functionName"] == "second"


def activity_timer_activity(ctx: Any) -> Any:
    a = yield ctx.call_activity("one", None)
    yield ctx.create_timer(ctx.current_utc_datetime + timedelta(minutes=5))
    b = yield ctx.call_activity("two", None)
    return [a, b]


def test_ids_are_shared_by_tasks_and_timers_in_scheduling_order() -> None:
    history = [
        *started(),
        ev(12, 1),
        ev(5, 1, TaskScheduledId=0, Result='"a"'),
        ev(12, 2),
        ev(11, 2, TimerId=1, FireAt=ts(301)),
        ev(12, 3),
        ev(5, 3, TaskScheduledId=2, Result='"b"'),
    ]
    state = call(activity_timer_activity, history)
    assert state["isDone"] is True
    assert state["output"] == ["a", "b"]


def test_completion_events_match_by_id_only() -> None:
    # A TimerFired with the id of the activity (0) does not resolve the timer (id 1).
    history = [
        *started(),
        ev(12, 1),
        ev(5, 1, TaskScheduledId=0, Result='"a"'),
        ev(12, 2),
        ev(11, 2, TimerId=0, FireAt=ts(301)),
    ]
    state = call(activity_timer_activity, history)
    assert state["isDone"] is False
    assert [a["actionType"] for a in state["actions"][0]] == [0, 5]


def test_timer_fire_at_format_and_is_canceled_flag() -> None:
    state = call(
        activity_timer_activity, [*started(), ev(12, 1), ev(5, 1, TaskScheduledId=0, Result="1")]
    )
    timer = state["actions"][0][1]
    assert timer == {"actionType": 5, "fireAt": "2024-05-01T10:05:01.000000Z", "isCanceled": False}
    assert datetime.strptime(timer["fireAt"], "%Y-%m-%dT%H:%M:%S.%fZ")


def test_orchestrator_started_timestamp_is_current_utc_datetime() -> None:
    seen: list[datetime] = []

    def clocked(ctx: Any) -> Any:
        seen.append(ctx.current_utc_datetime)
        yield ctx.call_activity("x", None)
        seen.append(ctx.current_utc_datetime)
        return None

    history = [
        ev(12, 0),
        ev(0, Name="orch", Version="", Input=None),
        ev(13),
        ev(12, 42),
        ev(5, 42, TaskScheduledId=0, Result="null"),
    ]
    call(clocked, history)
    assert seen == [T0, T0 + timedelta(seconds=42)]


def catches(ctx: Any) -> Any:
    try:
        yield ctx.call_activity("bad", None)
    except Exception as exc:
        return str(exc)
    return None


def test_task_failed_reaches_the_orchestrator_as_reason_newline_details() -> None:
    history = [*started(), ev(12, 1), ev(6, 1, TaskScheduledId=0, Reason="boom", Details="trace")]
    assert call(catches, history)["output"] == "boom \n trace"


def with_retry(ctx: Any) -> Any:
    try:
        result = yield ctx.call_activity_with_retry("flaky", df.RetryOptions(1000, 2), "in")
    except Exception as exc:
        return f"failed: {exc}"
    return result


def test_with_retry_arrives_wrapped_in_when_all_with_retry_options() -> None:
    state = call(with_retry, started())
    assert state["actions"] == [
        [
            {
                "actionType": 12,
                "compoundActions": [
                    {
                        "actionType": 1,
                        "functionName": "flaky",
                        "input": '"in"',
                        "retryOptions": {
                            "firstRetryIntervalInMilliseconds": 1000,
                            "maxNumberOfAttempts": 2,
                        },
                    }
                ],
            }
        ]
    ]


def test_retries_are_the_hosts_job_task_timer_task_timer_then_failure() -> None:
    base = [*started(), ev(12, 1), ev(6, 1, TaskScheduledId=0, Reason="r1", Details="d1")]
    # After a failure the SDK waits for the retry timer (id 1) and adds no action of its own.
    state = call(with_retry, base)
    assert state["isDone"] is False
    assert len(state["actions"][0]) == 1
    # Timer 1 fired: the SDK expects the task again under id 2.
    retried = [*base, ev(12, 2), ev(11, 2, TimerId=1, FireAt=ts(2))]
    assert (
        call(with_retry, [*retried, ev(12, 3), ev(5, 3, TaskScheduledId=2, Result='"ok"')])[
            "output"
        ]
        == "ok"
    )
    # Second failure: one more timer (id 3) after the last attempt, then the failure surfaces.
    failed = [*retried, ev(12, 3), ev(6, 3, TaskScheduledId=2, Reason="r2", Details="d2")]
    assert call(with_retry, failed)["isDone"] is False
    done = call(with_retry, [*failed, ev(12, 4), ev(11, 4, TimerId=3, FireAt=ts(4))])
    assert done["output"] == "failed: r2 \n d2"


def test_an_orchestrator_exception_raises_with_out_of_proc_data() -> None:
    def raises(ctx: Any) -> Any:
        ctx.set_custom_status("about to fail")
        yield ctx.call_activity("x", None)
        raise ValueError("kaput")

    handle = df.Orchestrator.create(raises)
    history = [*started(), ev(12, 1), ev(5, 1, TaskScheduledId=0, Result="null")]
    with pytest.raises(Exception, match=r"\$OutOfProcData\$") as caught:
        handle(context(history))
    text = str(caught.value)
    message, marker, state_json = text.partition("\n\n$OutOfProcData$:")
    assert marker
    assert message == "kaput"
    state = json.loads(state_json)
    assert state["isDone"] is False
    assert state["error"] == "kaput"
    assert state["customStatus"] == "about to fail"


def test_custom_status_is_in_the_state_and_absent_when_unset() -> None:
    def sets(ctx: Any) -> Any:
        ctx.set_custom_status({"step": 1})
        yield ctx.call_activity("x", None)

    assert call(sets, started())["customStatus"] == {"step": 1}
    assert "customStatus" not in call(one_activity, started())
    assert "output" not in call(one_activity, started())


def test_external_events_match_by_name_and_carry_json_input() -> None:
    def waits(ctx: Any) -> Any:
        value = yield ctx.wait_for_external_event("approve")
        return value

    first = call(waits, started())
    assert first["actions"] == [
        [{"actionType": 6, "externalEventName": "approve", "reason": "ExternalEvent"}]
    ]
    history = [
        *started(),
        ev(12, 1),
        ev(15, 1, Name="other", Input='"no"'),
        ev(15, 1, Name="approve", Input='{"ok": true}'),
    ]
    assert call(waits, history)["output"] == {"ok": True}


def test_when_any_and_sub_orchestrator_and_continue_as_new_action_shapes() -> None:
    def shapes(ctx: Any) -> Any:
        yield ctx.task_any([ctx.call_activity("a", 1), ctx.create_timer(ctx.current_utc_datetime)])
        yield ctx.call_sub_orchestrator("child", {"k": 1}, "child-1")
        ctx.continue_as_new(5)
        return None

    state = call(shapes, started())
    assert state["actions"][0][0]["actionType"] == 11
    assert [a["actionType"] for a in state["actions"][0][0]["compoundActions"]] == [0, 5]
    history = [*started(), ev(12, 1), ev(5, 1, TaskScheduledId=0, Result="1")]
    state = call(shapes, history)
    assert state["actions"][0][1] == {
        "actionType": 2,
        "functionName": "child",
        "input": '{"k": 1}',
        "instanceId": "child-1",
        "version": None,
    }
    history += [ev(12, 2), ev(8, 2, TaskScheduledId=2, Result='"c"')]
    state = call(shapes, history)
    assert state["isDone"] is True
    assert state["actions"][0][2] == {"actionType": 4, "input": "5"}


def test_sub_orchestration_failed_reaches_the_parent_like_task_failed() -> None:
    def parent(ctx: Any) -> Any:
        try:
            yield ctx.call_sub_orchestrator("child", None)
        except Exception as exc:
            return str(exc)
        return None

    history = [
        *started(),
        ev(12, 1),
        ev(9, 1, TaskScheduledId=0, Reason="child broke", Details=None),
    ]
    assert call(parent, history)["output"] == "child broke \n None"


def test_action_type_numbers_of_unsupported_actions() -> None:
    def http(ctx: Any) -> Any:
        yield ctx.call_http("GET", "http://127.0.0.1:1/")

    def entity(ctx: Any) -> Any:
        yield ctx.call_entity(df.EntityId("counter", "k"), "add", 1)

    def signal(ctx: Any) -> Any:
        ctx.signal_entity(df.EntityId("counter", "k"), "add", 1)
        yield ctx.call_activity("x", None)

    assert call(http, started())["actions"][0][0]["actionType"] == 8
    assert call(entity, started())["actions"][0][0]["actionType"] == 7
    assert call(signal, started())["actions"][0][0]["actionType"] == 9


def test_a_cancelled_timer_flips_is_canceled_on_the_same_action() -> None:
    def timeout(ctx: Any) -> Any:
        timer = ctx.create_timer(ctx.current_utc_datetime + timedelta(hours=1))
        event = ctx.wait_for_external_event("go")
        winner = yield ctx.task_any([event, timer])
        if winner == event:
            timer.cancel()
        yield ctx.call_activity("after", None)

    history = [*started(), ev(12, 1), ev(15, 1, Name="go", Input="1")]
    actions = call(timeout, history)["actions"][0]
    assert actions[0]["compoundActions"][1]["isCanceled"] is True
    assert actions[1]["functionName"] == "after"


def test_a_history_shorter_than_two_events_is_rejected() -> None:
    with pytest.raises(Exception, match="minimum size of 2"):
        df.Orchestrator.create(one_activity)(context([ev(12)]))


def test_execution_started_needs_a_version_field_even_if_empty() -> None:
    without_version = [ev(12), ev(0, Name="orch", Input=None)]
    with pytest.raises(AttributeError, match="Version"):
        df.Orchestrator.create(one_activity)(context(without_version))
    assert (
        call(one_activity, [ev(12), ev(0, Name="orch", Version="", Input=None)])["isDone"] is False
    )


def test_is_replaying_follows_is_played_of_past_events() -> None:
    seen: list[bool] = []

    def watches(ctx: Any) -> Any:
        seen.append(ctx.is_replaying)
        yield ctx.call_activity("x", None)
        seen.append(ctx.is_replaying)
        return None

    played = [{**e, "IsPlayed": True} for e in [*started(), ev(13)]]
    call(watches, [*played, ev(12, 1), ev(5, 1, TaskScheduledId=0, Result="null")])
    assert seen == [True, False]


# --- finding the functions of an app ------------------------------------------------------------


def test_get_functions_may_be_called_once_per_app_object() -> None:
    app = df.DFApp()

    @app.orchestration_trigger(context_name="context")
    def orch(context: Any) -> Any:
        yield context.call_activity("act", None)

    @app.activity_trigger(input_name="value")
    def act(value: Any) -> Any:
        return value

    names = sorted(f.get_function_name() for f in app.get_functions())
    assert names == ["act", "orch"]
    with pytest.raises(ValueError, match="does not have a unique function name"):
        app.get_functions()


# --- the durable client over HTTP ---------------------------------------------------------------


class FakeRpc:
    """A stand-in for the extension's RPC base: records each request, answers as told."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[bytes] = []
        self.status = 200
        self.body: Any = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs))
        self.bodies.append(await request.read())
        if self.body is None:
            return web.Response(status=self.status)
        return web.json_response(self.body, status=self.status)


@pytest.fixture
def fake_rpc() -> Iterator[tuple[FakeRpc, str]]:
    fake = FakeRpc()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    with BackgroundServer(app) as server:
        yield fake, f"{server.url}/durabletask/"


def client_for(rpc_base_url: str) -> df.DurableOrchestrationClient:
    binding = client_binding(
        origin="http://127.0.0.1:7071", rpc_base_url=rpc_base_url, task_hub="Hub", system_key="k"
    )
    return df.DurableOrchestrationClient(json.dumps(binding))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """One event loop per call, closing the SDK's shared session before the loop ends."""

    async def then_close() -> T:
        try:
            return await coro
        finally:
            await http_utils._close_session()

    return asyncio.run(then_close())


def test_the_clients_shared_session_must_be_closed_before_another_event_loop_uses_it(
    fake_rpc: tuple[FakeRpc, str],
) -> None:
    fake, base = fake_rpc
    fake.body = {"ok": True}
    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(http_utils.get_async_request(base)) == [200, {"ok": True}]
        # The session is bound to the first loop: a second loop cannot use it.
        with pytest.raises(RuntimeError):
            asyncio.run(http_utils.get_async_request(base))
        first.run_until_complete(http_utils._close_session())
    finally:
        first.close()
    assert http_utils._client_session is None
    # Closed on its own loop, the next loop gets a new session and works.
    assert run(http_utils.get_async_request(base)) == [200, {"ok": True}]
    assert run(http_utils.get_async_request(base)) == [200, {"ok": True}]


def test_start_new_raises_the_exception_message_on_400_and_the_whole_body_otherwise(
    fake_rpc: tuple[FakeRpc, str],
) -> None:
    fake, base = fake_rpc
    client = client_for(base)
    fake.status, fake.body = 202, {"id": "new-id"}
    assert run(client.start_new("orch", None, {"a": 1})) == "new-id"
    fake.status = 400
    fake.body = {"Message": "One or more ...", "ExceptionMessage": "no orchestrator 'nope'"}
    with pytest.raises(Exception, match="no orchestrator") as bad_request:
        run(client.start_new("nope"))
    assert type(bad_request.value) is Exception
    assert bad_request.value.args == ("no orchestrator 'nope'",)
    fake.status = 500
    fake.body = {"Message": "Something went wrong", "ExceptionMessage": "already exists"}
    with pytest.raises(Exception, match="already exists") as server_error:
        run(client.start_new("orch", "dup"))
    assert type(server_error.value) is Exception
    assert server_error.value.args == (fake.body,)
    assert [r for r in fake.requests if r[0] == "POST"] == [
        ("POST", "/durabletask/orchestrators/orch"),
        ("POST", "/durabletask/orchestrators/nope"),
        ("POST", "/durabletask/orchestrators/orch/dup"),
    ]


def test_a_404_status_is_falsy_and_a_found_one_truthy(fake_rpc: tuple[FakeRpc, str]) -> None:
    fake, base = fake_rpc
    client = client_for(base)
    fake.status, fake.body = 404, None
    assert not run(client.get_status("missing"))
    fake.status = 200
    fake.body = {
        "name": "orch",
        "instanceId": "i",
        "runtimeStatus": "Completed",
        "createdTime": "2024-05-01T10:00:00Z",
        "lastUpdatedTime": "2024-05-01T10:00:00Z",
        "input": None,
        "output": 1,
        "customStatus": None,
    }
    found = run(client.get_status("i"))
    assert found
    assert found.output == 1


def test_the_clients_query_form_python_true_and_connection_name(
    fake_rpc: tuple[FakeRpc, str],
) -> None:
    fake, base = fake_rpc
    client = client_for(base)
    fake.status, fake.body = 404, None
    run(client.get_status("i"))
    run(client.get_status("i", show_history=True, show_history_output=False, show_input=True))
    run(client.read_entity_state(df.EntityId("counter", "k"), "Hub", "Storage"))
    assert fake.requests == [
        # False options are left out, so showInput is absent and the extension's default applies.
        ("GET", "/durabletask/instances/i"),
        # True is Python's str(True); the extension's bool.TryParse reads it, and so does devhost.
        ("GET", "/durabletask/instances/i?showInput=True&showHistory=True"),
        ("GET", "/durabletask/entities/counter/k?taskHub=Hub&connectionName=Storage"),
    ]
    assert parse_bool("True") is True


# --- entities: the batch protocol, the call/signal history, the client's entity routes -------


def counter_entity(ctx: Any) -> None:
    value = ctx.get_state(lambda: 0)
    if ctx.operation_name == "add":
        value += ctx.get_input()
    elif ctx.operation_name == "boom":
        raise ValueError("no such luck")
    ctx.set_state(value)
    ctx.set_result(value)


def entity_batch(state: str | None, *ops: tuple[str, str | None], **extra: Any) -> dict[str, Any]:
    request = {
        "self": {"name": "counter", "key": "k"},
        "exists": state is not None,
        "state": state,
        "batch": [{"name": name, "input": input_} for name, input_ in ops],
        **extra,
    }
    result: dict[str, Any] = json.loads(df.Entity.create(counter_entity)(json.dumps(request)))
    return result


def test_entity_batch_result_form_state_and_per_operation_results() -> None:
    # An operation's input is its df_dumps text serialized once more (get_input decodes twice).
    result = entity_batch(None, ("add", json.dumps("5")), ("add", json.dumps("2")))
    assert set(result) == {"entityExists", "entityState", "results", "signals"}
    assert result["entityExists"] is True
    assert result["entityState"] == "7"
    assert [(r["isError"], r["result"]) for r in result["results"]] == [(False, "5"), (False, "7")]
    assert set(result["results"][0]) == {"isError", "duration", "startTime", "result"}
    assert result["signals"] == []


def test_entity_batch_state_is_the_stored_json_text_and_errors_are_per_operation() -> None:
    result = entity_batch("10", ("boom", None), ("add", json.dumps("1")))
    assert [(r["isError"], r["result"]) for r in result["results"]] == [
        (True, '"no such luck"'),
        (False, "11"),
    ]
    assert result["entityState"] == "11"


def test_entity_input_not_double_encoded_fails_the_operation() -> None:
    # A bare JSON number as `input` is decoded once to an int, which df_loads cannot read.
    result = entity_batch(None, ("add", "5"))
    assert result["results"][0]["isError"] is True
    assert result["entityExists"] is False
    assert result["entityState"] == "null"


def test_entity_batch_request_takes_no_other_top_level_key() -> None:
    with pytest.raises(TypeError):
        entity_batch(None, ("add", json.dumps("1")), extra_key=1)


def test_entity_actions_form_and_their_task_ids() -> None:
    def both(ctx: Any) -> Any:
        ctx.signal_entity(df.EntityId("Counter", "k"), "add", 1)
        yield ctx.call_entity(df.EntityId("Counter", "k"), "get")

    actions = call(both, started())["actions"][0]
    assert actions == [
        {"actionType": 9, "instanceId": "@counter@k", "operation": "add", "input": "1"},
        {"actionType": 7, "instanceId": "@counter@k", "operation": "get", "input": "null"},
    ]


def entity_sent(task_id: int, request_id: str, seconds: float = 0) -> dict[str, Any]:
    return ev(
        14,
        seconds,
        event_id=task_id,
        InstanceId="@counter@k",
        Name="op",
        Input=json.dumps({"op": "add", "signal": False, "input": '"1"', "id": request_id}),
    )


def entity_answer(request_id: str, response: dict[str, Any], seconds: float = 1) -> dict[str, Any]:
    return ev(15, seconds, Name=request_id, Input=json.dumps(response))


def test_an_entity_call_is_answered_by_event_sent_then_event_raised_named_by_its_id() -> None:
    def caller(ctx: Any) -> Any:
        value = yield ctx.call_entity(df.EntityId("counter", "k"), "add", 1)
        return value

    history = [
        *started(),
        entity_sent(0, "5b1c1e5e-0000-4000-8000-000000000001"),
        ev(12, 1),
        entity_answer("5b1c1e5e-0000-4000-8000-000000000001", {"result": '{"n": 6}'}),
    ]
    state = call(caller, history)
    assert state["isDone"] is True
    assert state["output"] == {"n": 6}


def test_an_entity_call_without_its_event_sent_stays_open() -> None:
    def caller(ctx: Any) -> Any:
        value = yield ctx.call_entity(df.EntityId("counter", "k"), "add", 1)
        return value

    history = [*started(), ev(12, 1), entity_answer("guid-1", {"result": "6"})]
    assert call(caller, history)["isDone"] is False


def test_an_entity_call_with_exception_type_throws_the_decoded_result() -> None:
    def caller(ctx: Any) -> Any:
        try:
            yield ctx.call_entity(df.EntityId("counter", "k"), "boom")
        except Exception as exc:
            return f"caught: {exc}"
        return "no exception"

    history = [
        *started(),
        entity_sent(0, "guid-2"),
        ev(12, 1),
        entity_answer("guid-2", {"result": '"no such luck"', "exceptionType": "Whatever"}),
    ]
    assert call(caller, history)["output"] == "caught: no such luck"


def test_a_signal_takes_a_task_id_and_its_event_sent_is_ignored() -> None:
    def signal_then_activity(ctx: Any) -> Any:
        ctx.signal_entity(df.EntityId("counter", "k"), "add", 1)
        result = yield ctx.call_activity("hello", None)
        return result

    history = [
        *started(),
        ev(14, event_id=0, InstanceId="@counter@k", Name="op", Input='{"id": "g", "signal": true}'),
        ev(4, event_id=1, Name="hello", Input="null"),
        ev(12, 1),
        ev(5, 1, TaskScheduledId=1, Result='"hi"'),
    ]
    state = call(signal_then_activity, history)
    assert state["output"] == "hi"


def test_the_clients_entity_routes_and_signal_body(fake_rpc: tuple[FakeRpc, str]) -> None:
    fake, base = fake_rpc
    client = client_for(base)
    fake.status, fake.body = 202, None
    run(client.signal_entity(df.EntityId("Counter", "k"), "add", 5))
    run(client.signal_entity(df.EntityId("Counter", "k"), "reset"))
    fake.status, fake.body = 200, 7
    found = run(client.read_entity_state(df.EntityId("Counter", "k")))
    fake.status, fake.body = 404, None
    missing = run(client.read_entity_state(df.EntityId("Counter", "k")))
    assert fake.requests == [
        ("POST", "/durabletask/entities/Counter/k?op=add"),
        ("POST", "/durabletask/entities/Counter/k?op=reset"),
        ("GET", "/durabletask/entities/Counter/k"),
        ("GET", "/durabletask/entities/Counter/k"),
    ]
    # The input is posted as JSON of json.dumps(value): a JSON string; no input, no body.
    assert fake.bodies[:2] == [b'"5"', b""]
    assert (found.entity_exists, found.entity_state) == (True, 7)
    assert (missing.entity_exists, missing.entity_state) == (False, None)


def test_a_signal_that_is_not_accepted_raises() -> None:
    fake = FakeRpc()
    fake.status = 200
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    with BackgroundServer(app) as server:
        client = client_for(f"{server.url}/durabletask/")
        with pytest.raises(Exception, match="unexpected status code 200"):
            run(client.signal_entity(df.EntityId("counter", "k"), "add", 1))
