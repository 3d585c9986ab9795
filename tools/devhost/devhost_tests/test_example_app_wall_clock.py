"""Example DFApp features that need the wall clock: an event must beat its timer.

With virtual time a durable timer fires at once, so an external event could never win; these
tests run on a DevHost with the system clock and long (one day) timers, which never fire here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devhost.server import DevHost
from devhost_tests.example_client import EXAMPLE, App
from loopserver.testing import wait_until


@pytest.fixture(scope="module")
def wall_clock_app() -> Iterator[App]:
    with DevHost(app_dir=EXAMPLE, virtual_time=False) as host:
        client = App(host)
        yield client
        client.http.close()


def test_an_external_event_wins_over_its_timeout(wall_clock_app):
    app = wall_clock_app
    iid = app.start("approval")["id"]
    wait_until(
        lambda: app.status(iid).get("customStatus") == "waiting for approval",
        what="the orchestrator to wait",
    )
    r = app.http.post(f"/api/events/{iid}/Approval", json={"by": "alice"})
    assert r.status_code == 202
    done = app.wait(iid)
    assert done["runtimeStatus"] == "Completed"
    # The SDK's client encodes event data twice; as in Azure, the orchestrator sees JSON text.
    assert done["output"] == {"approved": '{"by": "alice"}'}


def test_suspend_and_resume(wall_clock_app):
    app = wall_clock_app
    iid = app.start("approval")["id"]
    wait_until(
        lambda: app.status(iid).get("customStatus") == "waiting for approval",
        what="the orchestrator to wait",
    )
    assert app.http.post(f"/api/suspend/{iid}").status_code == 202
    assert app.wait(iid, until={"Suspended"})["runtimeStatus"] == "Suspended"
    assert app.http.post(f"/api/resume/{iid}").status_code == 202
    assert app.wait(iid, until={"Running"})["runtimeStatus"] == "Running"
    app.http.post(f"/api/terminate/{iid}")
    assert app.wait(iid)["runtimeStatus"] == "Terminated"


def test_terminate_then_purge(wall_clock_app):
    app = wall_clock_app
    iid = app.start("approval", instance_id="to-terminate")["id"]
    assert iid == "to-terminate"
    app.wait(iid, until={"Running"})
    assert app.http.post(f"/api/terminate/{iid}", params={"reason": "enough"}).status_code == 202
    done = app.wait(iid)
    assert done["runtimeStatus"] == "Terminated"
    assert done["output"] == "enough"
    assert app.http.delete(f"/api/purge/{iid}").json() == {"instancesDeleted": 1}
    assert app.status(iid) == {"found": False}
    assert app.http.delete(f"/api/purge/{iid}").json() == {"instancesDeleted": 0}


def test_starting_a_running_id_again_fails_and_a_finished_one_is_replaced(wall_clock_app):
    app = wall_clock_app
    app.start("approval", instance_id="dup")
    app.wait("dup", until={"Running"})
    r = app.http.post("/api/orchestrators/approval/dup")
    assert r.status_code == 500  # the SDK raises; the host turns that into a 500
    app.http.post("/api/terminate/dup")
    app.wait("dup")
    app.start("approval", instance_id="dup")
    assert app.wait("dup", until={"Running"})["runtimeStatus"] == "Running"
    app.http.post("/api/terminate/dup")
