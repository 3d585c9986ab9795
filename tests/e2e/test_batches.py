"""Batches posted to the API, end to end: a manifest drained at the route's pace and reported
line by line, an interactive job ahead of the batch's queued items, a dry run, a replay, a cancel.

The simulator's Azure deployment takes 30 requests a minute and its OpenAI route 6
(tests/e2e/data/batches.json); the service's routes are set to the same limits, so a 429 in the
ledger is one the route's governor let through. Time scale 25: a minute is 2.4 s, the Azure
route sends one request every 0.08 s, the OpenAI route one every 0.41 s. Nothing here asserts
how fast anything is: only counts, order, and the moments the ledger recorded against the
governor's own lead (rules.pacing.LEAD_S).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from loopserver.testing import wait_until
from rules.pacing import LEAD_S

from .batch_runs import (
    Durable,
    check_progress,
    check_report_lines,
    check_totals,
    follow,
    item,
    items,
    jsonl,
    ledger_of,
    metadata,
    post_jsonl,
    read_report,
    request_ids,
    started,
)
from .conftest import PROMPT, Api

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

TIME_SCALE = 25.0
AZURE_RPM = 30
OPENAI_RPM = 6
STACK = {
    "time_scale": TIME_SCALE,
    "simulator_config": Path(__file__).parent / "data" / "batches.json",
    "extra_env": {
        "IMAGE_ROUTE_AZURE_REQUESTS_PER_MINUTE": str(AZURE_RPM),
        "IMAGE_ROUTE_OPENAI_REQUESTS_PER_MINUTE": str(OPENAI_RPM),
    },
}
TERMINAL = {"saved", "failed", "cancelled"}


@pytest.fixture(scope="module")
def durable(api: Api) -> Durable:
    return Durable(api)


def test_a_manifest_drains_at_the_routes_pace_and_its_report_has_every_line(api: Api):
    manifest: list[dict[str, Any] | str] = [*items(40, "sku")]
    manifest.insert(7, item("bad-size", size="1000x1000"))  # line 8: not a multiple of 16
    manifest.insert(30, item("bad-quality", quality="ultra"))  # line 31
    mark = api.ledger_mark()
    answer = post_jsonl(api, jsonl(manifest))
    batch_id = started(answer)
    plan = answer.json()
    assert (plan["mode"], plan["items"], plan["invalid"]) == ("realtime", 40, 2)
    assert [(e["line"], e["customId"], e["field"]) for e in plan["lineErrors"]] == [
        (8, "bad-size", "size"),
        (31, "bad-quality", "quality"),
    ]

    run = follow(api, batch_id, timeout_s=120)
    check_progress(run)
    final = run.final
    assert final["state"] == "completed"
    assert final["counts"] == {
        "items": 40,
        "invalid": 2,
        "notStarted": 0,
        "running": 0,
        "saved": 40,
        "failed": 0,
        "cancelled": 0,
    }
    assert final["progress"] == 1.0
    assert any(a.body["state"] == "running" and a.body["eta"] for a in run.running())

    report = read_report(final)
    check_report_lines(report, manifest)
    check_totals(report, final)
    assert [
        (line["line"], line["custom_id"], line["job_id"], line["error"].split(":", 1)[0])
        for line in report.by_state("invalid")
    ] == [(8, "bad-size", None, "size"), (31, "bad-quality", None, "quality")]
    assert len(report.by_state("saved")) == 40
    assert len(set(report.jobs())) == 40

    # Every item is a job of its own, the caller's to read, saved with its image.
    metas = {job_id: metadata(api, job_id) for job_id in report.jobs()}
    for line in report.by_state("saved"):
        status = api.status(line["job_id"])
        assert status.status_code == 200, status.text
        assert status.json()["state"] == "saved"
        meta = metas[line["job_id"]]
        assert meta["state"] == "saved"
        assert line["image_blob"] == meta["images"][0]["blob"]
        assert line["cost_usd"] == meta["cost_usd"]
        assert line["attempts"] == len(meta["attempts"]) == 1

    # The route never refused a request; each item reached it once and was billed once.
    ledger = api.ledger(mark)
    assert [e["seq"] for e in ledger if e["status"] == 429] == []
    per_job = ledger_of(ledger, metas)
    assert {job_id: len(entries) for job_id, entries in per_job.items()} == dict.fromkeys(metas, 1)
    billed = [e for entries in per_job.values() for e in entries if e["billable"]]
    completed = [e for e in billed if e["outcome"] == "completed"]
    assert len(completed) == len(billed) == final["counts"]["saved"]
    # The batch's cost is its items' costs, and what the route billed for them.
    item_costs = sum(meta["cost_usd"] for meta in metas.values())
    assert final["costUsd"] == pytest.approx(item_costs, abs=1e-6)
    assert final["costUsd"] == pytest.approx(sum(e["cost_usd"] for e in billed), abs=1e-6)


def test_an_interactive_job_goes_ahead_of_the_batch_items_queued_at_the_route(
    api: Api, durable: Durable
):
    """Which items were queued is read from the governor itself (the route entity's state):
    those queued just before the post and still queued when the interactive job's first ask
    reached it. Each of them reaches the route after the interactive job."""
    mark = api.ledger_mark()
    manifest = [{"batch": {"route": "openai"}}, *items(8, "prio")]
    batch_id = started(post_jsonl(api, jsonl(manifest)))

    def waiting(state: dict[str, Any]) -> set[str]:
        return {w["job_id"] for w in state["pacer"]["queue"] if w["batch_id"] == batch_id}

    # The first item goes at once; the others wait at the governor for their slots.
    queued = wait_until(
        lambda: (
            found
            if api.ledger(mark) and len(found := waiting(durable.route_state("openai"))) >= 4
            else None
        ),
        timeout=30,
        interval=0.01,
        what="the first send and batch items queued at the governor",
    )
    posted = api.start(
        prompt=PROMPT, size="1024x1024", quality="low", partial_images=1, route="openai"
    )
    assert posted.status_code == 202, posted.text
    interactive = posted.json()["id"]

    def arrived() -> dict[str, Any] | None:
        state = durable.route_state("openai")
        pacer = state["pacer"]
        known = {w["job_id"] for w in pacer["queue"]} | {s["job_id"] for s in pacer["slots"]}
        return state if interactive in known else None

    # An item admitted in the moment between the post and the job's arrival may go first: it
    # was no longer queued.
    at_arrival = wait_until(arrived, timeout=10, interval=0.01, what="the interactive job")
    still = queued & waiting(at_arrival)
    assert len(still) >= 2, (queued, at_arrival["pacer"]["queue"])

    statuses = api.poll(interactive, timeout_s=60)
    assert statuses[-1]["state"] == "saved"
    assert {s["queuePosition"] for s in statuses if s.get("queuePosition")} <= {1}
    run = follow(api, batch_id, timeout_s=60)
    assert run.final["state"] == "completed"
    assert run.final["counts"]["saved"] == 8

    metas = {job_id: metadata(api, job_id) for job_id in read_report(run.final).jobs()}
    metas[interactive] = api.metadata(statuses[-1])
    order = {e["request_id"]: e["seq"] for e in api.ledger(mark)}
    sent = {job_id: order[request_ids(meta)[0]] for job_id, meta in metas.items()}
    assert all(sent[interactive] < sent[job_id] for job_id in still), (sent, still)
    assert sum(1 for e in api.ledger(mark) if e["billable"]) == 9


def test_a_dry_run_quotes_both_modes_and_starts_nothing_and_a_replay_is_the_same_batch(
    api: Api, durable: Durable
):
    lines = items(3, "dry")
    before = {i["instanceId"] for i in durable.instances("bat-")}
    mark = api.ledger_mark()

    dry = api.http.post("/api/batches", params={"dryRun": "true"}, json={"items": lines})
    assert dry.status_code == 200, dry.text
    plan = dry.json()
    assert plan["dryRun"] is True
    assert "id" not in plan
    assert "statusUrl" not in plan
    assert (plan["mode"], plan["items"], plan["invalid"]) == ("realtime", 3, 0)
    assert plan["reason"] == "no deadline: runs now, at the route's pace"
    quote = plan["quote"]
    assert quote["realtimeUsd"] > 0
    assert quote["batchApiUsd"] == pytest.approx(quote["realtimeUsd"] / 2)
    assert quote["chosenUsd"] == quote["realtimeUsd"]
    assert quote["realtimeS"] >= 1
    # A deadline: inside the Batch API's window, or beyond it on a route without one; both
    # run in real time, and say why.
    now = datetime.now(UTC)
    for hours, why in ((2, "inside the Batch API's 24 h"), (48, "route azure has no Batch API")):
        deadline = (now + timedelta(hours=hours)).isoformat()
        answer = api.http.post(
            "/api/batches", params={"dryRun": "true", "deadline": deadline}, json={"items": lines}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["mode"] == "realtime"
        assert why in answer.json()["reason"]
        assert answer.json()["quote"] == quote
    # The same manifest as JSON Lines quotes the same.
    as_jsonl = post_jsonl(api, jsonl(lines), params={"dryRun": "true"})
    assert as_jsonl.status_code == 200, as_jsonl.text
    assert as_jsonl.json()["quote"] == quote

    assert {i["instanceId"] for i in durable.instances("bat-")} == before
    # A batch started by mistake would reach the route within its first send's lead.
    time.sleep(LEAD_S + 0.5)
    assert api.ledger(mark) == []
    assert {i["instanceId"] for i in durable.instances("bat-")} == before

    # For real, twice: one batch. The same lines as JSON Lines are the same manifest.
    first = api.http.post("/api/batches", json={"items": lines})
    batch_id = started(first)
    assert "idempotent-replayed" not in first.headers
    assert first.json()["quote"] == quote
    replays = (api.http.post("/api/batches", json={"items": lines}), post_jsonl(api, jsonl(lines)))
    for again in replays:
        assert again.status_code == 202, again.text
        assert again.json()["id"] == batch_id
        assert again.headers["idempotent-replayed"] == "true"
    # An Idempotency-Key names the batch, whatever the manifest.
    keyed = api.http.post(
        "/api/batches", json={"items": items(2, "keyed")}, headers={"Idempotency-Key": "k-1"}
    )
    keyed_id = started(keyed)
    assert keyed_id != batch_id
    other = api.http.post(
        "/api/batches", json={"items": items(3, "other")}, headers={"Idempotency-Key": "k-1"}
    )
    assert (other.json()["id"], other.headers["idempotent-replayed"]) == (keyed_id, "true")

    runs = [follow(api, batch_id), follow(api, keyed_id)]
    assert [r.final["counts"]["saved"] for r in runs] == [3, 2]
    assert {i["instanceId"] for i in durable.instances("bat-")} == before | {batch_id, keyed_id}
    assert len(api.ledger(mark)) == 5


def test_a_cancelled_batch_sends_nothing_after_the_cancel_and_reports_the_rest_cancelled(
    api: Api,
):
    mark = api.ledger_mark()
    manifest = [{"batch": {"route": "openai"}}, *items(30, "cancel")]
    batch_id = started(post_jsonl(api, jsonl(manifest)))
    wait_until(lambda: len(api.ledger(mark)) >= 3, timeout=30, what="the first three sends")
    cancel = api.http.post(f"/api/batches/{batch_id}/cancel")
    answered = time.time()
    assert cancel.status_code == 202, cancel.text
    assert cancel.json()["state"] == "cancelling"

    run = follow(api, batch_id, timeout_s=60)
    check_progress(run)
    final = run.final
    assert final["state"] == "cancelled"
    assert api.http.post(f"/api/batches/{batch_id}/cancel").status_code == 200  # it had ended

    # After the answer, only a send the governor had admitted before it (at most LEAD_S
    # ahead) may still reach the route.
    ledger = api.ledger(mark)
    late = [round(e["received_at"] - answered, 3) for e in ledger if e["received_at"] > answered]
    assert all(seconds <= LEAD_S for seconds in late), late
    assert len(ledger) < 30

    report = read_report(final)
    check_report_lines(report, manifest)
    check_totals(report, final)
    metas = {job_id: metadata(api, job_id) for job_id in report.jobs()}
    per_job = ledger_of(ledger, metas)
    assert sum(len(entries) for entries in per_job.values()) == len(ledger)
    for line in report.lines:
        job_id = line["job_id"]
        entries = per_job[job_id]
        if line["state"] == "saved":
            assert [e["outcome"] for e in entries] == ["completed"], (line, entries)
        elif entries:  # sent, then stopped by the cancel (the route may have finished it)
            assert line["state"] in TERMINAL, line
        else:  # never reached the route: cancelled, with nothing billed
            assert line["state"] == "cancelled", line
            assert not line["cost_usd"], line
        # Every item's job has ended, as its own status says.
        status = api.status(job_id)
        assert status.status_code == 200, status.text
        assert status.json()["state"] == line["state"]
    assert final["counts"]["cancelled"] >= 30 - len(ledger)
    # Whatever the route billed, the job it billed counted: exactly where its answer said so,
    # estimated from the shape where the stream was stopped before the usage came.
    for job_id, entries in per_job.items():
        billed = sum(e["cost_usd"] for e in entries if e["billable"])
        meta = metas[job_id]
        if not billed:
            continue
        assert meta["cost_usd"], meta
        if not meta["cost_estimated"]:
            assert meta["cost_usd"] == pytest.approx(billed, abs=1e-6)
