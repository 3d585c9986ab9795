"""What the batch tests share: manifests, a batch followed to its end, its report read back, the
item jobs' records against the simulator's ledger, and a look at devhost's durable store.

A batch's item jobs are found from its report (one line per manifest line, the job id on each
valid one), their route request ids from their metadata.json, and their ledger entries by those
request ids: the ledger never names a job.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from devhost.keys import load_or_create_keys

from .conftest import PROMPT, Api

# The fields of every valid line: a 1024x1024 low image with one partial image.
ITEM: dict[str, Any] = {"size": "1024x1024", "quality": "low", "partial_images": 1}
# Counts of GET /api/batches/{id} that never go down while a batch runs (notStarted and running
# do: items start and end).
GROWING = ("items", "invalid", "saved", "failed", "cancelled")
ENDED = ("saved", "failed", "cancelled")


def item(custom_id: str, **fields: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "prompt": f"{PROMPT} ({custom_id})", **ITEM, **fields}


def items(count: int, prefix: str, **fields: Any) -> list[dict[str, Any]]:
    return [item(f"{prefix}-{index:03d}", **fields) for index in range(count)]


def jsonl(lines: Iterable[dict[str, Any] | str]) -> bytes:
    """A manifest: JSON objects one per line, a text line as it is (a line that is no JSON)."""
    text = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    return ("\n".join(text) + "\n").encode()


def post_jsonl(
    api: Api,
    manifest: bytes,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return api.http.post(
        "/api/batches",
        content=manifest,
        params=params,
        headers={"content-type": "application/jsonl", **(headers or {})},
    )


def started(response: httpx.Response) -> str:
    assert response.status_code == 202, response.text
    batch_id: str = response.json()["id"]
    return batch_id


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: str | None


@dataclass
class BatchRun:
    """Every answer GET /api/batches/{id} gave until the batch ended."""

    batch_id: str
    answers: list[Answer] = field(default_factory=list)

    @property
    def final(self) -> dict[str, Any]:
        return self.answers[-1].body

    def running(self) -> list[Answer]:
        return [answer for answer in self.answers if answer.status == 202]


def batch_answer(api: Api, batch_id: str) -> Answer:
    response = api.http.get(f"/api/batches/{batch_id}")
    assert response.status_code in (200, 202), response.text
    return Answer(response.status_code, response.json(), response.headers.get("retry-after"))


def follow(
    api: Api, batch_id: str, *, timeout_s: float = 60.0, interval_s: float = 0.2
) -> BatchRun:
    run = BatchRun(batch_id)
    deadline = time.monotonic() + timeout_s
    while True:
        answer = batch_answer(api, batch_id)
        run.answers.append(answer)
        if answer.status == 200:
            return run
        assert time.monotonic() < deadline, f"batch {batch_id} did not end: {answer.body}"
        time.sleep(interval_s)


def check_progress(run: BatchRun, *, seen_running: bool = True) -> None:
    """While it runs: 202 with a Retry-After, counts that only grow; once ended, 200 without.
    ``seen_running``: the batch was followed from its start (some answer came while it ran)."""
    if seen_running:
        assert run.running(), "no answer came while the batch ran"
    for answer in run.running():
        assert answer.retry_after is not None, answer
        assert answer.retry_after.isdecimal(), answer
        assert int(answer.retry_after) >= 1
        assert answer.body["report"] is None
    last = run.answers[-1]
    assert last.status == 200
    assert last.retry_after is None
    counts = [answer.body["counts"] for answer in run.answers]
    for before, after in itertools.pairwise(counts):
        for name in GROWING:
            assert after[name] >= before[name], (name, before, after)
        started_before = before["items"] - before["notStarted"]
        assert after["items"] - after["notStarted"] >= started_before, (before, after)
        assert sum(after[n] for n in ENDED) >= sum(before[n] for n in ENDED), (before, after)
    costs = [answer.body["costUsd"] for answer in run.answers]
    assert costs == sorted(costs), costs
    progress = [answer.body["progress"] or 0.0 for answer in run.answers]
    assert progress == sorted(progress), progress


@dataclass(frozen=True)
class Report:
    """The report's lines, from its JSONL and its CSV (both read through their links)."""

    lines: list[dict[str, Any]]
    csv_rows: list[dict[str, str]]

    def jobs(self) -> list[str]:
        return [line["job_id"] for line in self.lines if line["job_id"]]

    def by_state(self, state: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["state"] == state]


def read_report(final: dict[str, Any]) -> Report:
    links = final["report"]
    assert links is not None, final
    got_jsonl = httpx.get(links["jsonl"])
    got_csv = httpx.get(links["csv"])
    assert got_jsonl.status_code == 200, got_jsonl.text
    assert got_csv.status_code == 200, got_csv.text
    lines = [json.loads(line) for line in got_jsonl.text.splitlines() if line]
    rows = list(csv.DictReader(io.StringIO(got_csv.text)))
    # The CSV says what the JSONL says, line for line.
    assert [r["line"] for r in rows] == [str(line["line"]) for line in lines]
    for row, line in zip(rows, lines, strict=True):
        assert row["custom_id"] == line["custom_id"]
        assert row["state"] == line["state"]
        assert row["job_id"] == (line["job_id"] or "")
    return Report(lines, rows)


def is_options(line: dict[str, Any] | str) -> bool:
    return isinstance(line, dict) and set(line) == {"batch"}


def check_report_lines(report: Report, manifest: list[dict[str, Any]] | list[Any]) -> None:
    """One line per manifest line (an options line is none), in manifest order, each with its
    own custom_id."""
    numbered = [(n, source) for n, source in enumerate(manifest, start=1) if not is_options(source)]
    assert [line["line"] for line in report.lines] == [n for n, _ in numbered]
    for line, (_, source) in zip(report.lines, numbered, strict=True):
        if isinstance(source, dict) and "custom_id" in source:
            assert line["custom_id"] == source["custom_id"], (line, source)


def check_totals(report: Report, final: dict[str, Any]) -> None:
    """The report's totals are the batch's final counts."""
    counts = final["counts"]
    states = [line["state"] for line in report.lines]
    assert counts["invalid"] == states.count("invalid")
    assert counts["items"] == len(states) - states.count("invalid")
    for name in ENDED:
        assert counts[name] == states.count(name), (name, counts)
    assert (counts["notStarted"], counts["running"]) == (0, 0), counts
    assert final["costUsd"] == round(sum(line["cost_usd"] or 0.0 for line in report.lines), 6)


def metadata(api: Api, job_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(api.blob_text(f"{job_id}/metadata.json"))
    return data


def request_ids(meta: dict[str, Any]) -> list[str]:
    """The route's request id of each attempt of a job that reached the route."""
    return [a["request_id"] for a in meta["attempts"] if a["request_id"]]


def ledger_of(
    ledger: list[dict[str, Any]], metas: dict[str, dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Each job's ledger entries (by its attempts' request ids)."""
    owner = {rid: job_id for job_id, meta in metas.items() for rid in request_ids(meta)}
    found: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in metas}
    for entry in ledger:
        job_id = owner.get(entry["request_id"])
        if job_id is not None:
            found[job_id].append(entry)
    return found


class Durable:
    """devhost's durable store, read through its management API (the Durable extension's
    webhooks, with the extension's system key): instances and entity state."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def _client(self) -> httpx.Client:
        keys, _ = load_or_create_keys(self.api.stack.devhost_state)
        return httpx.Client(
            base_url=f"{self.api.stack.devhost_url}/runtime/webhooks/durabletask",
            params={"code": keys.durable_system_key},
            timeout=30.0,
        )

    def instances(self, prefix: str) -> list[dict[str, Any]]:
        with self._client() as client:
            response = client.get("/instances", params={"instanceIdPrefix": prefix, "top": "1000"})
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()
        return found

    def status(self, instance_id: str) -> dict[str, Any] | None:
        with self._client() as client:
            response = client.get(f"/instances/{instance_id}", params={"showHistory": "true"})
        if response.status_code == 404:
            return None
        assert response.status_code in (200, 202), response.text
        found: dict[str, Any] = response.json()
        return found

    def route_state(self, route: str) -> dict[str, Any]:
        """The route entity's state (rules.route_model.RouteState as JSON)."""
        with self._client() as client:
            response = client.get(f"/entities/route/{route}")
        assert response.status_code == 200, response.text
        state: dict[str, Any] = response.json()
        return state
