"""What a neighbour on the same machine can get from a running devhost: nothing without a key.

The Durable management routes on the public listener need the system key (or the master key), as
the host's `/runtime/webhooks/durabletask/...` do, in every spelling of their path; the keyless
API is only on the loopback RPC listener the client binding names (its own port, as the
extension's 127.0.0.1:17071). The state directory and start-up refusals: test_local_state.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from devhost.server import DevHost
from devhost_tests.example_client import EXAMPLE, App


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[DevHost, str]]:
    """A host with one finished instance whose input is a secret."""
    with DevHost(app_dir=EXAMPLE, virtual_time=True) as host:
        app = App(host)
        started = app.start("chain", ["a secret prompt"])
        app.wait(started["id"])
        app.http.close()
        yield host, started["id"]


MANAGEMENT_CALLS = [
    ("GET", "{base}/instances?showInput=true"),
    ("GET", "{base}/instances"),
    ("GET", "{base}/instances/{id}?showHistory=true&showHistoryOutput=true&showInput=true"),
    ("GET", "{base}//instances/{id}"),
    ("POST", "{base}/instances/{id}/terminate?reason=x"),
    ("POST", "{base}/instances/{id}/raiseEvent/approve"),
    ("POST", "{base}/instances/{id}/suspend"),
    ("POST", "{base}/instances/{id}/resume"),
    ("POST", "{base}/instances/{id}/restart"),
    ("DELETE", "{base}/instances/{id}"),
    ("DELETE", "{base}/instances?createdTimeFrom=2000-01-01T00:00:00Z"),
    ("POST", "{base}/orchestrators/chain"),
]
WEBHOOK_SPELLINGS = [
    "/runtime/webhooks/durabletask",
    "/RUNTIME/Webhooks/DurableTask",
    "/runtime/webhooks/durabletask/",
]


@pytest.mark.parametrize("base", WEBHOOK_SPELLINGS)
@pytest.mark.parametrize(("method", "path"), MANAGEMENT_CALLS)
def test_the_public_management_routes_need_the_system_key(running, base, method, path):
    host, instance_id = running
    url = host.url + path.format(base=base.rstrip("/"), id=instance_id)
    for presented in ({}, {"code": ""}, {"code": host.function_key}, {"code": "wrong"}):
        r = httpx.request(method, url, params=presented)
        assert (r.status_code, r.content) == (401, b""), (presented.keys(), url)
    r = httpx.request(method, url, headers={"x-functions-key": host.function_key})
    assert r.status_code == 401


def test_with_the_system_key_the_public_routes_answer(running):
    host, instance_id = running
    base = f"{host.url}/runtime/webhooks/durabletask"
    r = httpx.get(f"{base}/instances/{instance_id}", params={"code": host.system_key})
    assert r.status_code == 200
    assert "a secret prompt" in r.text
    assert httpx.get(f"{base}/instances", params={"code": host.master_key}).status_code == 200


@pytest.mark.parametrize("base", ["/durabletask", "/DurableTask", "/durabletask/"])
@pytest.mark.parametrize(("method", "path"), MANAGEMENT_CALLS)
def test_the_public_listener_has_no_keyless_route(running, base, method, path):
    # Even from loopback: a page in a browser on this machine reaches 127.0.0.1:7071 too.
    host, instance_id = running
    url = host.url + path.format(base=base.rstrip("/"), id=instance_id)
    r = httpx.request(method, url)
    assert r.status_code == 404
    assert "a secret prompt" not in r.text


def test_the_keyless_rpc_listener_stays_for_the_durable_client(running):
    host, instance_id = running
    assert host.rpc_url.startswith("http://127.0.0.1:")
    assert host.rpc_url != host.url
    r = httpx.get(f"{host.rpc_url}/durabletask/instances/{instance_id}")
    assert r.status_code == 200
