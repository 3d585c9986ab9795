"""Drain: 100 jobs posted at once to a 10 requests/min route, against the theoretical minimum and
a plain loop around the official SDK.

    python -m bench.drain [--jobs 100] [--interactive 10] [--rpm 10] [--time-scale 5]
                          [--header-style openai] [--stall-s 30] [--no-anchors]
    (make bench-drain; BENCH_ARGS="..." passes options)

One run on one machine starts the local stack (Azurite, the simulator, devhost on this app) with
the simulator's Azure deployment limited to ``rpm`` requests and ``rpm`` images a minute (a
sliding minute, as the simulator and OpenAI count) and the app's route governor told the same
(IMAGE_ROUTE_AZURE_REQUESTS_PER_MINUTE). Then, each from a reset ledger:

1. this service: ``--jobs`` batch jobs (1024x1024, low, partial_images 1) posted at once, and
   ``--interactive`` interactive jobs posted one by one, spread over the drain's ideal length;
   measured: the wall time from the first post until the last job is saved (the host's instance
   query, polled every 0.1 s), requests and 429s from the ledger, and for each interactive job
   the time from its post until its first request reached the simulator, in spacings (60/rpm
   route seconds). A drain that makes no progress (no job ends, no request reaches the
   simulator) for ``--stall-s`` is given up: its unfinished jobs are terminated and reported;
2. the anchors, the same batch jobs through the official SDK (``openai.OpenAI`` on the Azure v1
   path of the same deployment, so the same rate-limit window; default retries; streamed with
   the same partial_images): a sequential for-loop, and one thread per job, all at once.

The theoretical minimum is every request sent at the route's even pace (one each 60/rpm route
seconds) plus the generation time of the last one (the ledger's median); the burst minimum is
what a sliding minute alone allows (rpm requests at once, a minute apart). Ratios are ours /
theirs. Interactive jobs are told apart in the ledger by their prompt's length (the ledger
keeps the length, never the text). Where the time goes comes from the ledger (when each request
arrived), each job's durable history (round trips to the route entity, what each activity
returned) and devhost's log (how often each function ran). A measurement, not a test: nothing
here asserts a speed. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import itertools
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

from bench.devhost_log import FunctionLoad, JobClocks, load, read_invocations
from bench.history import JobHistory
from bench.ledger import LedgerSummary, reset, settled_ledger
from bench.stacks import free_port_stack
from bench.stats import percentile, ratio, table
from devhost.keys import load_or_create_keys
from rules.pacing import MARGIN

DEPLOYMENT = "gpt-image-2"  # the simulator's Azure deployment, the app's route `azure`
ROUTE = "azure"
ORCHESTRATOR = "image_job"
WEBHOOK = "/runtime/webhooks/durabletask"
JOB = {"size": "1024x1024", "quality": "low", "partial_images": 1}
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
# Each job's prompt has a length of its own, which is how the ledger tells its requests apart:
# batch job i has BASE_CHARS + i characters, interactive job k BASE_CHARS + jobs + k. (A character
# more lengthens a generation by 0.04 %: the 110 jobs' generations differ by 4.6 % at most.)
BASE_CHARS = 100
POLL_S = 0.1
# rules.pacing's slack on a window (MARGIN), for the reading of the 429s.
MINUTE_MARGIN = 0.02
# An activity that sends within this long of starting came after its admitted send time.
LATE_WORKER_S = 0.15
# The targets.
TARGET_OVER_MINIMUM = 1.05
TARGET_429S = 1
# Within one slot of the route's pace: the governor's spacing, 60/rpm route seconds and its 2 %
# of slack (rules.pacing.MARGIN). A job posted just after a send can go no sooner than a slot
# later, so one slot is the bound; counted in 60/rpm alone, such a job is 1.02 "spacings" late
# by construction, whatever the service does (its request also takes a moment to arrive).
TARGET_INTERACTIVE_SLOTS = 1.0


@dataclass(frozen=True)
class Options:
    jobs: int = 100
    interactive: int = 10
    rpm: int = 10
    # 5: a spacing is 1.2 s, well above the host's own latencies (an entity round trip is
    # 30-50 ms at p50, 0.2-0.3 s at p90 under this load; a timer, an episode and the activity's
    # start add up to 0.35 s at p99), so the route's timing, not the host, sets the pace. At 15
    # a spacing is 0.4 s and the host's latencies are a third of it. The price: the sequential
    # SDK anchor alone takes jobs x 23 s / 5 (about 8 minutes), the whole run about 11.
    time_scale: float = 5.0
    header_style: str = "openai"
    stall_s: float = 30.0
    anchors: bool = True
    # Post the batch jobs as one manifest (POST /api/batches) instead of one POST each.
    manifest: bool = False


# --- the arithmetic ---------------------------------------------------------------------------


def spacing_s(rpm: int, time_scale: float) -> float:
    """Wall seconds between two sends at the route's even pace (60/rpm route seconds)."""
    return 60.0 / rpm / time_scale


def slot_s(rpm: int, time_scale: float) -> float:
    """Wall seconds of one slot of the route's pace as the governor keeps it: a spacing and
    its slack (rules.pacing.Limits.spacing_s)."""
    return spacing_s(rpm, time_scale) * (1 + MARGIN)


def even_minimum_s(requests: int, rpm: int, time_scale: float, generation_s: float) -> float:
    """Every request sent one spacing after the one before, then the last one's generation."""
    return max(0, requests - 1) * spacing_s(rpm, time_scale) + generation_s


def burst_minimum_s(requests: int, rpm: int, time_scale: float, generation_s: float) -> float:
    """A sliding minute alone: ``rpm`` requests at once, the next ``rpm`` a minute later."""
    minute = 60.0 / time_scale
    return max(0, math.ceil(requests / rpm) - 1) * minute + generation_s


def interactive_offsets(count: int, span_s: float) -> list[float]:
    """When to post each interactive job, seconds after the first post: spread evenly over
    ``span_s``, none at its very start or end."""
    return [span_s * (k + 0.5) / count for k in range(count)]


def chars(kind: str, index: int, jobs: int) -> int:
    """The length of a job's prompt: one of its own among the run's jobs."""
    return BASE_CHARS + index + (jobs if kind == "interactive" else 0)


def prompt(kind: str, index: int, length: int) -> str:
    """A prompt of exactly ``length`` characters, unique per (kind, index): the service answers
    an identical body with the job it already has."""
    text = f"{PROMPT}, {kind} job {index:04d}"
    if len(text) > length:
        raise ValueError(f"{length} characters cannot hold {text!r}")
    return text.ljust(length, ".")


def simulator_config(o: Options) -> dict[str, Any]:
    return {
        "time_scale": o.time_scale,
        "deployments": {
            DEPLOYMENT: {
                "model": "gpt-image-2",
                "rate_limit": {
                    "requests_per_minute": o.rpm,
                    "images_per_minute": o.rpm,
                    "header_style": o.header_style,
                    "window_s": 60,
                },
            }
        },
    }


def service_env(o: Options) -> dict[str, str]:
    return {f"IMAGE_ROUTE_{ROUTE.upper()}_REQUESTS_PER_MINUTE": str(o.rpm)}


def gaps_in_spacings(sends: Sequence[float], spacing: float) -> list[float]:
    """The time between consecutive sends, in spacings."""
    return [(b - a) / spacing for a, b in itertools.pairwise(sends)]


def outcome_of(instance: Mapping[str, Any]) -> dict[str, Any]:
    """The job's outcome from the host's status of its instance: the orchestration's output;
    a terminated or failed instance's output is the reason's text, so only its status counts."""
    output = instance.get("output")
    if isinstance(output, dict):
        return output
    return {"state": str(instance.get("runtimeStatus", "")).lower()}


def cell(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def ratio_cell(ours: float | None, theirs: float | None) -> str:
    """``ours / theirs`` as ``1.23x``; n/a when either is missing."""
    if ours is None or theirs is None:
        return "n/a"
    return f"{ratio(ours, theirs):.2f}x"


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


# --- the service ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    job_id: str
    priority: str
    index: int
    chars: int
    posted_at: float  # epoch s, just before the POST
    answered_at: float  # epoch s, its 202 read


@dataclass(frozen=True)
class BatchTotals:
    """A manifest's totals as its batch answered them (``GET /api/batches/{id}`` once ended)
    and as the simulator's ledger billed its items (by their prompts' lengths)."""

    report_cost_usd: float
    report_saved: int
    ledger_cost_usd: float = 0.0
    ledger_billable: int = 0

    @property
    def match(self) -> bool:
        same_cost = abs(self.report_cost_usd - self.ledger_cost_usd) <= 1e-6
        return same_cost and self.report_saved == self.ledger_billable

    def line(self) -> str:
        said = "they match" if self.match else "MISMATCH"
        return (
            f"the batch's report against the ledger: cost ${self.report_cost_usd:.6f} vs "
            f"${self.ledger_cost_usd:.6f}, saved {self.report_saved} vs billable "
            f"{self.ledger_billable}: {said}"
        )


@dataclass
class ServiceRun:
    started_at: float
    posts: dict[str, Posted] = field(default_factory=dict)
    ended_at: dict[str, float] = field(default_factory=dict)  # as the instance query saw it
    stalled_at: float | None = None  # given up: no progress for stall_s
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)  # the orchestration output
    unfinished: dict[str, str] = field(default_factory=dict)  # job -> its phase when given up
    histories: dict[str, JobHistory] = field(default_factory=dict)
    clocks: dict[str, JobClocks] = field(default_factory=dict)  # from devhost's log
    load: list[FunctionLoad] = field(default_factory=list)
    # With --manifest: (batch id, posted at, answered at), and the batch's own totals once ended.
    batch: tuple[str, float, float] | None = None
    batch_totals: BatchTotals | None = None

    @property
    def saved(self) -> int:
        return sum(1 for o in self.outcomes.values() if o.get("state") == "saved")

    @property
    def finished(self) -> bool:
        return self.stalled_at is None

    @property
    def wall_s(self) -> float:
        """First post to the last job ended (or to the moment the drain was given up)."""
        end = max(self.ended_at.values(), default=self.started_at)
        return (self.stalled_at or end) - self.started_at

    @property
    def retries(self) -> int:
        return sum(int(o.get("retry_count") or 0) for o in self.outcomes.values())

    def activity_results(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for history in self.histories.values():
            total.update(history.activity_results)
        return total

    def entity_round_trips_s(self) -> list[float]:
        return [t for h in self.histories.values() for t in h.entity_round_trips_s]

    def timer_lateness_s(self) -> list[float]:
        return [t for h in self.histories.values() for t in h.timer_lateness_s]


class Service:
    """The app's API and the host's management API, over one connection pool each."""

    def __init__(self, url: str, function_key: str, master_key: str, connections: int) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.http = httpx.AsyncClient(
            base_url=url, headers={"x-functions-key": function_key}, timeout=60, limits=limits
        )
        self.host = httpx.AsyncClient(
            base_url=url, headers={"x-functions-key": master_key}, timeout=60
        )

    async def close(self) -> None:
        await self.http.aclose()
        await self.host.aclose()

    async def post(self, run: ServiceRun, priority: str, index: int, length: int) -> None:
        body = {"prompt": prompt(priority, index, length), "priority": priority, **JOB}
        at = time.time()
        answer = await self.http.post("/api/images", json=body)
        if answer.status_code != 202:
            raise RuntimeError(f"POST /api/images: {answer.status_code}: {answer.text[:300]}")
        job = str(answer.json()["id"])
        run.posts[job] = Posted(job, priority, index, length, at, time.time())

    async def post_batch(self, run: ServiceRun, jobs: int) -> str:
        """The batch jobs as one manifest; its items' ids are read from its report at the end."""
        lines = [
            json.dumps(
                {
                    "custom_id": f"b{i}",
                    "prompt": prompt("batch", i, chars("batch", i, jobs)),
                    **JOB,
                }
            )
            for i in range(jobs)
        ]
        at = time.time()
        answer = await self.http.post(
            "/api/batches",
            content="\n".join(lines) + "\n",
            headers={"content-type": "application/jsonl"},
        )
        if answer.status_code != 202:
            raise RuntimeError(f"POST /api/batches: {answer.status_code}: {answer.text[:300]}")
        run.batch = (str(answer.json()["id"]), at, time.time())
        return run.batch[0]

    async def batch_items(self, run: ServiceRun, jobs: int) -> None:
        """The manifest's items as posted jobs, from the batch's report, once it has ended."""
        assert run.batch is not None
        batch_id, posted_at, answered_at = run.batch
        status = (await self.http.get(f"/api/batches/{batch_id}")).json()
        counts = status.get("counts") or {}
        run.batch_totals = BatchTotals(
            float(status.get("costUsd") or 0.0), int(counts.get("saved") or 0)
        )
        report = status.get("report") or {}
        if not report.get("jsonl"):
            return
        async with httpx.AsyncClient(timeout=60) as plain:
            text = (await plain.get(report["jsonl"])).text
        for line in text.splitlines():
            item = json.loads(line)
            if item.get("job_id"):
                index = int(str(item["custom_id"])[1:])
                run.posts[item["job_id"]] = Posted(
                    item["job_id"],
                    "batch",
                    index,
                    chars("batch", index, jobs),
                    posted_at,
                    answered_at,
                )

    async def batch_ended(self, run: ServiceRun) -> bool:
        if run.batch is None:
            return True
        answer = await self.http.get(f"/api/batches/{run.batch[0]}")
        return answer.status_code == 200

    async def instances(self, *statuses: str) -> list[dict[str, Any]]:
        query = "&".join(f"runtimeStatus={s}" for s in statuses)
        answer = await self.host.get(f"{WEBHOOK}/instances?{query}&showInput=false&top=100000")
        answer.raise_for_status()
        items: list[dict[str, Any]] = answer.json()
        return items

    async def history(self, job: str) -> JobHistory:
        answer = await self.host.get(
            f"{WEBHOOK}/instances/{job}?showHistory=true&showHistoryOutput=true&showInput=false"
        )
        answer.raise_for_status()
        return JobHistory.of(answer.json().get("historyEvents") or [])

    async def terminate(self, job: str) -> None:
        answer = await self.host.post(
            f"{WEBHOOK}/instances/{job}/terminate?reason=bench.drain+gave+up"
        )
        if answer.status_code not in (202, 410):
            answer.raise_for_status()


async def drain_service(
    service: Service, sim: httpx.AsyncClient, o: Options, *, log: Callable[[str], None]
) -> ServiceRun:
    spacing = spacing_s(o.rpm, o.time_scale)
    offsets = interactive_offsets(o.interactive, (o.jobs + o.interactive - 1) * spacing)
    run = ServiceRun(started_at=time.time())

    async def interactive() -> None:
        for k, offset in enumerate(offsets):
            await asyncio.sleep(max(0.0, run.started_at + offset - time.time()))
            await service.post(run, "interactive", k, chars("interactive", k, o.jobs))

    late = asyncio.create_task(interactive())
    if o.manifest:
        await service.post_batch(run, o.jobs)
    else:
        await asyncio.gather(
            *(service.post(run, "batch", i, chars("batch", i, o.jobs)) for i in range(o.jobs))
        )
    seq, progress_at = 0, time.time()
    while True:
        running = {str(i["instanceId"]) for i in await service.instances("Pending", "Running")}
        fresh = (await sim.get(f"/_sim/ledger?since={seq}")).raise_for_status().json()
        now = time.time()
        ended = [job for job in run.posts if job not in running and job not in run.ended_at]
        for job in ended:
            run.ended_at[job] = now
        if fresh:
            seq = fresh[-1]["seq"]
        if ended or fresh:
            progress_at = now
        if late.done() and len(run.ended_at) == len(run.posts) and await service.batch_ended(run):
            break
        if now - progress_at > o.stall_s:
            run.stalled_at = progress_at
            log(f"service: no progress for {o.stall_s:g} s; giving up on the drain")
            break
        await asyncio.sleep(POLL_S)
    if not late.done():
        late.cancel()
    await asyncio.gather(late, return_exceptions=True)
    if run.batch is not None:
        await service.batch_items(run, o.jobs)
        for item in await service.instances("Completed", "Failed", "Terminated"):
            job = str(item["instanceId"])
            if job in run.posts and job not in run.ended_at:
                moment = datetime.fromisoformat(str(item["lastUpdatedTime"]).replace("Z", "+00:00"))
                run.ended_at[job] = moment.timestamp()
    for item in await service.instances("Pending", "Running"):
        job = str(item["instanceId"])
        if job in run.posts:
            custom = item.get("customStatus") or {}
            run.unfinished[job] = str(custom.get("phase") if isinstance(custom, dict) else custom)
            await service.terminate(job)
    for item in await service.instances("Completed", "Failed", "Terminated"):
        if item["instanceId"] in run.posts:
            run.outcomes[item["instanceId"]] = outcome_of(item)
    histories = await asyncio.gather(*(service.history(job) for job in run.posts))
    run.histories = dict(zip(run.posts, histories, strict=True))
    return run


# --- the anchors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SdkRun:
    name: str
    wall_s: float
    saved: int
    ledger: LedgerSummary


def sdk_loop(sim_url: str, o: Options, *, threads: int) -> tuple[float, int]:
    """The batch jobs through the official SDK, ``threads`` at a time: (wall s, saved)."""
    from openai import OpenAI, OpenAIError

    client = OpenAI(base_url=f"{sim_url}/openai/v1", api_key="bench-key")

    def one(index: int) -> bool:
        try:
            stream = client.images.generate(
                model=DEPLOYMENT,
                prompt=prompt("batch", index, chars("batch", index, o.jobs)),
                stream=True,
                size="1024x1024",
                quality="low",
                partial_images=1,
            )
            return any(event.type == "image_generation.completed" for event in stream)
        except OpenAIError:
            return False

    started = time.time()
    if threads == 1:
        saved = sum(one(i) for i in range(o.jobs))
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            saved = sum(pool.map(one, range(o.jobs)))
    return time.time() - started, saved


# --- the result -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeline:
    """One service job's moments (epoch s; None: not known)."""

    posted: Posted
    activity_start: float | None  # its first generate_image began (devhost's log)
    request_started: float | None  # its last attempt's send (timings.requestStartedAt)
    first_arrival: float | None  # its first request at the simulator (the ledger)
    accepted_arrival: float | None  # its request that the limiter let through
    attempts: int

    def since_post(self, moment: float | None) -> float | None:
        return None if moment is None else moment - self.posted.posted_at


@dataclass
class DrainResult:
    options: Options
    service: ServiceRun
    ledger: LedgerSummary
    anchors: list[SdkRun]
    date: str

    @property
    def spacing_s(self) -> float:
        return spacing_s(self.options.rpm, self.options.time_scale)

    @property
    def slot_s(self) -> float:
        return slot_s(self.options.rpm, self.options.time_scale)

    @property
    def requests(self) -> int:
        return self.options.jobs + self.options.interactive

    @property
    def generation_s(self) -> float:
        return self.ledger.median_generation_s or 0.0

    @property
    def even_minimum_s(self) -> float:
        o = self.options
        return even_minimum_s(self.requests, o.rpm, o.time_scale, self.generation_s)

    @property
    def burst_minimum_s(self) -> float:
        o = self.options
        return burst_minimum_s(self.requests, o.rpm, o.time_scale, self.generation_s)

    def timelines(self) -> list[Timeline]:
        out = []
        for post in sorted(self.service.posts.values(), key=lambda p: (p.priority, p.index)):
            outcome = self.service.outcomes.get(post.job_id) or {}
            sent = (outcome.get("timings") or {}).get("request_started_at")
            clocks = self.service.clocks.get(post.job_id)
            out.append(
                Timeline(
                    posted=post,
                    activity_start=clocks.activity_start if clocks else None,
                    request_started=datetime.fromisoformat(sent).timestamp() if sent else None,
                    first_arrival=self.ledger.first_arrival.get(post.chars),
                    accepted_arrival=self.ledger.accepted_arrival.get(post.chars),
                    attempts=int(outcome.get("attempt") or 0),
                )
            )
        return out

    def interactive(self) -> list[Timeline]:
        return [t for t in self.timelines() if t.posted.priority == "interactive"]

    def machine(self) -> str:
        return (
            f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}, openai {version('openai')}, "
            f"azure-functions-durable {version('azure-functions-durable')}"
        )

    def lines(self) -> list[str]:
        o, s, led, sp = self.options, self.service, self.ledger, self.spacing_s
        out = [
            f"drain, {self.date}, {self.machine()}",
            f"{o.jobs} batch jobs at once + {o.interactive} interactive over the run "
            f"(1024x1024 low, partial_images 1); route {o.rpm} requests/min and {o.rpm} "
            f"images/min (headers: {o.header_style}); time scale {o.time_scale:g}: a route "
            f"minute is {60 / o.time_scale:.2f} s, a spacing {sp:.3f} s; median generation "
            f"{self.generation_s:.2f} s ({self.generation_s * o.time_scale:.1f} route s)",
            f"theoretical minimum, even pace: {self.requests - 1} x {sp:.3f} s + "
            f"{self.generation_s:.2f} s = {self.even_minimum_s:.2f} s; "
            f"burst minimum (sliding minute, {o.rpm} at once): "
            f"{math.ceil(self.requests / o.rpm) - 1} x {60 / o.time_scale:.2f} s + "
            f"{self.generation_s:.2f} s = {self.burst_minimum_s:.2f} s",
            "",
        ]
        wall = f"{s.wall_s:.2f}" if s.finished else f"> {s.wall_s:.2f} (gave up)"
        rows = [
            [
                "theoretical minimum, even pace",
                f"{self.even_minimum_s:.2f}",
                "",
                str(self.requests),
                "0",
                "1.00",
                "",
            ],
            [
                f"burst minimum, {o.rpm} at once a minute",
                f"{self.burst_minimum_s:.2f}",
                "",
                str(self.requests),
                "0",
                "1.00",
                "",
            ],
            [
                "this service",
                wall,
                f"{s.saved}/{len(s.posts)}",
                str(led.requests),
                str(led.rate_limited),
                cell(led.billable_per_saved(s.saved)),
                f"{ratio_cell(s.wall_s, self.even_minimum_s)} the even minimum, "
                f"{ratio_cell(s.wall_s, self.burst_minimum_s)} the burst minimum",
            ],
        ]
        for anchor in self.anchors:
            rows.append(
                [
                    anchor.name,
                    f"{anchor.wall_s:.2f}",
                    f"{anchor.saved}/{o.jobs}",
                    str(anchor.ledger.requests),
                    str(anchor.ledger.rate_limited),
                    cell(anchor.ledger.billable_per_saved(anchor.saved)),
                    f"{ratio_cell(s.wall_s, anchor.wall_s)} this loop's wall",
                ]
            )
        out += table(
            [
                "way",
                "wall s",
                "saved",
                "requests",
                "429s",
                "billable per saved image",
                "this service's wall is",
            ],
            rows,
        )
        inter = self.interactive()
        delays = [t.since_post(t.first_arrival) for t in inter]
        slots = [None if d is None else d / self.slot_s for d in delays]
        out += ["", "interactive jobs (s from the POST):", ""]
        out += table(
            ["#", "202", "activity began", "request sent", "at the simulator", "slots", "60/rpm"],
            [
                [
                    str(t.posted.index),
                    f"{t.posted.answered_at - t.posted.posted_at:.3f}",
                    cell(t.since_post(t.activity_start), 3),
                    cell(t.since_post(t.request_started), 3),
                    cell(d, 3),
                    cell(n),
                    cell(None if d is None else d / sp),
                ]
                for t, d, n in zip(inter, delays, slots, strict=True)
            ],
        )
        known = [n for n in slots if n is not None]
        worst = max(known, default=None)
        within = sum(1 for n in known if n <= TARGET_INTERACTIVE_SLOTS)
        nominal = [d / sp for d in delays if d is not None]
        over = ratio(s.wall_s, self.even_minimum_s)
        out += [
            "",
            f"targets: wall <= {TARGET_OVER_MINIMUM:g}x the even minimum: {over:.3f}x "
            f"({verdict(s.finished and over <= TARGET_OVER_MINIMUM)}); "
            f"429s <= {TARGET_429S}: {led.rate_limited} "
            f"({verdict(led.rate_limited <= TARGET_429S)}); "
            f"interactive within {TARGET_INTERACTIVE_SLOTS:g} slot of the route's pace "
            f"({self.slot_s:.3f} s): {within}/{o.interactive}, worst {cell(worst)} "
            f"({verdict(within == o.interactive)}; within 60/rpm: "
            f"{sum(1 for n in nominal if n <= 1.0)}/{o.interactive}, worst "
            f"{cell(max(nominal, default=None))})",
            *([s.batch_totals.line()] if s.batch_totals is not None else []),
            "",
            *self.where_the_time_goes(),
        ]
        return out

    def where_the_time_goes(self) -> list[str]:
        s, led, sp = self.service, self.ledger, self.spacing_s
        out = ["where the time goes (service run; s from the first post):"]
        batch_posted = [p.answered_at for p in s.posts.values() if p.priority == "batch"]
        if batch_posted:
            out.append(f"- every batch POST answered after {max(batch_posted) - s.started_at:.2f}")
        if not led.sends:
            return [*out, "- no request reached the simulator"]
        first = led.sends[0] - s.started_at
        out.append(
            f"- first request at the simulator after {first:.2f} ({first / sp:.2f} spacings)"
        )
        gaps = gaps_in_spacings(led.sends, sp)
        if gaps:
            span = led.sends[-1] - led.sends[0]
            lost = sum(max(0.0, g - 1.0) for g in gaps) * sp
            out.append(
                f"- {len(led.sends)} requests let through over {span:.2f} (even pace: "
                f"{(len(led.sends) - 1) * sp:.2f}); gaps in spacings p50 "
                f"{percentile(gaps, 0.5):.3f}, p90 {percentile(gaps, 0.9):.3f}, "
                f"max {max(gaps):.2f}; "
                f"{sum(1 for g in gaps if g < 0.5)} gaps under half a spacing; time beyond one "
                f"spacing per gap, summed: {lost:.2f}"
            )
            longest = sorted(
                zip(led.sends[1:], gaps, strict=True), key=lambda pair: pair[1], reverse=True
            )[:6]
            out.append(
                "- longest gaps (ending at, spacings): "
                + ", ".join(f"{at - s.started_at:.2f} ({g:.2f})" for at, g in longest)
            )
        if s.ended_at and s.finished:
            tail = max(s.ended_at.values()) - led.sends[-1]
            out.append(
                f"- last request -> last job ended: {tail:.2f} (median generation "
                f"{self.generation_s:.2f}; {tail - self.generation_s:.2f} to store, finish, "
                "be seen)"
            )
        out += self.sends_seen_from_the_host()
        out.append(
            "- 429s at: "
            + (", ".join(f"{r - s.started_at:.2f}" for r in led.refusals) or "none")
            + f"; retries the service recorded: {s.retries}"
        )
        results = s.activity_results()
        out.append(
            f"- generate_image ran {sum(results.values())} times for {led.requests} requests: "
            + ", ".join(f"{kind} {n}" for kind, n in results.most_common())
        )
        trips = s.entity_round_trips_s()
        if trips:
            ms = [t * 1000 for t in trips]
            out.append(
                f"- route entity round trips (call sent -> answer raised, durable history): "
                f"{len(ms)}, p50 {percentile(ms, 0.5):.0f} ms, p90 {percentile(ms, 0.9):.0f} ms, "
                f"max {max(ms):.0f} ms"
            )
        late = s.timer_lateness_s()
        if late:
            ms = [t * 1000 for t in late]
            out.append(
                f"- durable timers ({len(ms)}, {len(ms) / max(1, len(s.posts)):.1f} a job) fired "
                f"after their time by p50 {percentile(ms, 0.5):.0f} ms, p90 "
                f"{percentile(ms, 0.9):.0f} ms, max {max(ms):.0f} ms"
            )
        for f in s.load:
            out.append(
                f"- devhost ran {f.function} {f.count} times during the drain "
                f"(durationMs p50 {f.p50_ms:.1f}, max {f.max_ms:.0f}; {f.total_s:.1f} s in all)"
            )
        if s.unfinished:
            phases = Counter(s.unfinished.values())
            stuck = [s.histories[j].activity_results for j in s.unfinished if j in s.histories]
            loops = [sum(r.values()) for r in stuck]
            out.append(
                f"- UNFINISHED when given up: {len(s.unfinished)} jobs ("
                + ", ".join(f"{phase} {n}" for phase, n in phases.most_common())
                + f"); their generate_image ran {sum(loops)} times in all, up to "
                f"{max(loops, default=0)} for one job; terminated"
            )
        return out

    def sends_seen_from_the_host(self) -> list[str]:
        """How the sends the governor planned left the host: the wait inside the activity for
        the admitted send time, workers that came after it, and the time from the activity's
        send (what it reports to the governor) to the request's arrival at the simulator."""
        minute = 60.0 / self.options.time_scale
        margin = minute * MINUTE_MARGIN
        lines = self.timelines()
        waits = [
            t.request_started - t.activity_start
            for t in lines
            if t.attempts == 1 and t.request_started is not None and t.activity_start is not None
        ]
        lags = {
            t.posted.chars: t.accepted_arrival - t.request_started
            for t in lines
            if t.accepted_arrival is not None and t.request_started is not None
        }
        out = []
        if waits:
            out.append(
                f"- activity began -> request started (the wait for the admitted send time): "
                f"p50 {percentile(waits, 0.5):.2f}, max {max(waits):.2f}; "
                f"{sum(1 for w in waits if w < LATE_WORKER_S)} of {len(waits)} began after "
                "their send time (sent within "
                f"{LATE_WORKER_S:g} s of starting)"
            )
        if lags:
            values = sorted(lags.values())
            out.append(
                f"- request started (the send time reported to the governor) -> at the "
                f"simulator: p50 {percentile(values, 0.5) * 1000:.0f} ms, p90 "
                f"{percentile(values, 0.9) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms; "
                f"{sum(1 for v in values if v > margin)} above the governor's margin on a "
                f"minute ({margin * 1000:.0f} ms)"
            )
        limit = self.options.rpm
        for refused in self.ledger.refusals:
            before = [(at, c) for at, c in self.ledger.accepted if at < refused]
            if len(before) < limit:
                continue
            oldest_at, oldest = before[-limit]
            lag = lags.get(oldest)
            out.append(
                f"- 429 at {refused - self.service.started_at:.2f}: the {limit} requests let "
                f"through before it arrived over {refused - oldest_at:.2f} s (a route minute "
                f"is {minute:.2f}); the oldest of them reached the simulator "
                + ("n/a" if lag is None else f"{lag * 1000:.0f} ms")
                + " after the send time its job reported"
            )
        return out


# --- the whole run ----------------------------------------------------------------------------


def run(options: Options | None = None, *, log: Callable[[str], None] = print) -> DrainResult:
    o = options or Options()
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        state = Path(tmp)
        config = state / "simulator.json"
        config.write_text(json.dumps(simulator_config(o)))
        stack = free_port_stack(
            state,
            time_scale=o.time_scale,
            simulator_config=config,
            extra_env=service_env(o),
        )
        with stack, httpx.Client(base_url=stack.simulator_url, timeout=30.0) as sim:
            keys, _ = load_or_create_keys(stack.devhost_state)
            date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            reset(sim)
            log(f"service: {o.jobs} batch jobs at once, {o.interactive} interactive ...")

            async def drain() -> ServiceRun:
                service = Service(
                    stack.devhost_url, keys.default_function_key, keys.master_key, o.jobs + 20
                )
                try:
                    async with httpx.AsyncClient(
                        base_url=stack.simulator_url, timeout=30.0
                    ) as sim_async:
                        return await drain_service(service, sim_async, o, log=log)
                finally:
                    await service.close()

            service = asyncio.run(drain())
            entries = settled_ledger(sim)
            ledger = LedgerSummary.of(entries)
            if service.batch_totals is not None:
                service.batch_totals = billed_items(service, entries)
            found = read_invocations(stack.log_dir / "devhost.log")
            service.clocks = {job: JobClocks.of(found, job, ORCHESTRATOR) for job in service.posts}
            service.load = load(found, service.started_at, service.started_at + service.wall_s)
            log(f"service: {service.wall_s:.2f} s, {ledger.rate_limited} 429s")
            anchors: list[SdkRun] = []
            if o.anchors:
                for name, threads in (
                    ("SDK, sequential for-loop", 1),
                    (f"SDK, {o.jobs} threads at once", o.jobs),
                ):
                    reset(sim)
                    log(f"{name} ...")
                    wall, saved = sdk_loop(stack.simulator_url, o, threads=threads)
                    anchors.append(SdkRun(name, wall, saved, LedgerSummary.of(settled_ledger(sim))))
                    log(f"{name}: {wall:.2f} s, {saved} saved")
    return DrainResult(o, service, ledger, anchors, date)


def billed_items(run: ServiceRun, entries: Sequence[Mapping[str, Any]]) -> BatchTotals:
    """The batch's totals beside what the ledger billed for its items (told by prompt length,
    each job's own)."""
    assert run.batch_totals is not None
    lengths = {post.chars for post in run.posts.values() if post.priority == "batch"}
    billed = [
        entry
        for entry in entries
        if entry.get("billable") and (entry.get("shape") or {}).get("prompt_chars") in lengths
    ]
    return replace(
        run.batch_totals,
        ledger_cost_usd=round(sum(float(e.get("cost_usd") or 0.0) for e in billed), 6),
        ledger_billable=len(billed),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__)
    p.add_argument("--jobs", type=int, default=100, help="batch jobs posted at once")
    p.add_argument("--interactive", type=int, default=10, help="interactive jobs over the run")
    p.add_argument("--rpm", type=int, default=10, help="the route's requests (and images) a minute")
    p.add_argument("--time-scale", type=float, default=5.0, help="simulator and service")
    p.add_argument(
        "--header-style",
        choices=("openai", "azure", "azure_minus_one"),
        default="openai",
        help="the simulator's rate-limit headers (azure_minus_one: no usable hint)",
    )
    p.add_argument("--stall-s", type=float, default=30.0, help="give up after this long idle")
    p.add_argument("--no-anchors", action="store_true", help="skip the SDK loops")
    p.add_argument(
        "--manifest",
        action="store_true",
        help="post the batch jobs as one manifest (POST /api/batches), not one POST each",
    )
    args = p.parse_args(argv)
    options = Options(
        jobs=args.jobs,
        interactive=args.interactive,
        rpm=args.rpm,
        time_scale=args.time_scale,
        header_style=args.header_style,
        stall_s=args.stall_s,
        anchors=not args.no_anchors,
        manifest=args.manifest,
    )
    result = run(options, log=lambda line: print(line, file=sys.stderr, flush=True))
    for line in result.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
