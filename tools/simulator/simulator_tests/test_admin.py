"""The /_sim/ control API, over HTTP as another process would use it."""

from __future__ import annotations

import httpx

from simulator.server import Simulator

SMALL = {"model": "gpt-image-2", "prompt": "x", "quality": "low", "output_format": "jpeg"}
AUTH = {"Authorization": "Bearer sk-test"}


def test_queue_list_and_clear_faults(sim: Simulator):
    one = httpx.post(f"{sim.url}/_sim/faults", json={"kind": "http_error", "status": 500})
    many = httpx.post(
        f"{sim.url}/_sim/faults",
        json=[{"kind": "moderation_blocked", "count": 2}, {"kind": "insufficient_quota"}],
    )

    assert one.status_code == 201
    assert many.status_code == 201
    # The parsed specs come back, defaults filled in, not the request's own JSON.
    assert one.json()["added"] == [{"kind": "http_error", "count": 1, "status": 500}]
    assert many.json()["added"][1] == {"kind": "insufficient_quota", "count": 1}
    pending = httpx.get(f"{sim.url}/_sim/faults").json()["pending"]
    assert [(f["kind"], f["count"]) for f in pending] == [
        ("http_error", 1),
        ("moderation_blocked", 2),
        ("insufficient_quota", 1),
    ]
    assert httpx.delete(f"{sim.url}/_sim/faults").json() == {"pending": []}
    assert sim.faults.pending() == []


def test_a_bad_fault_is_a_400_naming_the_field(sim: Simulator):
    response = httpx.post(
        f"{sim.url}/_sim/faults", json=[{"kind": "http_error", "status": 500}, {"kind": "x"}]
    )
    assert response.status_code == 400
    assert "fault [1]" in response.json()["error"]["message"]
    assert sim.faults.pending() == []  # nothing queued from a rejected batch


def test_ledger_since_and_reset(sim: Simulator):
    for _ in range(3):
        httpx.post(f"{sim.url}/v1/images/generations", json=SMALL, headers=AUTH)

    everything = httpx.get(f"{sim.url}/_sim/ledger").json()
    later = httpx.get(f"{sim.url}/_sim/ledger", params={"since": everything[0]["seq"]}).json()

    assert [e["seq"] for e in everything] == [1, 2, 3]
    assert [e["seq"] for e in later] == [2, 3]
    assert all(e["billable"] for e in everything)
    assert "prompt" not in everything[0]["shape"]
    assert httpx.get(f"{sim.url}/_sim/ledger", params={"since": "x"}).status_code == 400
    assert httpx.post(f"{sim.url}/_sim/reset").json() == {"reset": True}
    assert httpx.get(f"{sim.url}/_sim/ledger").json() == []


def test_health(sim: Simulator):
    health = httpx.get(f"{sim.url}/_sim/health").json()
    assert health["status"] == "ok"
    assert health["deployments"] == ["gpt-image-2"]
    assert health["time_scale"] == 1000.0
