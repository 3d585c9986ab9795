"""The example DFApp driven through devhost over real HTTP, with the SDK's own client.

Each orchestrator of devhost_tests/example_app exercises one Durable feature; the HTTP starters
use DurableOrchestrationClient (start_new, create_check_status_response, get_status, raise_event,
terminate, suspend/resume, purge_instance_history), which talks to devhost's RPC base, while the
test reads the public check-status URLs with the system key, as a real caller would.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from devhost.server import DevHost
from devhost_tests.example_client import EXAMPLE, App


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    with DevHost(app_dir=EXAMPLE, virtual_time=True) as host:
        client = App(host)
        yield client
        client.http.close()


def test_activity_chain_and_the_check_status_response(app):
    started = app.start("chain", ["Tokyo", "Seattle"])
    assert started["statusQueryGetUri"].startswith(
        f"{app.host.url}/runtime/webhooks/durabletask/instances/{started['id']}?taskHub=DevhostExampleHub"
    )
    assert f"code={app.host.system_key}" in started["statusQueryGetUri"]
    done = app.wait(started["id"])
    assert done["runtimeStatus"] == "Completed"
    assert done["output"] == ["Hello Tokyo!", "Hello Seattle!"]
    # The public status URL the SDK handed out works as given (system key in it).
    r = httpx.get(started["statusQueryGetUri"])
    assert r.status_code == 200
    assert r.json()["output"] == ["Hello Tokyo!", "Hello Seattle!"]


def test_an_activity_with_a_client_binding_starts_an_instance_of_its_own(app):
    started = app.start("detach", {"instance": "detached-1", "cities": ["Lima"]})
    done = app.wait(started["id"])
    assert done["runtimeStatus"] == "Completed"
    assert done["output"] == "detached-1"
    detached = app.wait("detached-1")
    assert detached["runtimeStatus"] == "Completed"
    assert detached["output"] == ["Hello Lima!"]


def test_history_is_rendered_as_the_host_renders_it(app):
    started = app.start("chain", ["Oslo"])
    app.wait(started["id"])
    events = app.status(started["id"], history=True)["historyEvents"]
    kinds = [e["EventType"] for e in events]
    assert kinds == ["ExecutionStarted", "TaskCompleted", "ExecutionCompleted"]
    assert events[1]["FunctionName"] == "say_hello"
    assert events[1]["Result"] == "Hello Oslo!"


def test_retry_exhaustion_fails_the_orchestration_after_every_attempt(app):
    started = app.start("retry_exhaustion", "retry-key")
    done = app.wait(started["id"])
    assert done["runtimeStatus"] == "Failed"
    assert "attempt 3 failed" in str(done["output"])
    assert app.calls("retry-key") == 3


def test_a_durable_timer_fires_at_once_in_virtual_time_and_the_clock_jumps(app):
    done = app.wait(app.start("durable_timer")["id"])
    assert done["runtimeStatus"] == "Completed"
    assert done["output"] >= 3600


def test_an_external_event_that_never_comes_times_out(app):
    done = app.wait(app.start("approval")["id"])
    assert done["output"] == {"approved": None}
    assert done["customStatus"] == "timed out"


def test_fan_out_fan_in(app):
    done = app.wait(app.start("fan_out", 10)["id"])
    assert done["output"] == sum(i * i for i in range(10))


def test_sub_orchestration(app):
    done = app.wait(app.start("parent")["id"])
    assert done["output"] == {"child": ["Hello Paris!", "Hello Rome!"]}


def test_sub_orchestration_with_retry_runs_the_child_again_until_it_succeeds(app):
    spec = {"key": "sub-retry-ok", "attempts": 3, "succeed_on": 2}
    started = app.start("parent_with_retry", spec)
    done = app.wait(started["id"])
    assert done["runtimeStatus"] == "Completed"
    assert done["output"] == {"child": "child ok on attempt 2"}
    assert app.calls("sub-retry-ok") == 2
    kinds = [e["EventType"] for e in app.status(started["id"], history=True)["historyEvents"]]
    # As the host renders history: each Created is folded into its Failed/Completed.
    assert kinds == [
        "ExecutionStarted",
        "SubOrchestrationInstanceFailed",
        "TimerCreated",
        "TimerFired",
        "SubOrchestrationInstanceCompleted",
        "ExecutionCompleted",
    ]


def test_sub_orchestration_with_retry_fails_the_parent_after_the_last_attempt(app):
    spec = {"key": "sub-retry-never", "attempts": 2, "succeed_on": 99}
    done = app.wait(app.start("parent_with_retry", spec)["id"])
    assert done["runtimeStatus"] == "Failed"
    assert "child attempt 2 failed" in str(done["output"])
    assert app.calls("sub-retry-never") == 2


def test_status_input_is_the_json_text_the_sdk_sent_and_the_orchestrator_gets_the_value(app):
    # The SDK's start_new encodes the input twice; Azure's status shows the stored JSON string
    # (the text), while the orchestrator's get_input() returns the dict.
    started = app.start("echo_input", {"a": 1})
    done = app.wait(started["id"])
    assert done["output"] == {"input": {"a": 1}, "type": "dict"}
    assert done["input"] == '{"a": 1}'
    public = httpx.get(started["statusQueryGetUri"]).json()
    assert public["input"] == '{"a": 1}'
    # Restarted, the new instance shows the same input and the orchestrator gets the same value.
    r = httpx.post(started["restartPostUri"])
    assert r.status_code == 202
    again = app.wait(r.json()["id"])
    assert again["input"] == '{"a": 1}'
    assert again["output"] == {"input": {"a": 1}, "type": "dict"}


def test_status_input_of_a_json_object_posted_by_hand_is_that_object(app):
    r = httpx.post(
        f"{app.host.url}/runtime/webhooks/durabletask/orchestrators/echo_input",
        params={"code": app.host.system_key},
        content=b'{"a": 1}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 202
    done = app.wait(r.json()["id"])
    assert done["input"] == {"a": 1}
    assert done["output"] == {"input": {"a": 1}, "type": "dict"}


def test_continue_as_new_keeps_the_instance_id(app):
    started = app.start("counter", 0, instance_id="counter-1")
    done = app.wait(started["id"])
    assert done["runtimeStatus"] == "Completed"
    assert done["output"] == 3


def test_custom_status_stays_after_completion(app):
    done = app.wait(app.start("custom_status")["id"])
    assert done["customStatus"] == {"stage": "two", "first": "Hello stage one!"}


def test_an_orchestrator_exception_fails_the_instance(app):
    done = app.wait(app.start("fails")["id"])
    assert done["runtimeStatus"] == "Failed"
    assert "the orchestrator gave up" in str(done["output"])


def test_the_public_management_api_needs_a_key(app):
    iid = app.wait(app.start("chain", ["Lima"])["id"])["instanceId"]
    url = f"{app.host.url}/runtime/webhooks/durabletask/instances/{iid}"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, params={"code": app.host.function_key}).status_code == 401
    assert httpx.get(url, params={"code": app.host.system_key}).status_code == 200
    assert httpx.get(url, headers={"x-functions-key": app.host.master_key}).status_code == 200
    listing = httpx.get(
        f"{app.host.url}/runtime/webhooks/durabletask/instances",
        params={"code": app.host.system_key, "runtimeStatus": "Completed"},
    )
    assert listing.status_code == 200
    assert iid in {s["instanceId"] for s in listing.json()}
    assert "x-ms-continuation-token" in listing.headers


def test_start_and_wait_on_the_public_api(app):
    r = httpx.post(
        f"{app.host.url}/runtime/webhooks/durabletask/orchestrators/chain",
        params={"code": app.host.system_key, "timeout": "20", "pollingInterval": "1"},
        json=["Quito"],
        timeout=30,
    )
    assert r.status_code == 200
    assert r.json() == ["Hello Quito!"]


def test_one_log_line_per_function_execution(app, caplog):
    with caplog.at_level(logging.INFO):
        iid = app.wait(app.start("chain", ["Bern"])["id"])["instanceId"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("function=")]
    assert any(line.startswith("function=start ") and "outcome=Succeeded" in line for line in lines)
    assert any(f"instanceId={iid}" in line and "function=say_hello" in line for line in lines)
    assert all(app.host.function_key not in r.getMessage() for r in caplog.records)


def test_restart_and_purge_many_on_the_public_api(app):
    first = app.wait(app.start("chain", ["Kyiv"])["id"])
    base = f"{app.host.url}/runtime/webhooks/durabletask"
    key = {"x-functions-key": app.host.system_key}
    r = httpx.post(f"{base}/instances/{first['instanceId']}/restart", headers=key)
    assert r.status_code == 202
    again = app.wait(r.json()["id"])
    assert again["instanceId"] != first["instanceId"]
    assert again["output"] == ["Hello Kyiv!"]  # the input was reused
    failed = app.wait(app.start("fails")["id"])
    r = httpx.delete(
        f"{base}/instances",
        params={"createdTimeFrom": "2000-01-01T00:00:00Z", "runtimeStatus": "Failed"},
        headers=key,
    )
    assert r.status_code == 200
    assert r.json()["instancesDeleted"] >= 1
    assert app.status(failed["instanceId"]) == {"found": False}
    assert app.status(again["instanceId"])["runtimeStatus"] == "Completed"


def test_a_bad_continuation_token_is_a_400_not_a_500(app):
    r = httpx.get(
        f"{app.host.url}/runtime/webhooks/durabletask/instances",
        params={"code": app.host.system_key},
        headers={"x-ms-continuation-token": "not-a-token"},
    )
    assert r.status_code == 400
    assert r.json()["ExceptionType"] == "System.ArgumentException"
    assert "invalid continuation token" in r.json()["ExceptionMessage"]
