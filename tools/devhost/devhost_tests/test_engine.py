"""devhost's Engine driven by small SDK orchestrators and fake activities (no HTTP)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest

from devhost.clock import SystemClock, VirtualClock
from devhost.engine import (
    Engine,
    InstanceAlreadyExists,
    InstanceNotActive,
    InstanceNotFound,
    UnknownOrchestrator,
)
from devhost.history import EventType, parse_time
from devhost.retries import retry_delay
from devhost.store import Store
from devhost_tests.engine_fixtures.harness import (
    eventually,
    finished,
    json_activity,
    make_engine,
    run,
)


async def hello(value: Any) -> str:
    return f"hi {value}"


def chain(ctx: Any) -> Any:
    first = yield ctx.call_activity("hello", "a")
    second = yield ctx.call_activity("hello", "b")
    return [first, second]


def fan_out(ctx: Any) -> Any:
    ctx.set_custom_status({"phase": "fan-out"})
    results = yield ctx.task_all([ctx.call_activity("hello", i) for i in range(5)])
    return results


def test_activity_chain_completes_with_outputs_in_order() -> None:
    engine = make_engine(orchestrators={"chain": chain}, activities={"hello": json_activity(hello)})

    async def scenario(engine: Engine) -> dict[str, Any]:
        instance_id = await engine.start_new("chain", "chain-1", None)
        return await finished(engine, instance_id)

    status = run(engine, scenario)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == ["hi a", "hi b"]
    assert status["instanceId"] == "chain-1"


def test_fan_out_fan_in_returns_every_result_and_custom_status() -> None:
    engine = make_engine(
        orchestrators={"fan_out": fan_out}, activities={"hello": json_activity(hello)}
    )

    async def scenario(engine: Engine) -> dict[str, Any]:
        instance_id = await engine.start_new("fan_out", None, None)
        return await finished(engine, instance_id)

    status = run(engine, scenario)
    assert status["output"] == [f"hi {i}" for i in range(5)]
    assert status["customStatus"] == {"phase": "fan-out"}


# --- helpers for the tests below ---------------------------------------------------------------


class Counter:
    """A counting fake activity: records every input; fails the first `fail_times` calls."""

    def __init__(self, fail_times: int = 0, message: str = "boom") -> None:
        self.calls: list[Any] = []
        self.fail_times = fail_times
        self.message = message

    async def __call__(self, value: Any) -> Any:
        self.calls.append(value)
        if len(self.calls) <= self.fail_times:
            raise RuntimeError(f"{self.message} {len(self.calls)}")
        return {"echo": value, "call": len(self.calls)}


def raw_history(engine: Engine, instance_id: str) -> list[dict[str, Any]]:
    return engine.store.load_history(instance_id)


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(event type name, id) for the events that carry an id, in order."""
    out = []
    for event in events:
        kind = EventType(event["EventType"])
        ident = event.get("TaskScheduledId", event.get("TimerId", event["EventId"]))
        if kind in (
            EventType.TaskScheduled,
            EventType.TaskCompleted,
            EventType.TaskFailed,
            EventType.TimerCreated,
            EventType.TimerFired,
            EventType.SubOrchestrationInstanceCreated,
            EventType.SubOrchestrationInstanceCompleted,
            EventType.SubOrchestrationInstanceFailed,
        ):
            out.append((kind.name, ident))
    return out


async def running_with(engine: Engine, instance_id: str, custom_status: Any) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        status = await engine.get_status(instance_id)
        if status and status["customStatus"] == custom_status:
            return status
        return None

    return await eventually(check, what=f"customStatus {custom_status!r}")


# --- retries ------------------------------------------------------------------------------------


def retry_caller(ctx: Any) -> Any:
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=3)
    try:
        result = yield ctx.call_activity_with_retry("flaky", options, "x")
    except Exception as exc:
        return {"failed": str(exc)}
    return {"result": result}


def test_retry_exhaustion_runs_every_attempt_with_a_timer_after_each_failure() -> None:
    flaky = Counter(fail_times=99)
    engine = make_engine(
        orchestrators={"retry_caller": retry_caller}, activities={"flaky": json_activity(flaky)}
    )

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("retry_caller", "r1", None))

    status = run(engine, scenario)
    assert flaky.calls == ["x", "x", "x"]
    assert status["runtimeStatus"] == "Completed"
    assert status["output"]["failed"].startswith("boom 3 \n ")
    assert kinds(raw_history(engine, "r1")) == [
        ("TaskScheduled", 0),
        ("TaskFailed", 0),
        ("TimerCreated", 1),
        ("TimerFired", 1),
        ("TaskScheduled", 2),
        ("TaskFailed", 2),
        ("TimerCreated", 3),
        ("TimerFired", 3),
        ("TaskScheduled", 4),
        ("TaskFailed", 4),
        ("TimerCreated", 5),
        ("TimerFired", 5),
    ]


def test_retry_timers_wait_the_first_interval_and_the_last_one_fires_at_once() -> None:
    engine = make_engine(
        orchestrators={"retry_caller": retry_caller},
        activities={"flaky": json_activity(Counter(fail_times=99))},
    )

    async def scenario(engine: Engine) -> None:
        await finished(engine, await engine.start_new("retry_caller", "r2", None))

    run(engine, scenario)
    events = raw_history(engine, "r2")
    created = [e for e in events if e["EventType"] == EventType.TimerCreated]
    waits = [
        (parse_time(e["FireAt"]) - parse_time(e["Timestamp"])).total_seconds() for e in created
    ]
    assert waits[:2] == [1.0, 1.0]
    assert waits[2] == 0.0


def test_retry_succeeds_on_a_later_attempt() -> None:
    flaky = Counter(fail_times=1)
    engine = make_engine(
        orchestrators={"retry_caller": retry_caller}, activities={"flaky": json_activity(flaky)}
    )

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("retry_caller", "r3", None))

    status = run(engine, scenario)
    assert status["output"] == {"result": {"echo": "x", "call": 2}}
    assert kinds(raw_history(engine, "r3"))[-2:] == [("TaskScheduled", 2), ("TaskCompleted", 2)]


def two_retries_then_activity(ctx: Any) -> Any:
    options = df.RetryOptions(1000, 2)
    results = yield ctx.task_all(
        [
            ctx.call_activity_with_retry("flaky", options, "a"),
            ctx.call_activity_with_retry("flaky", options, "b"),
        ]
    )
    last = yield ctx.call_activity("flaky", "c")
    return [results, last]


def test_parallel_retries_keep_the_sdk_and_the_host_counting_ids_alike() -> None:
    flaky = Counter(fail_times=2)  # both first attempts fail, both second attempts succeed
    engine = make_engine(
        orchestrators={"two": two_retries_then_activity},
        activities={"flaky": json_activity(flaky)},
    )

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("two", "r4", None))

    status = run(engine, scenario)
    assert status["runtimeStatus"] == "Completed", status
    assert sorted(flaky.calls) == ["a", "a", "b", "b", "c"]
    ids = [ident for name, ident in kinds(raw_history(engine, "r4")) if name == "TaskScheduled"]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    assert max(ids) == 6


def test_retry_delay_follows_dtfx_backoff_and_cap() -> None:
    options = {
        "firstRetryIntervalInMilliseconds": 1000,
        "backoffCoefficient": 2.0,
        "maxRetryIntervalInMilliseconds": 5000,
    }
    delays = [retry_delay(options, attempt=n).total_seconds() for n in range(5)]
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert retry_delay({"firstRetryIntervalInMilliseconds": 250}, attempt=3) == timedelta(
        milliseconds=250
    )


# --- timers and events --------------------------------------------------------------------------


def sleeper(ctx: Any) -> Any:
    start = ctx.current_utc_datetime
    yield ctx.create_timer(start + timedelta(hours=1))
    return (ctx.current_utc_datetime - start).total_seconds()


def test_virtual_clock_fires_a_one_hour_timer_at_once_and_time_jumps_ahead() -> None:
    engine = make_engine(orchestrators={"sleeper": sleeper}, clock=VirtualClock())

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("sleeper", None, None))

    status = run(engine, scenario)
    assert status["output"] >= 3600


def waiter(ctx: Any) -> Any:
    yield ctx.call_activity("hello", "before")
    ctx.set_custom_status("waiting")
    first = yield ctx.wait_for_external_event("go")
    second = yield ctx.wait_for_external_event("go")
    return [first, second]


def test_events_raised_before_the_wait_are_buffered_in_order() -> None:
    engine = make_engine(
        orchestrators={"waiter": waiter}, activities={"hello": json_activity(hello)}
    )

    async def scenario(engine: Engine) -> dict[str, Any]:
        instance_id = await engine.start_new("waiter", "w1", None)
        await engine.raise_event(instance_id, "go", '"one"')
        await engine.raise_event(instance_id, "go", '"two"')
        return await finished(engine, instance_id)

    assert run(engine, scenario)["output"] == ["one", "two"]


def test_events_raised_after_the_wait_is_open_complete_it() -> None:
    engine = make_engine(
        orchestrators={"waiter": waiter}, activities={"hello": json_activity(hello)}
    )

    async def scenario(engine: Engine) -> dict[str, Any]:
        instance_id = await engine.start_new("waiter", "w2", None)
        await running_with(engine, instance_id, "waiting")
        await engine.raise_event(instance_id, "other", '"ignored"')
        await engine.raise_event(instance_id, "go", '{"n": 1}')
        await engine.raise_event(instance_id, "go", "[2]")
        return await finished(engine, instance_id)

    assert run(engine, scenario)["output"] == [{"n": 1}, [2]]


def approval(ctx: Any) -> Any:
    timeout = ctx.create_timer(ctx.current_utc_datetime + timedelta(hours=1))
    approved = ctx.wait_for_external_event("approve")
    ctx.set_custom_status("waiting")
    winner = yield ctx.task_any([approved, timeout])
    if winner == approved:
        timeout.cancel()
        return {"approved": approved.result}
    return "timed out"


def test_when_any_with_a_timer_times_out_under_the_virtual_clock() -> None:
    engine = make_engine(orchestrators={"approval": approval}, clock=VirtualClock())

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("approval", None, None))

    assert run(engine, scenario)["output"] == "timed out"


def test_when_any_with_a_timer_takes_the_event_and_cancels_the_timer() -> None:
    engine = make_engine(orchestrators={"approval": approval}, clock=SystemClock())

    async def scenario(engine: Engine) -> dict[str, Any]:
        instance_id = await engine.start_new("approval", "a1", None)
        await running_with(engine, instance_id, "waiting")
        await engine.raise_event(instance_id, "approve", '"yes"')
        return await finished(engine, instance_id)

    status = run(engine, scenario)
    assert status["output"] == {"approved": "yes"}
    assert engine.store.work_items("a1") == []


# --- sub-orchestrations and continue-as-new -----------------------------------------------------


def child(ctx: Any) -> Any:
    value = ctx.get_input()
    if value == "fail":
        raise ValueError("child says no")
    doubled = yield ctx.call_activity("hello", value)
    return {"child": doubled, "parent": ctx.parent_instance_id}


def parent(ctx: Any) -> Any:
    ok = yield ctx.call_sub_orchestrator("child", "x")
    named = yield ctx.call_sub_orchestrator("child", "y", "named-child")
    try:
        yield ctx.call_sub_orchestrator("child", "fail")
    except Exception as exc:
        return [ok, named, str(exc)]
    return [ok, named, None]


def test_sub_orchestrations_return_outputs_and_failures_to_the_parent() -> None:
    engine = make_engine(
        orchestrators={"parent": parent, "child": child}, activities={"hello": json_activity(hello)}
    )

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("parent", "p1", None))

    status = run(engine, scenario)
    ok, named, failure = status["output"]
    assert ok == {"child": "hi x", "parent": "p1"}
    assert named == {"child": "hi y", "parent": "p1"}
    assert "child says no" in failure
    named_status = asyncio.run(engine.get_status("named-child"))
    assert named_status is not None
    assert named_status["runtimeStatus"] == "Completed"


def parent_with_retry(ctx: Any) -> Any:
    try:
        yield ctx.call_sub_orchestrator_with_retry("child", df.RetryOptions(500, 2), "fail")
    except Exception as exc:
        return str(exc)
    return None


def test_sub_orchestrator_with_retry_retries_then_surfaces_the_failure() -> None:
    engine = make_engine(orchestrators={"parent": parent_with_retry, "child": child})

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("parent", "p2", None))

    status = run(engine, scenario)
    assert "child says no" in status["output"]
    assert kinds(raw_history(engine, "p2")) == [
        ("SubOrchestrationInstanceCreated", 0),
        ("SubOrchestrationInstanceFailed", 0),
        ("TimerCreated", 1),
        ("TimerFired", 1),
        ("SubOrchestrationInstanceCreated", 2),
        ("SubOrchestrationInstanceFailed", 2),
        ("TimerCreated", 3),
        ("TimerFired", 3),
    ]


def counter(ctx: Any) -> Any:
    n = ctx.get_input() or 0
    yield ctx.call_activity("hello", n)
    if n < 3:
        ctx.continue_as_new(n + 1)
        return None
    return n


def test_continue_as_new_starts_fresh_executions_until_done() -> None:
    engine = make_engine(
        orchestrators={"counter": counter}, activities={"hello": json_activity(hello)}
    )

    async def scenario(engine: Engine) -> dict[str, Any]:
        # The start's status input is the first execution's; later ones show their own input.
        started = await engine.start_new("counter", "c1", "0", status_input='"0"')
        return await finished(engine, started)

    status = run(engine, scenario)
    assert status["output"] == 3
    assert status["input"] == 3
    # Only the last execution's history is kept, as DTFx does.
    assert kinds(raw_history(engine, "c1")) == [("TaskScheduled", 0), ("TaskCompleted", 0)]


# --- management ---------------------------------------------------------------------------------


def forever(ctx: Any) -> Any:
    ctx.set_custom_status("waiting")
    value = yield ctx.wait_for_external_event("go")
    return value


def test_terminate_ends_the_instance_and_later_operations_say_it_is_not_active() -> None:
    engine = make_engine(orchestrators={"forever": forever})

    async def scenario(engine: Engine) -> dict[str, Any]:
        instance_id = await engine.start_new("forever", "t1", None)
        await running_with(engine, instance_id, "waiting")
        await engine.terminate(instance_id, "enough")
        with pytest.raises(InstanceNotActive):
            await engine.raise_event(instance_id, "go", "1")
        with pytest.raises(InstanceNotActive):
            await engine.terminate(instance_id, "again")
        return await finished(engine, instance_id)

    status = run(engine, scenario)
    assert status["runtimeStatus"] == "Terminated"
    assert status["output"] == "enough"


def test_suspended_instances_buffer_events_until_resumed() -> None:
    engine = make_engine(orchestrators={"forever": forever})

    async def scenario(engine: Engine) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        instance_id = await engine.start_new("forever", "s1", None)
        await running_with(engine, instance_id, "waiting")
        await engine.suspend(instance_id, "hold on")
        await engine.raise_event(instance_id, "go", '"late"')
        for _ in range(20):
            await asyncio.sleep(0)  # give the engine every chance to (wrongly) replay
        during = await engine.get_status(instance_id, show_history=True)
        await engine.resume(instance_id, "carry on")
        return during, await finished(engine, instance_id)

    during, after = run(engine, scenario)
    assert during is not None
    assert during["runtimeStatus"] == "Suspended"
    assert "EventRaised" not in [e["EventType"] for e in during["historyEvents"]]
    assert "ExecutionSuspended" in [e["EventType"] for e in during["historyEvents"]]
    assert after["runtimeStatus"] == "Completed"
    assert after["output"] == "late"


def test_purge_removes_an_instance_and_purge_many_filters_by_status() -> None:
    engine = make_engine(
        orchestrators={"chain": chain, "forever": forever},
        activities={"hello": json_activity(hello)},
    )

    async def scenario(engine: Engine) -> tuple[int, int, int, Any, Any]:
        done = await engine.start_new("chain", "done-1", None)
        await finished(engine, done)
        await engine.start_new("forever", "live-1", None)
        await finished(engine, await engine.start_new("chain", "done-2", None))
        single = await engine.purge(done)
        again = await engine.purge(done)
        many = await engine.purge_many(
            created_from=engine.clock.now() - timedelta(hours=1),
            created_to=None,
            statuses=["Completed"],
        )
        return single, again, many, await engine.get_status(done), await engine.get_status("live-1")

    single, again, many, gone, live = run(engine, scenario)
    assert (single, again, many) == (1, 0, 1)
    assert gone is None
    assert live is not None
    assert live["runtimeStatus"] in {"Pending", "Running"}


def test_duplicate_start_raises_while_running_and_replaces_a_finished_instance() -> None:
    engine = make_engine(
        orchestrators={"chain": chain, "forever": forever},
        activities={"hello": json_activity(hello)},
    )

    async def scenario(engine: Engine) -> dict[str, Any]:
        await engine.start_new("forever", "dup", None)
        with pytest.raises(InstanceAlreadyExists) as caught:
            await engine.start_new("forever", "dup", None)
        assert caught.value.runtime_status in {"Pending", "Running"}
        await engine.terminate("dup", "stop")
        await finished(engine, "dup")
        await engine.start_new("chain", "dup", None)
        return await finished(engine, "dup")

    status = run(engine, scenario)
    assert status["name"] == "chain"
    assert status["output"] == ["hi a", "hi b"]


def test_unknown_names_and_ids_raise_the_contract_exceptions() -> None:
    engine = make_engine(orchestrators={"chain": chain})

    async def scenario(engine: Engine) -> None:
        with pytest.raises(UnknownOrchestrator):
            await engine.start_new("nope", None, None)
        with pytest.raises(InstanceNotFound):
            await engine.raise_event("missing", "go", None)
        with pytest.raises(InstanceNotFound):
            await engine.terminate("missing", None)
        with pytest.raises(InstanceNotFound):
            await engine.restart("missing", new_instance_id=True)
        assert await engine.get_status("missing") is None

    run(engine, scenario)


def calls_http(ctx: Any) -> Any:
    yield ctx.call_http("GET", "http://127.0.0.1:1/x")
    return "unreachable"


def test_an_unsupported_action_fails_the_orchestration_naming_it() -> None:
    engine = make_engine(orchestrators={"calls_http": calls_http})

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("calls_http", None, None))

    status = run(engine, scenario)
    assert status["runtimeStatus"] == "Failed"
    assert "CallHttp" in status["output"]


def broken(ctx: Any) -> Any:
    yield ctx.call_activity("hello", 1)
    raise ValueError("orchestrator broke")


def test_an_orchestrator_exception_fails_it_with_the_error_text_as_output() -> None:
    engine = make_engine(
        orchestrators={"broken": broken}, activities={"hello": json_activity(hello)}
    )

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("broken", None, None))

    status = run(engine, scenario)
    assert status["runtimeStatus"] == "Failed"
    assert status["output"] == "Orchestrator function 'broken' failed: orchestrator broke"


def test_restart_reuses_the_input_under_a_new_or_the_same_id() -> None:
    engine = make_engine(
        orchestrators={"counter": counter}, activities={"hello": json_activity(hello)}
    )

    async def scenario(engine: Engine) -> tuple[str, dict[str, Any], dict[str, Any]]:
        await finished(engine, await engine.start_new("counter", "orig", "3"))
        fresh = await engine.restart("orig", new_instance_id=True)
        same = await engine.restart("orig", new_instance_id=False)
        return fresh, await finished(engine, fresh), await finished(engine, same)

    fresh, fresh_status, same_status = run(engine, scenario)
    assert fresh != "orig"
    assert fresh_status["input"] == 3
    assert fresh_status["output"] == 3
    assert same_status["instanceId"] == "orig"
    assert same_status["output"] == 3


def test_list_instances_pages_with_a_continuation_token_and_filters() -> None:
    engine = make_engine(
        orchestrators={"chain": chain, "forever": forever},
        activities={"hello": json_activity(hello)},
    )

    async def scenario(engine: Engine) -> tuple[list[list[str]], list[str], list[str]]:
        for n in range(5):
            await finished(engine, await engine.start_new("chain", f"job-{n}", None))
        await engine.start_new("forever", "other-1", None)
        pages: list[list[str]] = []
        token: str | None = None
        while True:
            page, token = await engine.list_instances(
                created_from=None,
                created_to=None,
                statuses=[],
                prefix="job-",
                top=2,
                continuation=token,
                show_input=True,
            )
            pages.append([s["instanceId"] for s in page])
            if token is None:
                break
        running, _ = await engine.list_instances(
            created_from=None,
            created_to=None,
            statuses=["Running", "Pending"],
            prefix=None,
            top=100,
            continuation=None,
            show_input=False,
        )
        future, _ = await engine.list_instances(
            created_from=engine.clock.now() + timedelta(hours=1),
            created_to=None,
            statuses=[],
            prefix=None,
            top=100,
            continuation=None,
            show_input=False,
        )
        return pages, [s["instanceId"] for s in running], [s["instanceId"] for s in future]

    pages, running, future = run(engine, scenario)
    assert pages == [["job-0", "job-1"], ["job-2", "job-3"], ["job-4"]]
    assert running == ["other-1"]
    assert future == []


def test_wait_for_completion_returns_the_current_status_on_timeout() -> None:
    engine = make_engine(orchestrators={"forever": forever})

    async def scenario(engine: Engine) -> dict[str, Any] | None:
        instance_id = await engine.start_new("forever", None, None)
        return await engine.wait_for_completion(instance_id, 0.05)

    status = run(engine, scenario)
    assert status is not None
    assert status["runtimeStatus"] in {"Pending", "Running"}


# --- activities: concurrency, failures, logging -------------------------------------------------


class Gate:
    """A counting fake that holds every call until opened, and records the peak concurrency."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.started = 0
        self.opened = asyncio.Event()

    async def __call__(self, value: Any) -> Any:
        self.active += 1
        self.started += 1
        self.peak = max(self.peak, self.active)
        try:
            await self.opened.wait()
        finally:
            self.active -= 1
        return value


def test_the_concurrency_cap_bounds_running_activities() -> None:
    gate = Gate()
    engine = make_engine(
        orchestrators={"fan_out": fan_out},
        activities={"hello": json_activity(gate)},
        max_concurrent_activities=2,
    )

    async def scenario(engine: Engine) -> dict[str, Any]:
        gate.opened = asyncio.Event()
        instance_id = await engine.start_new("fan_out", None, None)

        async def two_running() -> bool:
            return gate.active == 2

        await eventually(two_running, what="two activities running")
        for _ in range(20):
            await asyncio.sleep(0)
        assert gate.active == 2
        gate.opened.set()
        return await finished(engine, instance_id)

    status = run(engine, scenario)
    assert status["output"] == [0, 1, 2, 3, 4]
    assert gate.peak == 2
    assert gate.started == 5


def calls_missing(ctx: Any) -> Any:
    try:
        yield ctx.call_activity("missing", 1)
    except Exception as exc:
        return str(exc)
    return None


def test_an_unknown_activity_fails_the_task_not_the_engine() -> None:
    engine = make_engine(orchestrators={"calls_missing": calls_missing})

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("calls_missing", None, None))

    assert "'missing' doesn't exist" in run(engine, scenario)["output"]


def test_one_log_line_per_function_execution(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.devhost.engine")
    engine = make_engine(
        orchestrators={"chain": chain}, activities={"hello": json_activity(hello)}, log=log
    )

    async def scenario(engine: Engine) -> None:
        await finished(engine, await engine.start_new("chain", "log-1", None))

    with caplog.at_level(logging.INFO, logger="test.devhost.engine"):
        run(engine, scenario)
    records = [r for r in caplog.records if r.name == "test.devhost.engine"]
    # The engine writes through the one shared helper, so its lines cannot drift from the HTTP
    # and timer functions' lines.
    assert {r.funcName for r in records} == {"log_invocation"}
    lines = [r.getMessage() for r in records]
    activity_lines = [line for line in lines if "function=hello " in line]
    episode_lines = [line for line in lines if "function=chain " in line]
    assert len(activity_lines) == 2
    assert len(episode_lines) == 3
    for line in lines:
        assert "instanceId=log-1" in line
        assert "invocationId=" in line
        assert "durationMs=" in line
    assert episode_lines[-1].endswith("outcome=Completed")


# --- persistence --------------------------------------------------------------------------------


def two_steps(ctx: Any) -> Any:
    first = yield ctx.call_activity("step1", "a")
    second = yield ctx.call_activity("step2", "b")
    return [first, second]


def test_a_fresh_engine_on_the_same_file_resumes_without_rerunning_finished_work(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    step1 = Counter()
    blocked = Gate()
    first = make_engine(
        orchestrators={"two_steps": two_steps},
        activities={"step1": json_activity(step1), "step2": json_activity(blocked)},
        db=db,
    )

    async def until_step2_runs(engine: Engine) -> None:
        blocked.opened = asyncio.Event()
        await engine.start_new("two_steps", "p-1", None)

        async def step2_started() -> bool:
            return blocked.started == 1

        await eventually(step2_started, what="step2 running")

    run(first, until_step2_runs, stop=False)  # the "crash": no stop, loop torn down
    assert len(step1.calls) == 1

    step2 = Counter()
    second = make_engine(
        orchestrators={"two_steps": two_steps},
        activities={"step1": json_activity(step1), "step2": json_activity(step2)},
        store=Store(db),
    )

    async def resume(engine: Engine) -> dict[str, Any]:
        return await finished(engine, "p-1")

    status = run(second, resume)
    assert status["output"] == [{"echo": "a", "call": 1}, {"echo": "b", "call": 1}]
    assert len(step1.calls) == 1  # completed before the crash: not run again
    assert step2.calls == ["b"]  # running at the crash: run again (at-least-once)


def test_timers_due_while_the_host_was_down_fire_at_once(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    first = make_engine(orchestrators={"sleeper": sleeper}, db=db, clock=SystemClock())

    async def start(engine: Engine) -> None:
        await engine.start_new("sleeper", "sleepy", None)

        async def timer_pending() -> bool:
            return bool(engine.store.work_items("sleepy"))

        await eventually(timer_pending, what="the timer")

    run(first, start, stop=False)
    later = VirtualClock(offset=timedelta(hours=2))  # the host comes back two hours later
    second = make_engine(orchestrators={"sleeper": sleeper}, store=Store(db), clock=later)

    async def resume(engine: Engine) -> dict[str, Any]:
        return await finished(engine, "sleepy")

    assert run(second, resume)["output"] >= 3600


def test_an_unreadable_orchestrator_state_fails_the_instance_loudly() -> None:
    engine = Engine(
        store=Store(":memory:"),
        orchestrators={"garbage": lambda _context: "[1, 2]"},
        activities={},
        clock=VirtualClock(),
        task_hub="testhub",
    )

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("garbage", None, None))

    status = run(engine, scenario)
    assert status["runtimeStatus"] == "Failed"
    assert "unreadable orchestrator state" in status["output"]


def test_an_engine_bug_fails_the_instance_instead_of_leaving_it_running() -> None:
    engine = make_engine(orchestrators={"chain": chain}, activities={"hello": json_activity(hello)})

    def broken_plan(*_args: Any) -> None:
        raise KeyError("bookkeeping")

    # The episode runner's planning step, the first thing after the orchestrator's replay.
    engine._episodes._plan_actions = broken_plan  # type: ignore[method-assign,assignment]

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("chain", None, None))

    status = run(engine, scenario)
    assert status["runtimeStatus"] == "Failed"
    assert "devhost engine error" in status["output"]


def two_timers(ctx: Any) -> Any:
    now = ctx.current_utc_datetime
    late = ctx.create_timer(now + timedelta(hours=2))
    early = ctx.create_timer(now + timedelta(hours=1))
    winner = yield ctx.task_any([late, early])
    return "early" if winner == early else "late"


def test_virtual_clock_fires_timers_in_fire_at_order() -> None:
    engine = make_engine(orchestrators={"two_timers": two_timers}, clock=VirtualClock())

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("two_timers", None, None))

    assert run(engine, scenario)["output"] == "early"


def with_extra_retry_options(handle: Any, **extra: Any) -> Any:
    """The SDK's handle, with retry options azure-functions-durable 1.x cannot send added.

    Other Durable SDKs send backoffCoefficient, maxRetryIntervalInMilliseconds and
    retryTimeoutInMilliseconds; the host honours them as DTFx does.
    """

    def patch(actions: list[Any]) -> None:
        for action in actions:
            if "retryOptions" in action:
                action["retryOptions"].update(extra)
            patch(action.get("compoundActions") or [])

    def wrapped(context_json: str) -> str:
        state = json.loads(handle(context_json))
        for group in state["actions"]:
            patch(group)
        return json.dumps(state)

    return wrapped


def retry_four(ctx: Any) -> Any:
    try:
        yield ctx.call_activity_with_retry("flaky", df.RetryOptions(1000, 4), None)
    except Exception as exc:
        return str(exc)
    return None


def test_backoff_coefficient_and_max_interval_shape_the_retry_timers() -> None:
    handle = with_extra_retry_options(
        df.Orchestrator.create(retry_four),
        backoffCoefficient=2,
        maxRetryIntervalInMilliseconds=3000,
    )
    engine = Engine(
        store=Store(":memory:"),
        orchestrators={"retry_four": handle},
        activities={"flaky": json_activity(Counter(fail_times=99))},
        clock=VirtualClock(),
        task_hub="testhub",
    )

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("retry_four", "b1", None))

    status = run(engine, scenario)
    assert status["output"].startswith("boom 4")
    created = [e for e in raw_history(engine, "b1") if e["EventType"] == EventType.TimerCreated]
    waits = [
        (parse_time(e["FireAt"]) - parse_time(e["Timestamp"])).total_seconds() for e in created
    ]
    assert waits == [1.0, 2.0, 3.0, 0.0]


def test_an_expired_retry_timeout_fails_the_orchestration_loudly() -> None:
    handle = with_extra_retry_options(
        df.Orchestrator.create(retry_four), retryTimeoutInMilliseconds=1500
    )
    flaky = Counter(fail_times=99)
    engine = Engine(
        store=Store(":memory:"),
        orchestrators={"retry_four": handle},
        activities={"flaky": json_activity(flaky)},
        clock=VirtualClock(),
        task_hub="testhub",
    )

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("retry_four", None, None))

    status = run(engine, scenario)
    assert status["runtimeStatus"] == "Failed"
    assert "retryTimeoutInMilliseconds=1500" in status["output"]
    # Attempts at t=0, 1 s and 2 s; after the third failure (t=2 s) the 1.5 s budget is spent.
    assert len(flaky.calls) == 3


def calls_unknown_child(ctx: Any) -> Any:
    try:
        yield ctx.call_sub_orchestrator("nobody", None)
    except Exception as exc:
        return str(exc)
    return None


def test_a_sub_orchestrator_that_does_not_exist_fails_the_call() -> None:
    engine = make_engine(orchestrators={"calls_unknown_child": calls_unknown_child})

    async def scenario(engine: Engine) -> dict[str, Any]:
        return await finished(engine, await engine.start_new("calls_unknown_child", None, None))

    assert "The function 'nobody' doesn't exist" in run(engine, scenario)["output"]


def test_the_status_shows_the_status_input_and_the_orchestrator_gets_the_input() -> None:
    seen: list[Any] = []

    def echo(ctx: Any) -> Any:
        seen.append(ctx.get_input())
        yield ctx.call_activity("hello", "x")
        return "done"

    engine = make_engine(orchestrators={"echo": echo}, activities={"hello": json_activity(hello)})
    sdk_body = json.dumps(json.dumps({"a": 1}))

    async def scenario(engine: Engine) -> tuple[dict[str, Any], dict[str, Any]]:
        first = await finished(
            engine, await engine.start_new("echo", "s1", '{"a": 1}', status_input=sdk_body)
        )
        restarted = await engine.restart("s1", new_instance_id=True)
        return first, await finished(engine, restarted)

    first, restarted = run(engine, scenario)
    assert first["input"] == '{"a": 1}'
    assert restarted["input"] == '{"a": 1}'
    assert seen[0] == {"a": 1}
    assert seen[-1] == {"a": 1}
