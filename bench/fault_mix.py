"""Duplicates and losses under a fault mix: billable generations per saved image, images lost,
against a plain loop around the official SDK with its default retries.

    python -m bench.fault_mix [--small 8] [--large 4] [--storm 12] [--mid-stream 3]
        [--time-scale 20] [--outage-at 2] [--outage-s 3] [--kill-at 6]
    (make bench-fault-mix)

One run on one machine starts the local stack (Azurite with its data on disk, the simulator,
devhost on this app) on the default scenario: the simulator's Azure deployment behind Azure's
60 s gateway idle limit, no rate limit. The same jobs then go through two ways, each from a reset
ledger (``POST /_sim/reset``), with the same faults at the same moments:

- the jobs: ``--small`` 1024x1024 low with partial_images 1 and ``--large`` 2048x2048 high with
  partial_images 0 (silent until the image, ~230 s: the gateway cuts a stream of that shape at
  60 s, while the generation runs on upstream and is billed), all started at once;
- the simulator's fault queue, set before the first request: a 429 storm (``--storm`` requests
  answered 429 with a 10 s retry-after), then ``--mid-stream`` 1024x1024 streams failing with a
  server error after their first partial image;
- a storage outage: Azurite stopped ``--outage-at`` s after the start, for ``--outage-s`` s,
  then started again on the same data;
- a worker kill: ``--kill-at`` s after the start, or after once a 2048x2048 generation is
  running upstream (the ledger, polled; at most 30 s more), the process that runs the jobs is killed
  (SIGKILL) and started again: devhost (the orchestrations resume from the durable store) for
  this service; the loop's own process for the anchor, which, started again, makes every job
  whose image is not stored yet (the usual resume of a plain script).

The anchor is a plain loop: one thread per job, the official ``openai`` SDK (``AzureOpenAI``,
default retries: 2, honouring retry-after), streamed with the job's partial_images, and the image
stored in the same Blob service (Azurite) with the Blob SDK's default retries. This service gets
the jobs over HTTP and is polled every 0.25 s (connection errors and 503s are tried again) until
each job has ended.

Counted for each way, from the simulator's ledger once every generation has ended upstream:
billable generations, saved images (the service: jobs ``saved``; the loop: its blobs), images
lost (jobs without a saved image), generations billed beyond one per saved image
(duplicates), and how many generations were running upstream at the kill (their images cannot be
saved by anyone: the reader died). Targets: no image lost; no duplicate beyond those.
A measurement, not a test; results in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

from bench.ledger import LedgerSummary, reset, settled_ledger
from bench.stacks import ROOT, free_port_stack
from bench.stats import table
from localrun.stack import LocalStack

DEPLOYMENT = "gpt-image-2"
API_VERSION = "2025-04-01-preview"
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
SMALL: dict[str, Any] = {"size": "1024x1024", "quality": "low", "partial_images": 1}
LARGE: dict[str, Any] = {"size": "2048x2048", "quality": "high", "partial_images": 0}
POLL_S = 0.25
STORM_RETRY_AFTER_S = 10.0  # route seconds, as the simulator takes it
KILL_WAIT_S = 30.0
# The targets: every image saved, and no generation billed twice but those a worker kill cut
# off (a generation in flight when its reader died runs on, is billed, and cannot be saved:
# sending again is the policy's recorded choice, docs/retries.md; any client pays them).
TARGET_LOST = 0
TARGET_AVOIDABLE = 0


@dataclass(frozen=True)
class Options:
    small: int = 8
    large: int = 4
    storm: int = 12
    mid_stream: int = 3
    time_scale: float = 20.0
    outage_at_s: float = 2.0
    outage_s: float = 3.0
    kill_at_s: float = 6.0
    # From kill_at_s on, the kill waits (at most KILL_WAIT_S) until a large generation is running
    # upstream: a kill with nothing in flight would test nothing.
    kill_in_flight: bool = True
    deadline_s: float = 180.0  # a way's jobs not ended by then are counted lost

    @property
    def jobs(self) -> int:
        return self.small + self.large

    def bodies(self) -> list[dict[str, Any]]:
        """Every job's body: the small ones first, each prompt its own."""
        shapes = [SMALL] * self.small + [LARGE] * self.large
        return [{"prompt": f"{PROMPT} #{i:03d}", **shape} for i, shape in enumerate(shapes)]

    def faults(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.storm:
            out.append(
                {
                    "kind": "rate_limited",
                    "retry_after_s": STORM_RETRY_AFTER_S,
                    "count": self.storm,
                }
            )
        if self.mid_stream:
            out.append(
                {
                    "kind": "mid_stream_error",
                    "after_partials": 1,
                    "count": self.mid_stream,
                    "match": {"size": SMALL["size"]},
                }
            )
        return out


@dataclass(frozen=True)
class Way:
    """One way's run, counted."""

    name: str
    jobs: int
    saved: int
    wall_s: float
    ledger: LedgerSummary
    # What happened on the way (a state's count, a kill's moment): for the report only.
    notes: tuple[str, ...] = ()
    # Generations running upstream when the worker was killed (None: no kill).
    at_kill: int | None = None

    @property
    def lost(self) -> int:
        return self.jobs - self.saved

    @property
    def duplicates(self) -> int:
        """Generations billed beyond one per saved image (a lost image's are all duplicates)."""
        return max(0, self.ledger.billable - self.saved)

    @property
    def per_saved(self) -> float | None:
        return self.ledger.billable_per_saved(self.saved)

    @property
    def avoidable(self) -> int:
        """Duplicates beyond the generations the worker kill cut off."""
        return max(0, self.duplicates - (self.at_kill or 0))

    @property
    def met(self) -> bool:
        return self.lost <= TARGET_LOST and self.avoidable <= TARGET_AVOIDABLE

    def row(self) -> list[str]:
        per = self.per_saved
        return [
            self.name,
            f"{self.saved}/{self.jobs}",
            str(self.lost),
            str(self.ledger.requests),
            str(self.ledger.billable),
            "n/a" if per is None else f"{per:.2f}",
            str(self.duplicates),
            "n/a" if self.at_kill is None else str(self.at_kill),
            str(self.avoidable),
            str(self.ledger.rate_limited),
            f"{self.wall_s:.1f}",
        ]


# --- the disruptions, the same for both ways --------------------------------------------------


@dataclass
class Disruptions:
    """The storage outage and the worker kill, each in a thread of its own at its moment."""

    options: Options
    kill: Callable[[], None]
    stack: LocalStack
    log: Callable[[str], None]
    sim: httpx.Client
    happened: list[str] = field(default_factory=list)
    killed_at: float | None = None  # epoch s, the moment of the kill
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, started: float) -> None:
        o = self.options

        def outage() -> None:
            time.sleep(max(0.0, started + o.outage_at_s - time.monotonic()))
            self.log(f"storage outage for {o.outage_s:g} s")
            at = time.monotonic() - started
            self.stack.restart_azurite(down_s=o.outage_s)
            self.happened.append(
                f"storage down at {at:.1f} s, back at {time.monotonic() - started:.1f} s"
            )

        def kill() -> None:
            time.sleep(max(0.0, started + o.kill_at_s - time.monotonic()))
            give_up = time.monotonic() + KILL_WAIT_S
            while o.kill_in_flight and time.monotonic() < give_up:
                entries = self.sim.get("/_sim/ledger").raise_for_status().json()
                if in_flight(entries, time.time(), size=LARGE["size"]):
                    break
                time.sleep(0.1)
            self.log("worker kill")
            at = time.monotonic() - started
            self.killed_at = time.time()
            self.kill()
            self.happened.append(
                f"worker killed at {at:.1f} s, running again at {time.monotonic() - started:.1f} s"
            )

        for target in (outage, kill):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join()


# --- this service -----------------------------------------------------------------------------


def in_flight(
    entries: Sequence[Mapping[str, Any]], at: float | None, *, size: str | None = None
) -> int | None:
    """How many generations (of ``size``, or any) were running upstream at ``at`` (epoch s):
    begun, not yet done."""
    if at is None:
        return None
    return sum(
        1
        for e in entries
        if e.get("generation_started")
        and float(e["received_at"]) <= at
        and (e.get("upstream_done_at") is None or float(e["upstream_done_at"]) > at)
        and (size is None or (e.get("shape") or {}).get("size") == size)
    )


def follow(
    http: httpx.Client,
    ids: Sequence[str],
    deadline: float,
    attempts: dict[str, int],
    failed: Counter[str] | None = None,
) -> dict[str, str]:
    """Each job's end state (``unfinished`` at the deadline), its attempts into ``attempts``; a
    poll that fails (devhost down, storage down) is counted into ``failed`` (by status, or
    ``no answer``) and tried again."""
    failed = failed if failed is not None else Counter()
    ended: dict[str, str] = {}
    while len(ended) < len(ids) and time.monotonic() < deadline:
        for job in ids:
            if job in ended:
                continue
            try:
                answer = http.get(f"/api/images/{job}")
            except httpx.HTTPError:
                failed["no answer"] += 1
                continue
            if answer.status_code not in (200, 202):
                failed[str(answer.status_code)] += 1
            if answer.status_code == 200:
                body = answer.json()
                ended[job] = str(body.get("state"))
                attempts[job] = int(body.get("attempt") or 0)
        time.sleep(POLL_S)
    return {job: ended.get(job, "unfinished") for job in ids}


def service_way(
    stack: LocalStack, sim: httpx.Client, o: Options, log: Callable[[str], None]
) -> Way:
    prepare(sim, o)
    key = stack.function_key
    disruptions = Disruptions(o, stack.crash_devhost, stack, log, sim)
    with httpx.Client(
        base_url=stack.devhost_url, headers={"x-functions-key": key}, timeout=30.0
    ) as http:
        started = time.monotonic()
        disruptions.start(started)
        ids = []
        for body in o.bodies():
            answer = http.post("/api/images", json=body)
            if answer.status_code != 202:
                raise RuntimeError(f"POST /api/images: {answer.status_code}: {answer.text[:300]}")
            ids.append(answer.json()["id"])
        attempts: dict[str, int] = {}
        failed: Counter[str] = Counter()
        states = follow(http, ids, started + o.deadline_s, attempts, failed)
        wall = time.monotonic() - started
        disruptions.join()
    saved = sum(1 for s in states.values() if s == "saved")
    counts = sorted({s for s in states.values() if s != "saved"})
    notes = [f"{sum(1 for v in states.values() if v == s)} {s}" for s in counts]
    entries = settled_ledger(sim)
    notes.append(f"attempts {sum(attempts.values())} for {len(ids)} jobs")
    if failed:
        shown = ", ".join(f"{n} {what}" for what, n in sorted(failed.items()))
        notes.append(f"polls that failed (tried again): {shown}")
    ledger = LedgerSummary.of(entries)
    at_kill = in_flight(entries, disruptions.killed_at)
    notes = [*disruptions.happened, *notes]
    return Way("this service", o.jobs, saved, wall, ledger, tuple(notes), at_kill)


# --- the anchor: a plain SDK loop in a process of its own -------------------------------------


def blob_name(index: int) -> str:
    return f"job-{index:03d}.png"


def sdk_worker(sim_url: str, connection: str, container: str, bodies: list[dict[str, Any]]) -> int:
    """The plain loop (a child process): every job whose image is not stored yet, one thread
    each, SDK defaults; prints how many it stored."""
    import base64

    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient
    from openai import AzureOpenAI, OpenAIError

    client = AzureOpenAI(azure_endpoint=sim_url, api_key="bench-key", api_version=API_VERSION)
    blobs = BlobServiceClient.from_connection_string(connection).get_container_client(container)
    with contextlib.suppress(ResourceExistsError):
        blobs.create_container()

    def one(index: int) -> bool:
        target = blobs.get_blob_client(blob_name(index))
        if target.exists():
            return False
        body = dict(bodies[index])
        try:
            stream = client.images.generate(model=DEPLOYMENT, stream=True, **body)
            image = b""
            for event in stream:
                if event.type == "image_generation.completed":
                    image = base64.b64decode(event.b64_json)
        except OpenAIError:
            return False
        if not image:
            return False
        target.upload_blob(image, overwrite=True)
        return True

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        stored = sum(pool.map(one, range(len(bodies))))
    print(stored, flush=True)
    return 0


class SdkLoop:
    """The loop's process: started, killed hard, started again (it resumes)."""

    def __init__(self, stack: LocalStack, o: Options, container: str, state: Path) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "bench.fault_mix",
            "--sdk-worker",
            json.dumps(
                {
                    "sim": stack.simulator_url,
                    "connection": stack.storage_connection_string,
                    "container": container,
                    "bodies": o.bodies(),
                }
            ),
        ]
        self.container = container
        self.log = state / f"{container}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        with self.lock, self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
                self.argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )

    def kill_and_restart(self) -> None:
        with self.lock:
            process = self.process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        self.start()

    def wait(self, deadline: float) -> None:
        while True:
            with self.lock:
                process = self.process
            assert process is not None
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                return
            with self.lock:
                if self.process is process:
                    return


def stored_images(connection: str, container: str) -> int:
    """How many of the loop's images are in Blob (tried again while Azurite restarts)."""
    from azure.storage.blob import BlobServiceClient

    blobs = BlobServiceClient.from_connection_string(connection).get_container_client(container)
    return sum(1 for _ in blobs.list_blobs())


def sdk_way(
    stack: LocalStack, sim: httpx.Client, o: Options, state: Path, log: Callable[[str], None]
) -> Way:
    prepare(sim, o)
    loop = SdkLoop(stack, o, f"sdk-loop-{int(time.time())}", state)
    disruptions = Disruptions(o, loop.kill_and_restart, stack, log, sim)
    started = time.monotonic()
    loop.start()
    disruptions.start(started)
    time.sleep(max(0.0, o.kill_at_s - (time.monotonic() - started)))
    disruptions.join()  # the kill happened, the loop runs again: wait for its second life
    loop.wait(started + o.deadline_s)
    wall = time.monotonic() - started
    saved = stored_images(stack.storage_connection_string, loop.container)
    entries = settled_ledger(sim)
    ledger = LedgerSummary.of(entries)
    at_kill = in_flight(entries, disruptions.killed_at)
    notes = tuple(disruptions.happened)
    return Way("SDK loop, default retries", o.jobs, saved, wall, ledger, notes, at_kill)


def prepare(sim: httpx.Client, o: Options) -> None:
    """A reset ledger and fault queue, then this run's faults."""
    reset(sim)
    for fault in o.faults():
        sim.post("/_sim/faults", json=fault).raise_for_status()


# --- the result -------------------------------------------------------------------------------


@dataclass
class FaultMixResult:
    options: Options
    ways: list[Way]
    date: str

    def way(self, name_start: str) -> Way | None:
        return next((w for w in self.ways if w.name.startswith(name_start)), None)

    def machine(self) -> str:
        return (
            f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}, openai {version('openai')}, "
            f"azure-storage-blob {version('azure-storage-blob')}, "
            f"azure-functions-durable {version('azure-functions-durable')}"
        )

    def lines(self) -> list[str]:
        o = self.options
        out = [
            f"fault mix, {self.date}, {self.machine()}",
            f"{o.small} x 1024x1024 low (partial_images 1) + {o.large} x 2048x2048 high "
            f"(partial_images 0) at once, Azure route behind a 60 s gateway; faults: a 429 storm "
            f"of {o.storm} (retry-after {STORM_RETRY_AFTER_S:g} s), {o.mid_stream} mid-stream "
            f"server errors after the first partial, storage down at {o.outage_at_s:g} s for "
            f"{o.outage_s:g} s, the worker killed at {o.kill_at_s:g} s"
            + (" or after, once a 2048x2048 generation runs" if o.kill_in_flight else "")
            + "; time scale "
            f"{o.time_scale:g}",
            "",
        ]
        out += table(
            [
                "way",
                "saved",
                "images lost",
                "requests",
                "billable",
                "billable per saved image",
                "duplicates",
                "in flight at the kill",
                "duplicates beyond them",
                "429s",
                "wall s",
            ],
            [w.row() for w in self.ways],
        )
        out.append("")
        for w in self.ways:
            if w.notes:
                out.append(f"- {w.name}: {'; '.join(w.notes)}")
        ours = self.way("this service")
        if ours is not None:
            out.append(
                f"targets: images lost <= {TARGET_LOST}: {ours.lost}; duplicates beyond the "
                f"generations in flight at the worker kill <= {TARGET_AVOIDABLE}: "
                f"{ours.avoidable} ({'met' if ours.met else 'MISSED'})"
            )
        return out


# --- the whole run ----------------------------------------------------------------------------


def run(options: Options | None = None, *, log: Callable[[str], None] = print) -> FaultMixResult:
    o = options or Options()
    with tempfile.TemporaryDirectory(prefix="bench-fault-mix-") as tmp:
        state = Path(tmp)
        stack = free_port_stack(
            state,
            time_scale=o.time_scale,
            azurite_location=state / "azurite",
        )
        with stack, httpx.Client(base_url=stack.simulator_url, timeout=30.0) as sim:
            date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            ways = []
            log("SDK loop ...")
            ways.append(sdk_way(stack, sim, o, state, log))
            log(f"SDK loop: {ways[-1].row()}")
            log("this service ...")
            ways.append(service_way(stack, sim, o, log))
            log(f"this service: {ways[-1].row()}")
    return FaultMixResult(o, ways, date)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fault_mix", description=__doc__)
    p.add_argument("--small", type=int, default=Options.small, help="1024x1024 low jobs")
    p.add_argument("--large", type=int, default=Options.large, help="2048x2048 high jobs")
    p.add_argument("--storm", type=int, default=Options.storm, help="429s in the storm")
    p.add_argument("--mid-stream", type=int, default=Options.mid_stream)
    p.add_argument("--time-scale", type=float, default=Options.time_scale)
    p.add_argument("--outage-at", type=float, default=Options.outage_at_s)
    p.add_argument("--outage-s", type=float, default=Options.outage_s)
    p.add_argument("--kill-at", type=float, default=Options.kill_at_s)
    p.add_argument("--sdk-worker", help=argparse.SUPPRESS)  # the loop's child process
    args = p.parse_args(argv)
    if args.sdk_worker is not None:
        spec: Mapping[str, Any] = json.loads(args.sdk_worker)
        return sdk_worker(spec["sim"], spec["connection"], spec["container"], spec["bodies"])
    options = Options(
        small=args.small,
        large=args.large,
        storm=args.storm,
        mid_stream=args.mid_stream,
        time_scale=args.time_scale,
        outage_at_s=args.outage_at,
        outage_s=args.outage_s,
        kill_at_s=args.kill_at,
    )
    result = run(options, log=lambda line: print(line, file=sys.stderr, flush=True))
    for line in result.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
