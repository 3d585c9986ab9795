"""Edge latency: this app's start and status calls against the Durable quickstart in the same host.

    python -m bench.edge_latency [--sequential 200] [--concurrency 50] [--rounds 4] [--trace]
    (make bench-edge)

One run on one machine starts the local stack (Azurite, the simulator, devhost on
`bench.edge_app`: this service's DFApp plus Microsoft's Python quickstart, in one host) and
measures, from a client in this process:
- start: `POST /api/images` to its 202, against the quickstart's HTTP starter
  (`POST /api/orchestrators/hello_orchestrator`: `client.start_new` +
  `client.create_check_status_response`);
- status: `GET /api/images/{id}`, against the host's own status query for the same instance
  (`GET /runtime/webhooks/durabletask/instances/{id}` with the system key, the URL the
  check-status response hands out);
each sequentially (the two sides interleaved, one request at a time, after a warm-up) and with
`--concurrency` callers: rounds of that many simultaneous starts while as many pollers query the
status of running jobs back to back until the round's starts are answered (rounds of the two
sides alternate). The figures are p50 and p99 per side and the ratio ours / anchor.

The jobs never generate. `--jobs queued` (the default): before measuring, idle slot holders
(bench.edge_app's `bench_hold_slot`) take all maxConcurrentActivityFunctions activity slots, so
every job started afterwards, this app's and the quickstart's alike, runs its first orchestrator
episode and then stays queued: what is measured is the HTTP edge and nothing else.
`--jobs attempt`: no holders; the simulator answers every generation 429 with `retry-after: 850`,
so each job of this app makes one short attempt right after its start (on the host's event loop,
as in the Python worker) and then waits on a durable timer for 11 minutes or more, while each
quickstart orchestration runs its three activities: the edge under the jobs' own first work.

`--trace` also times, inside the host, each round trip this app's functions make per phase
(bench.edge_app), and prints the durations devhost logged for each HTTP function.
A measurement, not a test: nothing here asserts a speed. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.stats import Summary, percentile, ratio, table
from devhost.keys import load_or_create_keys
from devhost.settings import read_host_json
from localrun.processes import ChildProcess
from localrun.stack import LocalStack

ROOT = Path(__file__).resolve().parents[1]
APP = "bench.edge_app"
ANCHOR_ORCHESTRATOR = "hello_orchestrator"
WEBHOOK = "/runtime/webhooks/durabletask"
HOLDER = "bench_hold_slot"
# --jobs attempt: every generation is refused 429 with this retry-after (service seconds, time
# scale 1); below IMAGE_RETRY_MAX_SERVER_WAIT_S (900), so the job waits rather than fails.
REFUSE = {"kind": "rate_limited", "retry_after_s": 850, "count": 1_000_000}
JOB_MODES = ("queued", "attempt")
JOB = {"size": "1024x1024", "quality": "low"}
TARGETS = {"start": 1.5, "status": 2.0}  # p99 ours / anchor


@dataclass(frozen=True)
class Options:
    sequential: int = 200
    concurrency: int = 50
    rounds: int = 4
    warmup: int = 20
    trace: bool = False
    jobs: str = "queued"  # one of JOB_MODES


@dataclass(frozen=True)
class Figure:
    name: str
    kind: str  # "start" or "status": which target applies
    ours: Summary
    anchor: Summary

    @property
    def p50_ratio(self) -> float:
        return ratio(self.ours.p50_ms, self.anchor.p50_ms)

    @property
    def p99_ratio(self) -> float:
        return ratio(self.ours.p99_ms, self.anchor.p99_ms)


@dataclass
class EdgeResult:
    options: Options
    figures: list[Figure]
    # --trace: phase -> round trip -> samples in ms (a "(count)" entry counts events).
    trace: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # devhost's own durationMs per HTTP function and phase (--trace).
    functions: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # phase -> process (or "wall") -> seconds (--trace).
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)

    def machine(self) -> str:
        return (
            f"{os.cpu_count()} cores ({platform.machine()}), Python "
            f"{platform.python_version()}, {platform.system()} {platform.release()}"
        )

    def lines(self) -> list[str]:
        o = self.options
        out = [
            f"edge latency, one devhost ({APP}), {self.machine()}",
            f"sequential: {o.sequential} requests per side, interleaved, after {o.warmup} "
            f"warm-up; concurrent: {o.rounds} rounds per side of {o.concurrency} simultaneous "
            f"starts with {o.concurrency} pollers, rounds alternating; jobs: {o.jobs}",
            "",
        ]
        rows = [
            [
                f.name,
                f"{f.ours.cell()} (n={f.ours.n})",
                f"{f.anchor.cell()} (n={f.anchor.n})",
                f"{f.p50_ratio:.2f} / {f.p99_ratio:.2f}",
                f"<= {TARGETS[f.kind]:g}x",
            ]
            for f in self.figures
        ]
        out += table(
            [
                "figure",
                "this app p50 / p99 ms",
                "anchor p50 / p99 ms",
                "ratio p50 / p99",
                "p99 target",
            ],
            rows,
        )
        if self.cpu:
            names = [n for n in next(iter(self.cpu.values())) if n != "wall"]
            out += ["", "CPU seconds per phase (2 cores = 2 s per wall second):", ""]
            out += table(
                ["phase", "wall s", *names],
                [
                    [phase, f"{c['wall']:.2f}", *(f"{c[n]:.2f}" for n in names)]
                    for phase, c in self.cpu.items()
                ],
            )
        for title, data in (
            ("round trips inside the host", self.trace),
            ("devhost durationMs per HTTP function", self.functions),
        ):
            if data:
                out += ["", f"{title} (ms):", ""]
                out += table(["phase", "what", "n", "p50", "p99", "mean"], _trace_rows(data))
        return out


def _trace_rows(data: dict[str, dict[str, list[float]]]) -> list[list[str]]:
    rows = []
    for phase, entries in data.items():
        for what, values in sorted(entries.items()):
            if not values:
                continue
            if what.endswith("(count)"):
                rows.append([phase, what, str(len(values)), "", "", ""])
                continue
            mean = sum(values) / len(values)
            rows.append(
                [
                    phase,
                    what,
                    str(len(values)),
                    f"{percentile(values, 0.5):.2f}",
                    f"{percentile(values, 0.99):.2f}",
                    f"{mean:.2f}",
                ]
            )
    return rows


class EdgeStack(LocalStack):
    """The local stack with devhost on the bench app (this app plus the quickstart)."""

    def __init__(self, state_dir: Path, *, trace: bool) -> None:
        extra = {"BENCH_EDGE_TRACE": "1"} if trace else {}
        super().__init__(
            ROOT,
            state_dir=state_dir,
            azurite_port=0,
            simulator_port=0,
            devhost_port=0,
            time_scale=1.0,
            extra_env=extra,
        )

    def devhost_process(self) -> ChildProcess:
        child = super().devhost_process()
        child.argv += ["--app", APP]
        return child

    def pids(self) -> dict[str, int]:
        children = {"devhost": self.devhost, "Azurite": self.azurite, "simulator": self.simulator}
        return {name: c.pid for name, c in children.items() if c is not None}


class Edge:
    """The two sides' calls, timed, over one connection pool."""

    def __init__(self, session: aiohttp.ClientSession, url: str, function_key: str) -> None:
        self.session = session
        self.url = url
        self.key = {"x-functions-key": function_key}
        self.system = ""  # the query string of the check-status URLs (taskHub, code, ...)
        self.tag = uuid.uuid4().hex[:8]
        self.count = 0

    async def _call(
        self, method: str, path: str, expect: Sequence[int], **kwargs: Any
    ) -> tuple[float, bytes]:
        t0 = time.perf_counter()
        async with self.session.request(method, self.url + path, **kwargs) as response:
            body = await response.read()
        elapsed = (time.perf_counter() - t0) * 1000
        if response.status not in expect:
            raise RuntimeError(f"{method} {path} answered {response.status}: {body[:300]!r}")
        return elapsed, body

    async def learn_status_query(self) -> None:
        """The host's status query as the check-status response hands it out (its query string:
        task hub, connection, the system key), from one quickstart start."""
        path = f"/api/orchestrators/{ANCHOR_ORCHESTRATOR}"
        _, raw = await self._call("POST", path, (202,), headers=self.key)
        self.system = json.loads(raw)["statusQueryGetUri"].split("?", 1)[1]

    async def start_ours(self) -> tuple[float, str]:
        self.count += 1
        body = {"prompt": f"edge latency {self.tag} #{self.count}", **JOB}
        ms, raw = await self._call("POST", "/api/images", (202,), json=body, headers=self.key)
        return ms, str(json.loads(raw)["id"])

    async def start_anchor(self) -> tuple[float, str]:
        path = f"/api/orchestrators/{ANCHOR_ORCHESTRATOR}"
        ms, raw = await self._call("POST", path, (202,), headers=self.key)
        return ms, str(json.loads(raw)["id"])

    async def status_ours(self, job: str) -> float:
        ms, _ = await self._call("GET", f"/api/images/{job}", (200, 202), headers=self.key)
        return ms

    async def status_anchor(self, job: str) -> float:
        path = f"{WEBHOOK}/instances/{job}?{self.system}"
        ms, _ = await self._call("GET", path, (200, 202))
        return ms

    async def start_holders(self, count: int) -> None:
        """Take every activity slot with an idle holder (--jobs queued)."""
        path = f"/api/orchestrators/{HOLDER}"
        for _ in range(count):
            await self._call("POST", path, (202,), headers=self.key)

    async def settle(self, jobs: str, timeout_s: float = 60.0) -> None:
        """Wait until the host is quiet before a phase: no instance is Pending (every first
        episode ran); with `--jobs attempt` also no quickstart orchestration runs and each of
        this app's jobs waits on its timer, to retry or queued at the cooled-down route (they stay
        Running: they never generate)."""
        query = f"{WEBHOOK}/instances?{self.system}&top=100000&runtimeStatus="
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _, raw = await self._call("GET", query + "Pending", (200,))
            busy = bool(json.loads(raw))
            if not busy and jobs == "attempt":
                _, raw = await self._call("GET", query + "Running", (200,))
                busy = any(
                    i["name"] == ANCHOR_ORCHESTRATOR
                    or (i["name"] != HOLDER and _phase(i) not in IDLE_PHASES)
                    for i in json.loads(raw)
                )
            if not busy:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the host did not settle in {timeout_s} s")


# Phases in which a job waits on a durable timer, holding nothing: after its refused attempt,
# or queued at its route, which the 429's retry-after cools down for every job alike.
IDLE_PHASES = ("waiting_to_retry", "queued")


def _phase(instance: dict[str, Any]) -> str | None:
    custom = instance.get("customStatus")
    return custom.get("phase") if isinstance(custom, dict) else None


async def _round(
    edge: Edge, ours: bool, concurrency: int, pollers: int, jobs: list[str]
) -> tuple[list[float], list[float], list[str]]:
    """`concurrency` simultaneous starts, and `pollers` callers polling running jobs back to
    back until every start is answered; polls that began before that count."""
    starts_done = asyncio.Event()
    polls: list[float] = []
    start = edge.start_ours if ours else edge.start_anchor
    status = edge.status_ours if ours else edge.status_anchor

    async def poller(k: int) -> None:
        i = k
        while not starts_done.is_set():
            began_while_running = not starts_done.is_set()
            ms = await status(jobs[i % len(jobs)])
            if began_while_running:
                polls.append(ms)
            i += pollers

    tasks = [asyncio.create_task(poller(k)) for k in range(pollers)]
    try:
        results = await asyncio.gather(*(start() for _ in range(concurrency)))
    finally:
        starts_done.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [ms for ms, _ in results], polls, [job for _, job in results]


class _Tracer:
    """Per phase (--trace): bench.edge_app's samples, devhost's log lines, and the CPU time each
    process of the stack and this client used against the phase's wall time."""

    _LINE = re.compile(r"function=(\w+) invocationId=\S+ instanceId=- durationMs=([\d.]+)")

    def __init__(self, edge: Edge, log: Path, processes: dict[str, int], enabled: bool) -> None:
        self.edge = edge
        self.log = log
        self.processes = processes
        self.enabled = enabled
        self.offset = 0
        self.trace: dict[str, dict[str, list[float]]] = {}
        self.functions: dict[str, dict[str, list[float]]] = {}
        self.cpu: dict[str, dict[str, float]] = {}
        self._mark = self._clocks()

    def _clocks(self) -> dict[str, float]:
        clocks = {name: _group_cpu_s(pid) for name, pid in self.processes.items()}
        clocks["bench client"] = time.process_time()
        clocks["wall"] = time.perf_counter()
        return clocks

    async def phase(self, name: str) -> None:
        """Close the phase that just ran: collect what it left and start afresh."""
        if not self.enabled:
            return
        clocks = self._clocks()
        cpu = self.cpu.setdefault(name, {})
        for what, now in clocks.items():
            cpu[what] = cpu.get(what, 0.0) + now - self._mark[what]
        _, raw = await self.edge._call(
            "GET", "/api/bench/trace?reset=true", (200,), headers=self.edge.key
        )
        samples = self.trace.setdefault(name, {})
        for what, values in json.loads(raw)["samples"].items():
            samples.setdefault(what, []).extend(values)
        with self.log.open("rb") as f:
            f.seek(self.offset)
            text = f.read().decode(errors="replace")
            self.offset = f.tell()
        durations = self.functions.setdefault(name, {})
        for match in self._LINE.finditer(text):
            if match.group(1) != "bench_trace":
                durations.setdefault(match.group(1), []).append(float(match.group(2)))
        self._mark = self._clocks()


def _group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) of every process in process group ``pgid`` (Linux /proc;
    0 elsewhere). Each child of the stack runs in a group of its own."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # pgrp; utime and stime follow at 11 and 12
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK") if total else 0.0


async def measure(
    url: str,
    function_key: str,
    log: Path,
    processes: dict[str, int],
    max_activities: int,
    o: Options,
) -> EdgeResult:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        edge = Edge(session, url, function_key)
        if o.jobs == "queued":
            await edge.start_holders(max_activities)
        await edge.learn_status_query()
        tracer = _Tracer(edge, log, processes, o.trace)
        warm: list[str] = []
        for _ in range(o.warmup):
            warm.append((await edge.start_ours())[1])
            await edge.start_anchor()
        for job in warm:
            await edge.status_ours(job)
            await edge.status_anchor(job)
        await edge.settle(o.jobs)
        await tracer.phase("warm-up")

        ours_start: list[float] = []
        anchor_start: list[float] = []
        jobs: list[str] = []
        for _ in range(o.sequential):
            ms, job = await edge.start_ours()
            ours_start.append(ms)
            jobs.append(job)
            anchor_start.append((await edge.start_anchor())[0])
        await tracer.phase("start, sequential")
        await edge.settle(o.jobs)

        ours_status: list[float] = []
        anchor_status: list[float] = []
        for job in jobs:
            ours_status.append(await edge.status_ours(job))
            anchor_status.append(await edge.status_anchor(job))
        await tracer.phase("status, sequential")

        c_start: dict[bool, list[float]] = {True: [], False: []}
        c_status: dict[bool, list[float]] = {True: [], False: []}
        polled = jobs or warm
        for r in range(o.rounds):
            for ours in (True, False) if r % 2 == 0 else (False, True):
                await edge.settle(o.jobs)
                starts, polls, _ = await _round(edge, ours, o.concurrency, o.concurrency, polled)
                c_start[ours] += starts
                c_status[ours] += polls
                await tracer.phase(f"concurrent, {'this app' if ours else 'anchor'}")

    n = o.concurrency
    pairs = [
        ("start, sequential", "start", ours_start, anchor_start),
        ("status, sequential", "status", ours_status, anchor_status),
        (f"start, {n} concurrent", "start", c_start[True], c_start[False]),
        (f"status, {n} pollers during the starts", "status", c_status[True], c_status[False]),
    ]
    figures = [
        Figure(name, kind, Summary.of(ours), Summary.of(anchor))
        for name, kind, ours, anchor in pairs
        if ours and anchor  # a phase asked to run 0 times has no figure
    ]
    return EdgeResult(o, figures, tracer.trace, tracer.functions, tracer.cpu)


def run(options: Options | None = None) -> EdgeResult:
    """Start the stack, keep the jobs from generating, measure, stop everything."""
    o = options or Options()
    if o.jobs not in JOB_MODES:
        raise ValueError(f"jobs must be one of {JOB_MODES}, not {o.jobs!r}")
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        stack = EdgeStack(Path(tmp), trace=o.trace)
        with stack:
            keys, _ = load_or_create_keys(stack.devhost_state)
            if o.jobs == "attempt":
                asyncio.run(_post_json(f"{stack.simulator_url}/_sim/faults", REFUSE))
            return asyncio.run(
                measure(
                    stack.devhost_url,
                    keys.default_function_key,
                    stack.log_dir / "devhost.log",
                    stack.pids(),
                    read_host_json(ROOT).max_concurrent_activities,
                    o,
                )
            )


async def _post_json(url: str, body: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        if response.status >= 300:
            raise RuntimeError(f"{url} answered {response.status}: {await response.text()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.edge_latency", description=__doc__)
    p.add_argument("--sequential", type=int, default=200, help="sequential requests per side")
    p.add_argument("--concurrency", type=int, default=50, help="simultaneous starts (and pollers)")
    p.add_argument("--rounds", type=int, default=4, help="concurrent rounds per side")
    p.add_argument("--warmup", type=int, default=20, help="warm-up requests per side")
    p.add_argument("--trace", action="store_true", help="time the app's round trips in the host")
    p.add_argument(
        "--jobs",
        choices=JOB_MODES,
        default="queued",
        help="queued: jobs stay queued (the edge alone); attempt: each makes one refused attempt",
    )
    args = p.parse_args(argv)
    options = Options(
        args.sequential, args.concurrency, args.rounds, args.warmup, args.trace, args.jobs
    )
    for line in run(options).lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
