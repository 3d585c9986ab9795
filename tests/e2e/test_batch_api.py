"""A batch whose deadline allows it goes through the route's Batch API (the simulator's, which
the official SDK's files and batches calls pass against): every image stored as a normal job's,
billed at the batch price, and the report's totals equal to the simulator's ledger."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from .conftest import Api

STACK = {"extra_env": {"IMAGE_ROUTE_OPENAI_BATCH_API": "true"}}


def manifest(count: int, tag: str) -> str:
    deadline = (datetime.now(UTC) + timedelta(hours=30)).isoformat()
    lines = [json.dumps({"batch": {"deadline": deadline, "route": "openai"}})]
    lines += [
        json.dumps(
            {"custom_id": f"{tag}-{i}", "prompt": f"a lighthouse {tag} {i}", "quality": "low"}
        )
        for i in range(count)
    ]
    return "\n".join(lines) + "\n"


def run(api: Api, body: str, *, timeout_s: float = 120.0) -> dict[str, Any]:
    started = api.http.post(
        "/api/batches", content=body, headers={"content-type": "application/jsonl"}
    )
    assert started.status_code == 202, started.text
    assert started.json()["mode"] == "batch_api"
    url = started.json()["statusUrl"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = api.http.get(url)
        assert answer.status_code in (200, 202), answer.text
        if answer.status_code == 200:
            result: dict[str, Any] = answer.json()
            return result
        time.sleep(0.2)
    raise AssertionError(f"batch did not end: {answer.text}")


def report(final: dict[str, Any]) -> list[dict[str, Any]]:
    text = httpx.get(final["report"]["jsonl"]).text
    return [json.loads(line) for line in text.splitlines()]


def test_a_deadline_batch_goes_through_the_batch_api_at_the_batch_price(api: Api):
    mark = api.ledger_mark()
    final = run(api, manifest(6, "api"))
    assert (final["state"], final["mode"]) == ("completed", "batch_api")
    assert final["counts"]["saved"] == 6
    lines = report(final)
    assert [line["state"] for line in lines] == ["saved"] * 6
    assert {line["billing"] for line in lines} == {"batch"}
    ledger = [e for e in api.ledger(mark) if e.get("billing") == "batch"]
    assert len(ledger) == 6
    assert all(e["billable"] for e in ledger)
    # What the report says the batch cost is what the route billed: half the synchronous price.
    assert sum(line["cost_usd"] for line in lines) == pytest.approx(
        sum(e["cost_usd"] for e in ledger), abs=1e-6
    )
    assert final["costUsd"] == pytest.approx(sum(e["cost_usd"] for e in ledger), abs=1e-6)
    assert final["costUsd"] <= final["quote"]["batchApiUsd"] + 1e-9
    # Each image is a normal job's: its status answers its caller, its image is stored.
    job = api.status(lines[0]["job_id"])
    assert job.status_code == 200
    assert job.json()["state"] == "saved"
    assert httpx.get(job.json()["image"]["url"]).status_code == 200
    assert "lighthouse" not in job.text


def test_an_expired_batch_stores_what_it_finished_and_fails_the_rest(api: Api):
    api.sim.post("/_sim/faults", json={"kind": "batch_expire", "after_items": 2})
    final = run(api, manifest(5, "exp"))
    assert final["state"] == "completed"
    states = [line["state"] for line in report(final)]
    assert states.count("saved") == 2
    assert states.count("failed") == 3
    failed = [line for line in report(final) if line["state"] == "failed"]
    assert all(line["error"] for line in failed)


def test_the_same_deadline_batch_posted_twice_is_one_upstream_batch(api: Api):
    body = manifest(2, "twice")
    first = run(api, body)
    again = api.http.post(
        "/api/batches", content=body, headers={"content-type": "application/jsonl"}
    )
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first["id"]
    upstream = [
        b
        for b in api.sim.get("/_sim/batches").json()
        if (b.get("metadata") or {}).get("batch_id") == first["id"]
    ]
    assert len(upstream) == 1
