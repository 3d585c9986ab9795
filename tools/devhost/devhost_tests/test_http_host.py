"""HTTP functions through devhost's front door: routes, methods, keys, errors, limits, admin."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import httpx
import pytest

from devhost.server import DevHost
from devhost_tests.example_client import EXAMPLE
from loopserver.testing import wait_until

BODY_LIMIT = 65536


@pytest.fixture(scope="module")
def host() -> Iterator[DevHost]:
    previous = os.environ.get("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT")
    os.environ["FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"] = str(BODY_LIMIT)
    try:
        with DevHost(app_dir=EXAMPLE, virtual_time=True) as h:
            yield h
    finally:
        if previous is None:
            os.environ.pop("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", None)
        else:
            os.environ["FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"] = previous


@pytest.fixture
def http(host: DevHost) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=host.url, timeout=30) as client:
        yield client


def test_route_constraints_and_app_settings(http):
    r = http.get("/api/hello/World")
    assert r.status_code == 200
    # EXAMPLE_GREETING comes from local.settings.sample.json (no local.settings.json there).
    assert r.text == "Hello World"
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert http.get("/api/hello/W0rld").status_code == 404


def test_optional_parameters_query_and_case_insensitive_literals(http):
    assert http.get("/api/items").json()["route"] == {"id": None}
    body = http.get("/API/Items/5", params={"q": "x"}).json()
    assert body["route"] == {"id": "5"}
    assert body["query"] == {"q": "x"}
    assert body["method"] == "GET"
    assert http.get("/api/items/five").status_code == 404
    assert http.delete("/api/items/5").json()["method"] == "DELETE"  # no methods = all


def test_catch_all_and_the_route_prefix(http):
    assert http.get("/api/files/a/b/c.txt").json() == {"path": "a/b/c.txt"}
    assert http.get("/hello/World").status_code == 404


def test_a_method_mismatch_is_404(http):
    assert http.get("/api/echo").status_code == 404
    assert http.post("/api/echo", content=b"\x00\x01").content == b"\x00\x01"


def test_function_level_needs_a_function_or_master_key(http, host):
    url = "/api/status/nosuch"
    r = http.get(url)
    assert r.status_code == 401
    assert r.content == b""
    assert http.get(url, params={"code": host.function_key}).status_code == 404  # ran: not found
    assert http.get(url, headers={"x-functions-key": host.function_key}).status_code == 404
    assert http.get(url, headers={"x-functions-key": host.master_key}).status_code == 404
    assert http.get(url, params={"code": host.system_key}).status_code == 401
    # The header wins over ?code=.
    wrong_header = {"x-functions-key": "wrong"}
    assert (
        http.get(url, params={"code": host.function_key}, headers=wrong_header).status_code == 401
    )


def test_admin_level_needs_the_master_key(http, host):
    assert http.get("/api/admin-only", params={"code": host.function_key}).status_code == 401
    r = http.get("/api/admin-only", params={"code": host.master_key})
    assert r.status_code == 200
    assert r.text == "admin ok"


def test_an_unhandled_exception_is_an_empty_500_with_the_traceback_in_the_log(http, caplog):
    with caplog.at_level(logging.ERROR, logger="devhost"):
        r = http.get("/api/boom")
    assert r.status_code == 500
    assert r.content == b""
    assert "secret detail that must not reach the caller" in caplog.text
    assert "Traceback" in caplog.text


def test_a_body_over_the_limit_is_413(http):
    assert http.post("/api/echo", content=b"x" * (BODY_LIMIT + 1)).status_code == 413
    assert http.post("/api/echo", content=b"x" * BODY_LIMIT).status_code == 200


def test_the_host_answers_at_the_root_and_reports_its_state(http, host):
    assert http.get("/").status_code == 200
    assert http.get("/admin/host/status").status_code == 401
    r = http.get("/admin/host/status", headers={"x-functions-key": host.master_key})
    assert r.json()["state"] == "Running"


def test_run_on_startup_fired_and_a_manual_run_goes_through_admin(http, host):
    def tick_calls() -> int:
        return int(http.get("/api/calls/tick").json()["calls"])

    assert tick_calls() == 1  # run_on_startup
    master = {"x-functions-key": host.master_key}
    assert http.post("/admin/functions/tick", json={"input": ""}).status_code == 401
    fn_key = {"x-functions-key": host.function_key}
    assert http.post("/admin/functions/tick", json={"input": ""}, headers=fn_key).status_code == 401
    assert http.post("/admin/functions/tick", headers=master).status_code == 400
    assert (
        http.post("/admin/functions/nosuch", json={"input": ""}, headers=master).status_code == 404
    )
    r = http.post("/admin/functions/TICK", json={"input": ""}, headers=master)
    assert r.status_code == 202
    assert r.content == b""
    wait_until(lambda: tick_calls() == 2, what="the manual timer run")
    # Only timer functions run this way; anything else is refused, never faked.
    assert (
        http.post("/admin/functions/hello", json={"input": ""}, headers=master).status_code == 501
    )
