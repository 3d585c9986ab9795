"""The Durable management API's HTTP mapping, against a hand-written fake engine.

Every status code, error body and header here is the extension's (HttpApiHandler, v2.13), as
docs/reference/functions-host-http.md records it.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

import httpx
import pytest

from devhost import management_api
from devhost.engine import InstanceAlreadyExists, InstanceNotFound, UnknownEntity
from devhost.functions import FunctionIndex
from devhost.http_host import HttpHost
from devhost.keys import HostKeys
from devhost.management_api import (
    ManagementApi,
    check_status_payload,
    client_binding,
    instance_id_problem,
    orchestration_input_json,
    parse_bool,
    parse_statuses,
)
from loopserver import BackgroundServer

TERMINAL = {"Completed", "Failed", "Terminated", "Canceled"}


def status(instance_id: str, runtime: str = "Running", **extra: Any) -> dict[str, Any]:
    return {
        "name": "orch",
        "instanceId": instance_id,
        "runtimeStatus": runtime,
        "input": None,
        "customStatus": None,
        "output": None,
        "createdTime": "2024-05-01T10:00:00Z",
        "lastUpdatedTime": "2024-05-01T10:00:00Z",
        **extra,
    }


class FakeEngine:
    """Statuses in a dict; records every call with its arguments."""

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.next_id = "new-id"
        self.page_token: str | None = None
        # Operations that refuse their arguments with ValueError, as the real engine can.
        self.refusing: set[str] = set()
        self.status_inputs: dict[str, str | None] = {}
        self.entity_states: dict[tuple[str, str], str] = {}

    def _call(self, *call: Any) -> None:
        self.calls.append(call)
        if call[0] in self.refusing:
            raise ValueError(f"{call[0]}: refused argument")

    async def start_new(
        self,
        name: str,
        instance_id: str | None,
        input_json: str | None,
        *,
        status_input: str | None = None,
    ) -> str:
        self._call("start_new", name, instance_id, input_json)
        iid = instance_id or self.next_id
        self.status_inputs[iid] = status_input
        existing = self.instances.get(iid)
        if existing and existing["runtimeStatus"] not in TERMINAL:
            raise InstanceAlreadyExists(iid, existing["runtimeStatus"])
        self.instances[iid] = status(iid, "Pending")
        return iid

    async def get_status(
        self, instance_id, *, show_history=False, show_history_output=False, show_input=True
    ):
        self._call("get_status", instance_id, show_history, show_history_output, show_input)
        return self.instances.get(instance_id)

    async def list_instances(
        self, *, created_from, created_to, statuses, prefix, top, continuation, show_input
    ):
        self._call(
            "list", created_from, created_to, list(statuses), prefix, top, continuation, show_input
        )
        return list(self.instances.values())[:top], self.page_token

    async def raise_event(self, instance_id: str, name: str, data_json: str | None) -> None:
        self._call("raise_event", instance_id, name, data_json)

    async def terminate(self, instance_id: str, reason: str | None) -> None:
        self._call("terminate", instance_id, reason)

    async def suspend(self, instance_id: str, reason: str | None) -> None:
        self._call("suspend", instance_id, reason)

    async def resume(self, instance_id: str, reason: str | None) -> None:
        self._call("resume", instance_id, reason)

    async def rewind(self, instance_id: str, reason: str | None) -> None:
        raise NotImplementedError("rewind")

    async def restart(self, instance_id: str, *, new_instance_id: bool) -> str:
        self._call("restart", instance_id, new_instance_id)
        if instance_id not in self.instances:
            raise InstanceNotFound(instance_id)
        return "restarted-id" if new_instance_id else instance_id

    async def purge(self, instance_id: str) -> int:
        self._call("purge", instance_id)
        return 1 if self.instances.pop(instance_id, None) else 0

    async def purge_many(
        self, *, created_from: datetime, created_to: datetime | None, statuses: Collection[str]
    ) -> int:
        self._call("purge_many", created_from, created_to, list(statuses))
        return len(self.instances)

    async def wait_for_completion(self, instance_id: str, timeout_s: float):
        self._call("wait", instance_id, timeout_s)
        return self.instances.get(instance_id)

    async def signal_entity(self, name: str, key: str, operation: str, input_token: Any) -> None:
        self._call("signal_entity", name, key, operation, input_token)
        if name.lower() != "counter":
            raise UnknownEntity(name)

    async def read_entity_state(self, name: str, key: str) -> str | None:
        self._call("read_entity_state", name, key)
        return self.entity_states.get((name.lower(), key))


KEYS = HostKeys(
    master_key="master",
    function_keys={"default": "fn"},
    system_keys={"durabletask_extension": "sys"},
)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def http_host(engine):
    api = ManagementApi(engine, task_hub="Hub", system_key="sys", orchestrators=["orch", "other"])
    return HttpHost(index=FunctionIndex(), keys=KEYS, management=api, task_hub="Hub")


@pytest.fixture
def server(http_host):
    with BackgroundServer(http_host.build_app()) as srv:
        yield srv


@pytest.fixture
def rpc(server, http_host):
    """The keyless RPC listener the client binding names (its own port, on 127.0.0.1)."""
    with httpx.Client(base_url=f"{http_host.rpc_origin()}/durabletask") as client:
        yield client


# --- pure parts -----------------------------------------------------------------------------


def test_client_binding_json_points_at_this_host():
    binding = client_binding(
        origin="http://127.0.0.1:7071",
        rpc_base_url="http://127.0.0.1:7071/durabletask/",
        task_hub="Hub",
        system_key="sys",
    )
    assert list(binding) == [
        "taskHubName",
        "creationUrls",
        "managementUrls",
        "baseUrl",
        "requiredQueryStringParameters",
        "rpcBaseUrl",
    ]
    assert binding["taskHubName"] == "Hub"
    assert binding["baseUrl"] == "http://127.0.0.1:7071/runtime/webhooks/durabletask"
    assert binding["requiredQueryStringParameters"] == "code=sys"
    assert binding["rpcBaseUrl"] == "http://127.0.0.1:7071/durabletask/"
    urls = binding["managementUrls"]
    assert urls["id"] == "INSTANCEID"
    assert urls["statusQueryGetUri"] == (
        "http://127.0.0.1:7071/runtime/webhooks/durabletask/instances/INSTANCEID"
        "?taskHub=Hub&connection=Storage&code=sys"
    )
    assert binding["creationUrls"]["createNewInstancePostUri"] == (
        "http://127.0.0.1:7071/runtime/webhooks/durabletask/orchestrators/"
        "{functionName}[/{instanceId}]?code=sys"
    )
    assert (
        "timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}"
        in (binding["creationUrls"]["createAndWaitOnNewInstancePostUri"])
    )


def test_the_sdk_reads_the_binding_and_builds_its_urls_from_it():
    from azure.durable_functions import DurableOrchestrationClient

    binding = client_binding(
        origin="http://127.0.0.1:1",
        rpc_base_url="http://127.0.0.1:1/durabletask/",
        task_hub="Hub",
        system_key="sys",
    )
    client = DurableOrchestrationClient(json.dumps(binding))
    links = client.create_http_management_payload("abc")
    assert links["sendEventPostUri"].startswith(
        "http://127.0.0.1:1/runtime/webhooks/durabletask/instances/abc/raiseEvent/{eventName}?"
    )
    assert client._orchestration_bindings.rpc_base_url == "http://127.0.0.1:1/durabletask/"


def test_check_status_payload_keys_in_the_extensions_order():
    payload = check_status_payload("http://h:1", "a b", task_hub="Hub", system_key="k")
    assert list(payload) == [
        "id",
        "statusQueryGetUri",
        "sendEventPostUri",
        "terminatePostUri",
        "purgeHistoryDeleteUri",
        "restartPostUri",
        "suspendPostUri",
        "resumePostUri",
    ]
    assert payload["terminatePostUri"] == (
        "http://h:1/runtime/webhooks/durabletask/instances/a+b/terminate?reason={text}"
        "&taskHub=Hub&connection=Storage&code=k"
    )
    assert payload["purgeHistoryDeleteUri"] == payload["statusQueryGetUri"]


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("True", True), (" FALSE ", False), ("1", None), ("yes", None), (None, None)],
)
def test_booleans_parse_like_bool_tryparse(text, value):
    assert parse_bool(text) is value


def test_runtime_status_is_comma_separated_or_repeated_case_sensitive_and_forgiving():
    assert parse_statuses(["Running,Completed", "Failed", "running", "Bogus"]) == [
        "Running",
        "Completed",
        "Failed",
    ]


@pytest.mark.parametrize("bad", ["@entity", "a/b", "a\\b", "a#b", "a?b", "a\x01b", "x" * 257])
def test_instance_ids_the_extension_refuses(bad):
    assert instance_id_problem(bad) is not None


def test_orchestration_input_peels_the_sdks_double_encoding():
    assert orchestration_input_json(json.dumps(json.dumps({"a": 1}))) == '{"a": 1}'
    assert orchestration_input_json('{"a": 1}') == '{"a":1}'
    assert orchestration_input_json("null") is None


# --- over HTTP --------------------------------------------------------------------------------


def test_start_returns_the_check_status_response(engine, server):
    r = httpx.post(
        f"{server.url}/runtime/webhooks/durabletask/orchestrators/orch?code=sys",
        content=json.dumps(json.dumps({"x": 1})),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 202
    body = r.json()
    assert body["id"] == "new-id"
    assert r.headers["Location"] == body["statusQueryGetUri"]
    assert r.headers["Retry-After"] == "10"
    assert body["statusQueryGetUri"].startswith(
        f"{server.url}/runtime/webhooks/durabletask/instances/new-id?taskHub=Hub&connection=Storage&code=sys"
    )
    assert engine.calls[-1] == ("start_new", "orch", None, '{"x": 1}')
    # The status shows the body's JSON itself: the SDK's JSON string, not the value inside it.
    assert engine.status_inputs["new-id"] == json.dumps(json.dumps({"x": 1}))


def test_start_with_an_id_and_an_empty_body(rpc, engine):
    r = rpc.post("/ORCHESTRATORS/orch/my-id")
    assert r.status_code == 202
    assert r.json()["id"] == "my-id"
    assert engine.calls[-1] == ("start_new", "orch", "my-id", None)
    assert engine.status_inputs["my-id"] is None


def test_start_of_an_unknown_orchestrator_is_400_naming_the_known_ones(rpc):
    r = rpc.post("/orchestrators/nosuch")
    assert r.status_code == 400
    body = r.json()
    assert body["Message"] == "One or more of the arguments submitted is incorrect"
    assert body["ExceptionMessage"].startswith(
        "The function 'nosuch' doesn't exist, is disabled, or is not an orchestrator function."
    )
    assert "'orch', 'other'" in body["ExceptionMessage"]
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"


def test_start_with_bad_json_or_a_bad_id_is_400(rpc):
    r = rpc.post("/orchestrators/orch", content=b"{nope")
    assert r.status_code == 400
    assert r.json()["Message"] == "Invalid JSON content"
    r = rpc.post("/orchestrators/orch/@bad")
    assert r.status_code == 400
    assert "must not start with @" in r.json()["ExceptionMessage"]


def test_a_running_duplicate_is_the_old_500(rpc, engine):
    engine.instances["dup"] = status("dup", "Running")
    r = rpc.post("/orchestrators/orch/dup")
    assert r.status_code == 500
    body = r.json()
    assert (
        body["ExceptionType"] == "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException"
    )
    assert (
        body["ExceptionMessage"]
        == "An Orchestration instance with the status Running already exists."
    )


def test_a_running_duplicate_is_409_with_the_new_behaviour(rpc, engine, monkeypatch):
    monkeypatch.setattr(management_api, "NEW_EXTENSION_BEHAVIOUR", True)
    engine.instances["dup"] = status("dup", "Pending")
    r = rpc.post("/orchestrators/orch/dup")
    assert r.status_code == 409
    assert r.json() == {
        "Message": "An Orchestration instance with the status Pending already exists."
    }


def test_wait_for_completion(rpc, engine):
    async def completed(instance_id, timeout_s):
        engine.calls.append(("wait", instance_id, timeout_s))
        return status(instance_id, "Completed", output={"r": 1})

    async def still_running(instance_id, timeout_s):
        return status(instance_id, "Running")

    async def failed(instance_id, timeout_s):
        engine.instances[instance_id] = status(instance_id, "Failed", output="boom")
        return engine.instances[instance_id]

    engine.wait_for_completion = completed
    r = rpc.post("/orchestrators/orch/w1?timeout=5&pollingInterval=1")
    assert r.status_code == 200
    assert r.json() == {"r": 1}
    assert engine.calls[-1] == ("wait", "w1", 5.0)
    # Without pollingInterval the host does not wait at all.
    assert rpc.post("/orchestrators/orch/w2?timeout=5").status_code == 202
    engine.wait_for_completion = still_running
    r = rpc.post("/orchestrators/orch/w3?timeout=0.1&pollingInterval=0.1")
    assert r.status_code == 202
    assert r.json()["id"] == "w3"
    engine.wait_for_completion = failed
    r = rpc.post("/orchestrators/orch/w4?timeout=5&pollingInterval=1")
    assert r.status_code == 200  # a Failed instance answers with its status, 200 by default
    assert r.json()["runtimeStatus"] == "Failed"


def test_wait_needs_a_polling_interval_not_above_the_timeout(rpc, engine):
    r = rpc.post("/orchestrators/orch/p?timeout=1&pollingInterval=5")
    assert r.status_code == 400
    assert "should be bigger than retry timeout" in r.json()["ExceptionMessage"]


@pytest.mark.parametrize("runtime", ["Running", "Pending", "ContinuedAsNew", "Suspended"])
def test_status_while_running_is_202_with_location_and_retry_after_5(rpc, engine, runtime):
    engine.instances["i"] = status("i", runtime)
    r = rpc.get("/instances/i")
    assert r.status_code == 202
    assert r.headers["Location"] == str(r.request.url)
    assert r.headers["Retry-After"] == "5"
    assert r.json()["runtimeStatus"] == runtime


@pytest.mark.parametrize(
    ("runtime", "flag", "code"),
    [
        ("Completed", None, 200),
        ("Terminated", None, 200),
        ("Canceled", None, 200),
        ("Failed", None, 200),
        ("Failed", "true", 500),
        ("Failed", "bogus", 200),
    ],
)
def test_status_when_finished(rpc, engine, runtime, flag, code):
    engine.instances["i"] = status("i", runtime)
    params = {} if flag is None else {"returnInternalServerErrorOnFailure": flag}
    r = rpc.get("/instances/i", params=params)
    assert r.status_code == code
    assert "Location" not in r.headers


def test_status_query_flags_are_case_insensitive_and_default_like_the_host(rpc, engine):
    engine.instances["i"] = status("i", "Completed")
    rpc.get("/instances/i")
    assert engine.calls[-1] == ("get_status", "i", False, False, True)
    rpc.get("/instances/i?SHOWHISTORY=True&showhistoryoutput=TRUE&showInput=false")
    assert engine.calls[-1] == ("get_status", "i", True, True, False)
    rpc.get("/instances/i?showInput=maybe")
    assert engine.calls[-1] == ("get_status", "i", False, False, True)


def test_status_of_an_unknown_instance_is_404_with_an_empty_body(rpc):
    r = rpc.get("/instances/nosuch")
    assert r.status_code == 404
    assert r.content == b""


def test_list_passes_the_filters_and_always_sends_a_continuation_header(rpc, engine):
    engine.instances["a"] = status("a")
    r = rpc.get(
        "/instances/",
        params=[
            ("runtimeStatus", "Running,Bogus"),
            ("runtimeStatus", "Failed"),
            ("createdTimeFrom", "2024-05-01T00:00:00Z"),
            ("top", "7"),
            ("instanceIdPrefix", "a"),
        ],
        headers={"x-ms-continuation-token": "tok"},
    )
    assert r.status_code == 200
    assert [s["instanceId"] for s in r.json()] == ["a"]
    assert r.headers["x-ms-continuation-token"] == ""
    call = engine.calls[-1]
    assert call[0] == "list"
    assert call[3] == ["Running", "Failed"]
    assert call[4] == "a"
    assert call[1].isoformat() == "2024-05-01T00:00:00+00:00"
    assert call[5] == 7
    assert call[6] == "tok"
    assert call[7] is True
    engine.page_token = "next"
    r = rpc.get("/instances?top=bogus")
    assert r.headers["x-ms-continuation-token"] == "next"
    assert engine.calls[-1][5] == 100


def test_raise_event(rpc, engine):
    assert rpc.post("/instances/nosuch/raiseEvent/E", json=1).status_code == 404
    engine.instances["done"] = status("done", "Completed")
    assert rpc.post("/instances/done/raiseEvent/E", json=1).status_code == 410
    engine.instances["i"] = status("i")
    r = rpc.post("/instances/i/raiseEvent/E", content=b"1", headers={"Content-Type": "text/plain"})
    assert r.status_code == 400
    assert r.json() == {"Message": "Only application/json request content is supported"}
    r = rpc.post(
        "/instances/i/raiseEvent/E", content=b"{x", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["Message"] == "Invalid JSON content"
    r = rpc.post("/instances/i/RAISEEVENT/Approval", json=json.dumps({"ok": True}))
    assert r.status_code == 202
    assert r.content == b""
    # The EventRaised input is the body as stored: the SDK's double encoding shows through.
    assert engine.calls[-1] == (
        "raise_event",
        "i",
        "Approval",
        json.dumps(json.dumps({"ok": True})),
    )


@pytest.mark.parametrize("operation", ["terminate", "suspend", "resume"])
def test_operations(rpc, engine, operation):
    assert rpc.post(f"/instances/nosuch/{operation}").status_code == 404
    engine.instances["done"] = status("done", "Failed")
    assert rpc.post(f"/instances/done/{operation}").status_code == 410
    engine.instances["i"] = status("i")
    r = rpc.post(f"/instances/i/{operation.upper()}?reason=because")
    assert r.status_code == 202
    assert engine.calls[-1] == (operation, "i", "because")


def test_rewind_of_a_completed_instance_is_410_and_unimplemented_otherwise(rpc, engine):
    engine.instances["done"] = status("done", "Completed")
    assert rpc.post("/instances/done/rewind").status_code == 410
    engine.instances["f"] = status("f", "Failed")
    r = rpc.post("/instances/f/rewind")
    assert r.status_code == 501
    assert "rewind" in r.json()["Message"]


def test_restart(rpc, engine):
    engine.instances["i"] = status("i", "Completed")
    r = rpc.post("/instances/i/restart")
    assert r.status_code == 202
    assert r.json()["id"] == "restarted-id"
    r = rpc.post("/instances/i/restart?restartWithNewInstanceId=false")
    assert r.status_code == 202
    assert r.json()["id"] == "i"
    r = rpc.post("/instances/nosuch/restart")
    assert r.status_code == 400
    assert r.json()["Message"] == "InstanceId does not match a valid orchestration instance."


@pytest.mark.parametrize(
    ("operation", "method", "path"),
    [
        ("list", "GET", "/instances"),
        ("start_new", "POST", "/orchestrators/orch"),
        ("raise_event", "POST", "/instances/i/raiseEvent/E"),
        ("terminate", "POST", "/instances/i/terminate"),
        ("suspend", "POST", "/instances/i/suspend"),
        ("resume", "POST", "/instances/i/resume"),
        ("purge", "DELETE", "/instances/i"),
        ("purge_many", "DELETE", "/instances?createdTimeFrom=2024-01-01T00:00:00Z"),
        ("get_status", "GET", "/instances/i"),
    ],
)
def test_every_engine_value_error_is_a_400_argument_error(rpc, engine, operation, method, path):
    engine.instances["i"] = status("i")
    engine.refusing.add(operation)
    r = rpc.request(method, path, json=1)
    assert r.status_code == 400
    body = r.json()
    assert body["Message"] == "One or more of the arguments submitted is incorrect"
    assert body["ExceptionMessage"] == f"{operation}: refused argument"
    assert body["ExceptionType"] == "System.ArgumentException"


def test_restart_refused_by_the_engine_is_a_400_too(rpc, engine):
    engine.instances["i"] = status("i", "Completed")
    engine.refusing.add("restart")
    r = rpc.post("/instances/i/restart")
    assert r.status_code == 400
    assert r.json()["ExceptionType"] == "System.ArgumentException"


def test_purge_one(rpc, engine):
    assert rpc.delete("/instances/nosuch").status_code == 404
    engine.instances["i"] = status("i", "Completed")
    r = rpc.delete("/instances/i")
    assert r.status_code == 200
    assert r.json() == {"instancesDeleted": 1}


def test_purge_of_a_running_instance_is_412_only_with_the_new_behaviour(rpc, engine, monkeypatch):
    engine.instances["i"] = status("i", "Running")
    monkeypatch.setattr(management_api, "NEW_EXTENSION_BEHAVIOUR", True)
    assert rpc.delete("/instances/i").status_code == 412
    monkeypatch.setattr(management_api, "NEW_EXTENSION_BEHAVIOUR", False)
    assert rpc.delete("/instances/i").status_code == 200


def test_purge_many(rpc, engine):
    r = rpc.delete("/instances")
    assert r.status_code == 400
    assert r.json() == "Please provide value for 'createdTimeFrom' parameter."
    assert rpc.delete("/instances?createdTimeFrom=2024-01-01T00:00:00Z").status_code == 404
    engine.instances["a"] = status("a", "Completed")
    r = rpc.delete("/instances?createdTimeFrom=2024-01-01T00:00:00Z&runtimeStatus=Completed")
    assert r.status_code == 200
    assert r.json() == {"instancesDeleted": 1}
    call = engine.calls[-1]
    assert call[0] == "purge_many"
    assert call[2] is None  # "now" is the engine's clock
    assert call[3] == ["Completed"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/orchestrators/orch"),
        ("PUT", "/instances/i"),
        ("GET", "/instances/i/terminate"),
        ("POST", "/instances/i/nosuch"),
        ("GET", "/nosuch"),
        ("POST", "/instances/i/raiseEvent"),
    ],
)
def test_unknown_paths_and_wrong_methods_are_404(rpc, method, path):
    assert rpc.request(method, path).status_code == 404


def test_entity_state_is_read_as_stored_or_404(rpc, engine):
    engine.entity_states[("counter", "k")] = '{"n": 5}'
    r = rpc.get("/entities/Counter/k")
    assert r.status_code == 200
    assert r.json() == {"n": 5}
    assert r.headers["Content-Type"].startswith("application/json")
    missing = rpc.get("/entities/counter/other")
    assert (missing.status_code, missing.content) == (404, b"")


def test_an_entity_signal_is_accepted_with_its_op_and_body(rpc, engine):
    assert rpc.post("/entities/Counter/k?op=add", json="5").status_code == 202
    assert rpc.post("/entities/counter/k?OP=reset").status_code == 202
    assert rpc.post("/entities/counter/k", content=b"text", headers={}).status_code == 202
    signals = [c for c in engine.calls if c[0] == "signal_entity"]
    assert signals == [
        ("signal_entity", "Counter", "k", "add", "5"),
        ("signal_entity", "counter", "k", "reset", None),
        ("signal_entity", "counter", "k", "", "text"),
    ]


def test_an_entity_signal_with_bad_json_or_to_no_entity_is_400(rpc):
    bad = rpc.post(
        "/entities/counter/k?op=add",
        content=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    assert bad.json()["Message"] == "Invalid JSON content"
    unknown = rpc.post("/entities/nosuch/k?op=add", json=1)
    assert unknown.status_code == 400
    assert "is not an entity function" in unknown.json()["ExceptionMessage"]


def test_listing_entities_is_refused_not_faked(rpc):
    assert rpc.get("/entities/counter").status_code == 501
    assert rpc.delete("/entities/counter/k").status_code == 404


def test_the_public_routes_need_the_system_or_master_key(server, engine):
    engine.instances["i"] = status("i", "Completed")
    base = f"{server.url}/runtime/webhooks/durabletask/instances/i"
    assert httpx.get(base).status_code == 401
    assert httpx.get(base, params={"code": "fn"}).status_code == 401
    assert httpx.get(base, params={"code": "sys"}).status_code == 200
    assert httpx.get(base, headers={"x-functions-key": "master"}).status_code == 200
    assert (
        httpx.get(f"{server.url}/RUNTIME/Webhooks/DurableTask/instances/i?code=sys").status_code
        == 200
    )
    r = httpx.get(base)
    assert r.content == b""
