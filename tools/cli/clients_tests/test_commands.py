"""list, evidence, compare and generate --image against a scripted service: paging and where
the next page is asked, the packet in JSON and Markdown with the local time zone, the matrix's
percentiles, CSV rows and a PNG that opens."""

from __future__ import annotations

import csv
import itertools
import json
import threading
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from PIL import Image

from clients.api import ExitCode
from clients.compare import Cell, matrix, percentile, summarize
from clients.evidence import markdown, with_local_moment
from clients_tests.fakes import JOB, SERVICE, Service, error, run_cli, saved

# --- list ------------------------------------------------------------------------------------


def page(ids: list[str], next_token: str | None, host: str = SERVICE) -> httpx.Response:
    items = [
        {"id": i, "state": "saved", "createdAt": "2026-05-07T13:46:12.000Z", "statusUrl": "u"}
        for i in ids
    ]
    following = f"{host}/api/images?limit=2&after={next_token}" if next_token else None
    return httpx.Response(200, json={"items": items, "next": following})


def test_list_shows_the_newest_jobs_and_asks_the_next_page_of_its_own_service():
    service = Service(
        lists=[page(["img-a", "img-b"], "t1", host="http://elsewhere.test"), page(["img-c"], None)]
    )
    run = run_cli(service, "list", "--limit", "3", width=100)
    assert run.code == ExitCode.OK, run.err
    assert [line.split()[0] for line in run.out.splitlines()[1:4]] == ["img-a", "img-b", "img-c"]
    asked = service.requests("GET", "/api/images")
    assert [dict(r.url.params) for r in asked] == [{"limit": "3"}, {"limit": "1", "after": "t1"}]
    assert {r.url.host for r in asked} == {"service.test"}  # never the next URL's own host
    assert "3 jobs, newest first" in run.out


def test_list_all_follows_every_page_and_json_prints_the_items():
    service = Service(lists=[page(["img-a"], "t1"), page(["img-b"], "t2"), page(["img-c"], None)])
    run = run_cli(service, "list", "--all", "--json")
    assert run.code == ExitCode.OK
    assert [item["id"] for item in run.json()] == ["img-a", "img-b", "img-c"]
    assert all(r.url.params["limit"] == "100" for r in service.requests("GET", "/api/images"))


def test_list_says_when_there_are_more_and_when_there_are_none():
    more = run_cli(Service(lists=[page(["img-a"], "t1")]), "list", "--limit", "1", width=200)
    assert "1 job, newest first; more:" in more.out
    assert "list --limit 2" in more.out
    assert run_cli(Service(lists=[page([], None)]), "list").out.strip() == "no jobs"


def test_a_list_refused_to_the_shared_caller_is_the_services_403_not_a_key_problem():
    refused = error(403, "identity_required", "x-ms-client-principal-id", "an identity is needed")
    run = run_cli(Service(lists=[refused]), "list")
    assert run.code == ExitCode.REFUSED
    assert "HTTP 403 identity_required (field x-ms-client-principal-id)" in run.err
    assert "function key" not in run.err


# --- evidence -------------------------------------------------------------------------------

PACKET: dict[str, Any] = {
    "v": 1,
    "id": JOB,
    "generatedAt": "2026-05-07T13:50:00.000Z",
    "complete": True,
    "state": "failed",
    "failure": "returned_error",
    "moment": {
        "timezone": "UTC",
        "createdAt": "2026-05-07T13:45:59.000Z",
        "firstSendAt": "2026-05-07T13:46:00.000Z",
        "lastSendAt": "2026-05-07T13:46:06.000Z",
        "finishedAt": "2026-05-07T13:46:12.000Z",
        "occurrence": "one job, 2 attempts; failed 2 times: server_error x1, rejected x1",
    },
    "route": {
        "name": "azure",
        "owner": "azure",
        "model": "gpt-image-2",
        "api": "Image API",
        "endpoint": "generations",
        "host": "[ip]:8089",
        "path": "/openai/deployments/gpt-image-2/images/generations",
        "deployment": "gpt-image-2",
        "apiVersion": "2025-04-01-preview",
        "stream": True,
        "partialImages": 1,
    },
    "request": {"size": "1024x1024", "quality": "low", "promptChars": 47},
    "sentAs": [],
    "priority": "interactive",
    "timings": {"requestStartedAt": "2026-05-07T13:46:06.000Z", "firstByteMs": 400},
    "timeoutLayer": None,
    "retries": {"count": 1, "reasons": ["server_error: retry"], "postSendResends": 0},
    "returned": {
        "httpStatus": 400,
        "error": {"kind": "rejected", "layer": "route", "code": "moderation_blocked"},
        "requestIds": ["req_1", "req_2"],
        "rateLimit": {},
    },
    "attempts": [{"attempt": 1, "outcome": "server_error", "decision": {"retry": True}}],
    "cost": {"usd": None, "estimated": False},
    "service": {"name": "gpt-image-durable", "version": "0.1.0"},
    "infrastructure": {"host": "devhost", "localStandIns": ["Azurite (Blob Storage)"]},
    "reproduction": {"curl": "curl -sS x | y", "python": "import os\n", "notes": ["n"]},
    "withheld": ["keys and tokens"],
}


def test_evidence_as_json_is_the_packet_with_the_local_time_zone_added():
    service = Service(evidences=[httpx.Response(200, json=PACKET)])
    run = run_cli(service, "evidence", JOB, "--format", "json")
    assert run.code == ExitCode.OK, run.err
    printed = run.json()
    local = printed["moment"].pop("local")
    assert printed == PACKET
    assert local["utcOffset"].startswith(("+", "-"))
    assert service.requests("GET", "/evidence")[0].url.path == f"/api/images/{JOB}/evidence"


def test_the_local_moments_are_in_the_zone_asked_for():
    berlin = with_local_moment(PACKET, ZoneInfo("Europe/Berlin"))["moment"]["local"]
    assert berlin["timezone"] == "CEST"
    assert berlin["utcOffset"] == "+02:00"
    assert berlin["finishedAt"] == "2026-05-07T15:46:12.000+02:00"
    assert "local" not in PACKET["moment"]  # the answer itself is left as it came


def test_evidence_as_markdown_has_every_part_of_the_packet(tmp_path):
    service = Service(evidences=[httpx.Response(200, json=PACKET)])
    out = tmp_path / "evidence.md"
    run = run_cli(service, "evidence", JOB, "--out", str(out))
    assert run.code == ExitCode.OK, run.err
    assert f"written to {out}" in run.out
    text = out.read_text()
    for section in (
        "# Escalation packet: image job",
        "## Time",
        "## Route",
        "## Request shape",
        "## Timing",
        "### Attempts",
        "## Returned evidence",
        "## Local infrastructure",
        "## Reproduction",
        "## Withheld",
    ):
        assert section in text, section
    assert "curl -sS x \\| y" not in text  # the reproduction is a code block, not a cell
    assert "```sh\ncurl -sS x | y\n```" in text
    assert "`req_1`, `req_2`" in text


def test_markdown_escapes_table_cells():
    packet = {**PACKET, "request": {"note": "a | b\nc"}}
    assert "| note | a \\| b c |" in markdown(packet)


def test_evidence_of_an_unknown_job_is_the_404_line():
    missing = error(404, "not_found", "id", f"no image job {JOB}")
    run = run_cli(Service(evidences=[missing]), "evidence", JOB)
    assert run.code == ExitCode.REFUSED
    assert "HTTP 404 not_found (field id)" in run.err


# --- compare --------------------------------------------------------------------------------


class Matrix:
    """A service that runs every started job at once: saved with clocks by its route, or
    refused for one size; it counts the jobs and their idempotency keys."""

    def __init__(self) -> None:
        self.count = itertools.count(1)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.keys: list[str] = []
        self.lock = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/routes":
            routes = [{"route": "azure"}, {"route": "openai"}]
            return httpx.Response(200, json={"asOf": "x", "routes": routes})
        if request.method == "POST" and path == "/api/images":
            body = json.loads(request.content)
            if body["size"] == "7x7":
                return error(400, "invalid_value", "size", "size must be ...")
            with self.lock:
                job = f"img-{next(self.count):024x}-1"
                self.jobs[job] = body
                self.keys.append(request.headers["idempotency-key"])
            return httpx.Response(
                202, json={"id": job, "state": "queued"}, headers={"retry-after": "0"}
            )
        job = path.rsplit("/", 1)[-1]
        body = self.jobs[job]
        slow = 2 if body["route"] == "openai" else 1
        timings = {"firstByteMs": 100 * slow, "firstPartialImageMs": 200 * slow}
        timings["finalImageMs"] = 900 * slow
        answer = {"id": job, "state": "saved", "attempt": 1, "timings": timings, "costUsd": 0.01}
        return httpx.Response(200, json=answer)


def test_compare_runs_the_matrix_and_writes_the_csv_and_the_chart(tmp_path):
    service = Matrix()
    csv_path, chart = tmp_path / "out" / "c.csv", tmp_path / "out" / "c.png"
    run = run_cli(
        Service(),
        "compare",
        "--route",
        "azure,openai",
        "--runs",
        "3",
        "--concurrency",
        "3",
        "--poll-interval",
        "0.05",
        "--csv",
        str(csv_path),
        "--chart",
        str(chart),
        transport=httpx.MockTransport(service.handle),
        width=100,
    )
    assert run.code == ExitCode.OK, run.err
    assert len(service.jobs) == 6
    assert len(set(service.keys)) == 6  # each run its own job, never folded by dedup
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["route"], r["runs"], r["saved"], r["success_rate"]) for r in rows] == [
        ("azure", "3", "3", "1.0000"),
        ("openai", "3", "3", "1.0000"),
    ]
    assert rows[0]["first_byte_p50_ms"] == "100.0"
    assert rows[1]["final_image_p95_ms"] == "1800.0"
    assert float(rows[0]["total_p50_ms"]) >= 0
    assert rows[0]["cost_usd"] == "0.03"
    runs = list(csv.DictReader((tmp_path / "out" / "c-runs.csv").open()))
    assert len(runs) == 6
    assert {r["state"] for r in runs} == {"saved"}
    with Image.open(chart) as picture:
        assert picture.format == "PNG"
        assert picture.size[0] > 400
    assert "azure/low/1024x1024/png" in run.out
    assert "[6/6]" in run.out  # not a terminal: one line per finished run


def test_a_refused_cell_is_counted_as_errors_and_the_others_still_run(tmp_path):
    service = Matrix()
    run = run_cli(
        Service(),
        "compare",
        "--size",
        "1024x1024,7x7",
        "--runs",
        "2",
        "--poll-interval",
        "0.05",
        "--csv",
        str(tmp_path / "c.csv"),
        "--chart",
        str(tmp_path / "c.png"),
        transport=httpx.MockTransport(service.handle),
    )
    assert run.code == ExitCode.OK, run.err
    rows = {r["size"]: r for r in csv.DictReader((tmp_path / "c.csv").open())}
    assert rows["7x7"]["saved"] == "0"
    assert rows["7x7"]["errors"] == "client:refused=2"
    assert rows["1024x1024"]["saved"] == "2"
    assert "HTTP 400 invalid_value (field size)" in run.err


def test_compare_refuses_a_route_the_service_does_not_have(tmp_path):
    run = run_cli(
        Service(),
        "compare",
        "--route",
        "azure,nowhere",
        "--csv",
        str(tmp_path / "c.csv"),
        transport=httpx.MockTransport(Matrix().handle),
    )
    assert run.code == ExitCode.USAGE
    assert "no route nowhere in the service (it has azure, openai)" in run.err
    assert not (tmp_path / "c.csv").exists()


def test_the_matrix_is_every_combination_in_order():
    cells = matrix(["a", "b"], ["low"], ["1024x1024"], ["png", "jpeg"])
    assert [c.label for c in cells] == [
        "a/low/1024x1024/png",
        "a/low/1024x1024/jpeg",
        "b/low/1024x1024/png",
        "b/low/1024x1024/jpeg",
    ]


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [([], 50, None), ([7], 95, 7), ([1, 2], 50, 1.5), ([1, 2], 95, 1.95), ([4, 1, 3, 2], 50, 2.5)],
)
def test_percentiles_interpolate_between_ranks(values, p, expected):
    assert percentile(values, p) == (None if expected is None else pytest.approx(expected))


def test_summaries_count_errors_by_kind_and_skip_missing_clocks():
    from clients.compare import RunResult

    cell = Cell("azure", "low", "1024x1024", "png")
    results = [
        RunResult(cell, 1, "j1", "saved", None, first_byte_ms=100, total_ms=900, cost_usd=0.01),
        RunResult(cell, 2, "j2", "failed", "server_error", first_byte_ms=300),
        RunResult(cell, 3, "j3", "failed", "server_error"),
    ]
    (summary,) = summarize(results)
    assert summary.saved == 1
    assert summary.success_rate == pytest.approx(1 / 3)
    assert summary.errors == {"server_error": 2}
    assert summary.clocks["first_byte_ms"][50] == 200
    assert summary.clocks["first_partial_ms"][50] is None
    assert summary.cost_usd == 0.01


# --- generate --image -----------------------------------------------------------------------


def test_generate_image_is_another_name_for_out(tmp_path):
    service = Service(polls=[saved()])
    target = tmp_path / "apple.png"
    run = run_cli(service, "generate", "--prompt", "a red apple", "--wait", "--image", str(target))
    assert run.code == ExitCode.OK, run.err
    assert target.exists()
    assert f"saved to {target}" in run.out
