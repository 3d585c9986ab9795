"""Durable entities on devhost over real HTTP: the example app's Counter entity, signalled by the
SDK's client, called by an orchestration, read back; serialized under concurrency."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.durable_functions as df
import httpx
import pytest

from devhost.clock import VirtualClock
from devhost.entities import EntityFunction, EntityRunner
from devhost.server import DevHost
from devhost.store import Store
from devhost_tests.example_client import EXAMPLE, App
from loopserver.testing import wait_until


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    with DevHost(app_dir=EXAMPLE, virtual_time=True) as host:
        client = App(host)
        yield client
        client.http.close()


def signal(app: App, key: str, op: str, value: Any = None) -> None:
    path = f"/api/entities/Counter/{key}/{op}"
    r = app.http.post(path, json=value) if value is not None else app.http.post(path)
    assert r.status_code == 202, r.text


def read(app: App, key: str, name: str = "Counter") -> dict[str, Any]:
    r = app.http.get(f"/api/entities/{name}/{key}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def wait_state(app: App, key: str, value: Any) -> None:
    wait_until(
        lambda: read(app, key) == {"exists": True, "state": value},
        timeout=30,
        what=f"Counter {key} to hold {value!r}",
    )


def test_a_client_signals_and_reads_the_state(app):
    assert read(app, "client") == {"exists": False, "state": None}
    signal(app, "client", "add", 5)
    signal(app, "client", "add", 2)
    wait_state(app, "client", 7)
    signal(app, "client", "reset")
    wait_state(app, "client", 0)
    # The entity name is case-insensitive; the key is not.
    assert read(app, "client", name="counter") == {"exists": True, "state": 0}
    assert read(app, "CLIENT") == {"exists": False, "state": None}


def test_an_orchestration_signals_and_calls_the_entity(app):
    done = app.wait(app.start("entity_calls", "orch")["id"])
    assert done["runtimeStatus"] == "Completed", done
    assert done["output"] == {
        "after_add": 3,  # the signal sent first was processed first
        "value": 3,
        "error": "the counter refuses",
        "both": [13, 113],
    }
    wait_state(app, "orch", 113)


def test_the_history_shows_event_sent_and_the_answer_raised(app):
    started = app.start("entity_calls", "history")
    app.wait(started["id"])
    kinds = [e["EventType"] for e in app.status(started["id"], history=True)["historyEvents"]]
    assert kinds[:5] == ["ExecutionStarted", "EventSent", "EventSent", "EventRaised", "EventSent"]
    assert kinds.count("EventSent") == 6
    assert kinds.count("EventRaised") == 5


def test_a_call_to_an_entity_the_app_lacks_fails_the_orchestration(app):
    done = app.wait(app.start("calls_no_entity")["id"])
    assert done["runtimeStatus"] == "Failed"
    assert "'nosuchentity' doesn't exist" in str(done["output"])


def test_fifty_concurrent_signals_are_serialized(app):
    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(lambda _: signal(app, "many", "add", 1), range(50)))
    wait_state(app, "many", 50)


def test_the_public_webhook_routes_with_the_system_key(app):
    base = f"{app.host.url}/runtime/webhooks/durabletask/entities/Counter/hook"
    code = {"code": app.host.system_key}
    assert httpx.get(base, params=code).status_code == 404
    assert httpx.post(base, params={**code, "op": "add"}, json="4").status_code == 202
    assert httpx.post(base, params={"op": "add"}, json="4").status_code == 401
    wait_state(app, "hook", 4)
    r = httpx.get(base, params=code)
    assert (r.status_code, r.json()) == (200, 4)
    unknown = httpx.post(
        f"{app.host.url}/runtime/webhooks/durabletask/entities/nosuch/k",
        params={**code, "op": "add"},
        json="1",
    )
    assert unknown.status_code == 400


# --- the entity runner on its own: batching and a function that fails as a whole -------------


def run_batches(handle: Any, ops: int, state: str | None = None) -> tuple[Store, list[int]]:
    store = Store(":memory:")
    sizes: list[int] = []

    def counting(context: Any) -> Any:
        sizes.append(len(json.loads(context.body)["batch"]))
        return handle(context)

    runner = EntityRunner(
        store=store,
        entities={"counter": EntityFunction("Counter", counting)},
        clock=VirtualClock(),
        log=logging.getLogger("test"),
        kick=lambda _id: None,
        changed_now=lambda _id: None,
        max_batch=4,
    )
    with store.transaction():
        if state is not None:
            store.put_entity("@counter@k", state, "2024-01-01T00:00:00+00:00")
        for _ in range(ops):
            store.add_entity_op("@counter@k", "add", json.dumps("1"))

    async def drain() -> None:
        while await runner.run("@counter@k"):
            pass

    asyncio.run(drain())
    return store, sizes


def counter_handle() -> Any:
    def counter(ctx: Any) -> None:
        ctx.set_state(ctx.get_state(lambda: 0) + ctx.get_input())

    return df.Entity.create(counter)


def test_operations_go_in_batches_of_at_most_max_batch():
    store, sizes = run_batches(counter_handle(), 10)
    assert sizes == [4, 4, 2]
    assert store.get_entity("@counter@k") == "10"
    assert store.entities_with_ops() == []


def test_a_function_that_fails_as_a_whole_fails_the_batch_and_keeps_the_state():
    async def not_sync(context: Any) -> str:  # an async entity function cannot be hosted
        return "{}"

    store, _sizes = run_batches(not_sync, 2, state="5")
    assert store.get_entity("@counter@k") == "5"
    assert store.entities_with_ops() == []
