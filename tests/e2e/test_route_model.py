"""The route's shared model end to end: pace, priority, cool-down, health and a crash.

The simulator's Azure deployment takes 6 requests a minute and its OpenAI route 1
(tests/e2e/data/route-model.json); the service's routes are set to the same limits, so every
429 the simulator would answer is one the route's governor (rules.pacing, held by the route
entity) let through. Time scale 25: a minute is 2.4 s, so the Azure route sends one request
every 0.41 s and the OpenAI route one every 2.45 s. Nothing here asserts how fast anything is:
only counts, order, and the moments the ledger recorded against the rules' own spacing and
cool-down (times are the ledger's ``received_at``, wall seconds on this machine).
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from http_api.status_view import WAITING_FOR_WORKER
from loopserver.testing import wait_until
from rules.pacing import MARGIN

from .conftest import PROMPT, Api

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

TIME_SCALE = 25.0
WINDOW_S = 60.0 / TIME_SCALE
AZURE_RPM = 6
OPENAI_RPM = 1
STACK = {
    "time_scale": TIME_SCALE,
    "simulator_config": Path(__file__).parent / "data" / "route-model.json",
    "extra_env": {
        "IMAGE_ROUTE_AZURE_REQUESTS_PER_MINUTE": str(AZURE_RPM),
        "IMAGE_ROUTE_OPENAI_REQUESTS_PER_MINUTE": str(OPENAI_RPM),
    },
}
SHAPE = "gpt-image-2/1mp/low/png/stream-1"
BODY: dict[str, Any] = {
    "prompt": PROMPT,
    "size": "1024x1024",
    "quality": "low",
    "partial_images": 1,
    "priority": "batch",
}


def spacing_s(rpm: int) -> float:
    """The governor's spacing between two sends of a route (rules.pacing.Limits.spacing_s)."""
    return WINDOW_S / rpm * (1 + MARGIN)


def crowded_gaps(entries: list[dict[str, Any]], rpm: int) -> list[float]:
    """The gaps between consecutive arrivals shorter than half a spacing (a worker may start
    its send a little late, so the next one comes a little early; a burst comes at once)."""
    times = sorted(entry["received_at"] for entry in entries)
    return [round(b - a, 3) for a, b in itertools.pairwise(times) if b - a < spacing_s(rpm) / 2]


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: str | None


@dataclass
class Run:
    """Jobs started together and every status answer each got until it ended."""

    ids: list[str]
    answers: dict[str, list[Answer]] = field(default_factory=dict)

    def final(self, job_id: str) -> dict[str, Any]:
        return self.answers[job_id][-1].body

    def states(self) -> list[str]:
        return [self.final(job_id)["state"] for job_id in self.ids]

    def all_answers(self) -> Iterator[Answer]:
        for answers in self.answers.values():
            yield from answers


def start(api: Api, count: int, *, label: str = "", **body: Any) -> list[str]:
    """``count`` jobs of BODY with ``body``'s fields, prompts of their own (``label`` too)."""
    ids = []
    for index in range(count):
        started = api.start(**{**BODY, **body, "prompt": f"{PROMPT} {label}#{index}"})
        assert started.status_code == 202, started.text
        ids.append(started.json()["id"])
    return ids


def follow(api: Api, ids: list[str], *, timeout_s: float = 60.0) -> Run:
    """Poll every job until each has ended, keeping each answer with its Retry-After."""
    run = Run(list(ids), {job_id: [] for job_id in ids})
    running = set(ids)
    deadline = time.monotonic() + timeout_s
    while running:
        assert time.monotonic() < deadline, {j: run.answers[j][-1].body for j in running}
        for job_id in sorted(running):
            response = api.status(job_id)
            assert response.status_code in (200, 202), response.text
            run.answers[job_id].append(
                Answer(response.status_code, response.json(), response.headers.get("retry-after"))
            )
            if response.status_code == 200:
                running.discard(job_id)
        time.sleep(0.05)
    return run


def request_ids(api: Api, final: dict[str, Any]) -> set[str]:
    """The route's request ids of every attempt of an ended job (its metadata.json)."""
    return {a["request_id"] for a in api.metadata(final)["attempts"] if a.get("request_id")}


def only_request(api: Api, final: dict[str, Any]) -> str:
    """The route's request id of a job that took one attempt."""
    [request_id] = request_ids(api, final)
    return request_id


def route_health(api: Api, route: str) -> dict[str, Any]:
    response = api.http.get("/api/routes")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = next(r for r in response.json()["routes"] if r["route"] == route)
    return found


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    changed = {kind: count - before.get(kind, 0) for kind, count in after.items()}
    return {kind: count for kind, count in changed.items() if count}


@pytest.fixture(scope="module")
def azure_jobs() -> list[str]:
    """Every job this module sent to the Azure route: the route's clocks learn from all of them."""
    return []


def test_jobs_posted_at_once_are_paced_to_the_routes_limit_without_a_429(
    api: Api, azure_jobs: list[str]
):
    mark = api.ledger_mark()
    ids = start(api, 3 * AZURE_RPM)
    azure_jobs.extend(ids)
    run = follow(api, ids)

    assert run.states() == ["saved"] * len(ids)
    ledger = api.ledger(mark)
    assert len(ledger) == len(ids)
    assert [e["status"] for e in ledger if e["status"] == 429] == []
    assert crowded_gaps(ledger, AZURE_RPM) == []
    # Waiting jobs said where they stand, when they expect to end, and when to ask again.
    queued = [
        a for a in run.all_answers() if a.body["state"] == "queued" and a.body["queuePosition"]
    ]
    assert queued, "no answer showed a job queued at the route"
    for answer in queued:
        assert isinstance(answer.body["queuePosition"], int)
        assert 1 <= answer.body["queuePosition"] < len(ids)
        assert datetime.fromisoformat(answer.body["eta"])
        assert answer.body["queueReason"]  # the pace, or the route's headers
    for answer in run.all_answers():
        if answer.status == 202:
            assert answer.retry_after is not None
            assert answer.retry_after.isdecimal()
            assert 1 <= int(answer.retry_after) <= 30


def test_an_interactive_job_goes_ahead_of_the_queued_batch_jobs(api: Api):
    mark = api.ledger_mark()
    batch = start(api, 3, route="openai")

    def waiting() -> list[str]:
        answers = {job_id: api.status(job_id).json() for job_id in batch}
        return [j for j, a in answers.items() if a["state"] == "queued" and a["queuePosition"]]

    # The first goes at once; the other two wait for their slots, 2.45 s apart, in the route's
    # queue. The next of them is admitted a second before its slot: there is time to post.
    wait_until(lambda: api.ledger(mark), timeout=30, what="the first batch job's send")
    queued = wait_until(
        lambda: found if len(found := waiting()) == 2 else None, timeout=10, what="2 queued"
    )
    assert len(api.ledger(mark)) == 1
    interactive = start(api, 1, route="openai", priority="interactive")[0]
    run = follow(api, [*batch, interactive])

    assert run.states() == ["saved"] * 4
    order = [e["request_id"] for e in sorted(api.ledger(mark), key=lambda e: e["seq"])]
    sent = {job_id: order.index(only_request(api, run.final(job_id))) for job_id in run.ids}
    assert all(sent[interactive] < sent[job_id] for job_id in queued), (sent, queued)
    # It was placed first in the queue, ahead of both.
    places = {a.body["queuePosition"] for a in run.answers[interactive] if a.body["queuePosition"]}
    assert places <= {1}


def sent_since(api: Api, mark: int, seen: int) -> bool:
    """Whether the route received more than ``seen`` requests after ledger mark ``mark``."""
    return len(api.ledger(mark)) > seen


def admitted_one(api: Api, ids: tuple[str, ...]) -> str | None:
    """The first of ``ids`` its route admitted that waits for its worker to send, if any."""
    for job_id in ids:
        if api.status(job_id).json()["queueReason"] == WAITING_FOR_WORKER:
            return job_id
    return None


def test_an_interactive_job_is_given_the_slot_a_batch_job_was_admitted_to_but_had_not_sent(
    api: Api,
):
    """A batch job is admitted a lead (0.61 s here) before its slot; an interactive job posted
    then is given that slot, claims it first, and the batch job sends in the next one. Each
    round races the host's own latency (post, start, ask, claim within the lead): at least one
    of three rounds must win it; in every round each job is sent exactly once, the pace holds
    and no 429 comes."""
    before = route_health(api, "openai")
    mark = api.ledger_mark()
    won = 0
    jobs: list[str] = []
    for round_ in range(3):
        seen = len(api.ledger(mark))
        first, second = start(api, 2, route="openai", label=f"round {round_} ")
        wait_until(
            functools.partial(sent_since, api, mark, seen), timeout=30, what="the first send"
        )
        # Whichever was not sent first is admitted a lead before its slot: post then.
        waiting = wait_until(
            functools.partial(admitted_one, api, (first, second)),
            timeout=30,
            interval=0.005,
            what="a batch job's admission",
        )
        interactive = start(
            api, 1, route="openai", label=f"round {round_} interactive ", priority="interactive"
        )[0]
        run = follow(api, [first, second, interactive])
        assert run.states() == ["saved"] * 3
        order = [e["request_id"] for e in sorted(api.ledger(mark), key=lambda e: e["seq"])]
        sent = {job_id: order.index(only_request(api, run.final(job_id))) for job_id in run.ids}
        won += sent[interactive] < sent[waiting]
        jobs += run.ids
    ledger = api.ledger(mark)
    assert len(ledger) == len(jobs) == 9  # one request each: no slot was sent twice
    assert [e for e in ledger if e["status"] == 429] == []
    assert crowded_gaps(ledger, OPENAI_RPM) == []
    assert won >= 1, "the interactive job never got the batch job's slot"
    taken = route_health(api, "openai")["slotsTaken"] - before["slotsTaken"]
    assert taken >= won  # a slot it was given and lost (too late to claim it) counts too


def test_a_429_cools_the_whole_route_down(api: Api, azure_jobs: list[str]):
    before = route_health(api, "azure")
    mark = api.ledger_mark()
    wait_s = 50 / TIME_SCALE  # the 429 asks for 50 route seconds: 2 s here
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        with httpx.Client(
            base_url=api.stack.devhost_url, headers=dict(api.http.headers), timeout=10
        ) as http:
            while not done.is_set():
                routes = http.get("/api/routes").json()["routes"]
                pace = next(r for r in routes if r["route"] == "azure")["pace"]
                if pace["coolDownUntil"]:
                    seen.append(pace["coolDownUntil"])
                time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        ids = start(api, 6)
        azure_jobs.extend(ids)
        # Once the route is busy, the next request is refused: the job behind it in the queue
        # was admitted already (a second ahead of its send), before the 429 happened.
        wait_until(lambda: api.ledger(mark), timeout=30, what="the first send")
        api.fault(
            kind="rate_limited", retry_after_s=50, header_style="openai", match={"route": "azure"}
        )
        run = follow(api, ids)
    finally:
        done.set()
        watcher.join()

    assert run.states() == ["saved"] * 6
    ledger = api.ledger(mark)
    [refused] = [e for e in ledger if e["status"] == 429]
    assert refused["seq"] < max(e["seq"] for e in ledger) - 1  # others were still to go
    # Not one request of any job reached the route while it asked for the pause: neither the
    # jobs queued behind it nor the one already admitted to go next.
    inside = [
        round(e["received_at"] - refused["received_at"], 3)
        for e in ledger
        if refused["received_at"] < e["received_at"] < refused["received_at"] + wait_s
    ]
    assert inside == []
    assert len(ledger) == 7  # the 429 and six images
    assert crowded_gaps([e for e in ledger if e is not refused], AZURE_RPM) == []
    assert seen, "GET /api/routes never showed the cool-down"
    after = route_health(api, "azure")
    assert delta(after["errors"], before["errors"]) == {"rate_limited": 1}
    assert after["pace"]["coolDownUntil"] is None


def test_the_routes_health_matches_the_simulators_ledger(api: Api, azure_jobs: list[str]):
    before = route_health(api, "azure")
    mark = api.ledger_mark()
    # In the order the route receives requests: a stream that fails after its partial image
    # (retried), and a prompt moderation refuses (not retried).
    api.fault(kind="mid_stream_error", after_partials=1, style="azure", match={"route": "azure"})
    api.fault(kind="moderation_blocked", match={"route": "azure"})
    ids = start(api, 5)
    azure_jobs.extend(ids)
    run = follow(api, ids)

    assert sorted(run.states()) == ["failed"] + ["saved"] * 4
    ledger = [e for e in api.ledger(mark) if e["route"] == "azure"]
    after = route_health(api, "azure")
    completed = [e for e in ledger if e["outcome"] == "completed"]
    assert after["sent"] - before["sent"] == len(ledger) == 6
    assert after["saved"] - before["saved"] == len(completed) == 4
    assert delta(after["errors"], before["errors"]) == {"rejected": 1, "server_error": 1}
    assert sum(1 for e in ledger if e["status"] == 400) == 1  # moderation's answer
    assert sum(1 for e in ledger if e["status"] == 200 and e["outcome"] != "completed") == 1
    # The class's clocks: its median time from send to image lies between what the jobs
    # measured themselves, the image's arrival (earliest) and the job's end (latest).
    [shape] = [s for s in after["shapes"] if s["shape"] == SHAPE]
    assert shape["samples"] >= 4
    arrived, ended = [], []
    for job_id in azure_jobs:
        final = api.status(job_id).json()
        if final["state"] != "saved":
            continue
        metadata = api.metadata(final)
        saved = metadata["attempts"][-1]
        sent = datetime.fromisoformat(saved["timings"]["request_started_at"])
        arrived.append(saved["timings"]["final_image_ms"] / 1000)
        ended.append((datetime.fromisoformat(metadata["finished_at"]) - sent).total_seconds())
    assert min(arrived) <= shape["totalS"]["p50"] <= max(ended), (arrived, ended, shape)


def test_a_kill_9_mid_run_keeps_the_pace_and_bills_each_job_once(api: Api):
    """devhost is killed between two sends, with two jobs still waiting for their slots. (An
    image the route was delivering at the kill would die with the process and be generated
    again: tests/e2e/test_outages.py. Here none is in flight.)"""
    before = route_health(api, "openai")
    mark = api.ledger_mark()
    ids = start(api, 4, route="openai")

    def two_saved() -> bool:
        saved = sum(1 for job_id in ids if api.status(job_id).json()["state"] == "saved")
        return saved == 2 and all(e["outcome"] != "in_progress" for e in api.ledger(mark))

    wait_until(two_saved, timeout=30, interval=0.05, what="two jobs saved, none in flight")
    assert len(api.ledger(mark)) == 2
    api.stack.crash_devhost()
    run = follow(api, ids)

    assert run.states() == ["saved"] * 4
    ledger = api.ledger(mark)
    assert [e["status"] for e in ledger] == [200] * 4  # no 429: no burst after the restart
    assert crowded_gaps(ledger, OPENAI_RPM) == []
    billed = {e["request_id"] for e in ledger if e["billable"]}
    per_job = [len(request_ids(api, run.final(job_id)) & billed) for job_id in ids]
    assert per_job == [1, 1, 1, 1]
    # The route's model outlived the process: it counts the sends from before the kill too.
    assert route_health(api, "openai")["sent"] - before["sent"] == len(ledger)
