"""Retry-After: a client that sleeps exactly the Retry-After it is given, against a direct call.

    python -m bench.retry_after [--rounds 8] [--warmup 8]
        [--size 1024x1024] [--quality low] [--time-scale 1] [--route azure]
    (make bench-retry-after; bench.overhead runs it for 1024 low, 2048 high and 3840x2160 high)

One run on one machine starts the local stack (Azurite, the simulator, devhost on this app) in
real time (time scale 1: Retry-After is whole seconds, so a scaled run would round its waits
away) with no rate limit. First ``--warmup`` jobs of the measured shape run at once, so that
the route has learned the shape class's clocks (it uses them after 5 saved attempts; before
that, the calibration's deliberately long guess) and the SDK's connection is open. Then each
round starts three jobs of the shape (default 1024x1024 low) at the same moment:

(a) a direct call: the official SDK (``openai.OpenAI`` on the simulator's Azure v1 path),
    streamed with partial_images 1 as the service sends it, until the final image's bytes are
    decoded;
(b) this service, with a client that sleeps exactly the Retry-After of the 202 and of every
    status answer until the status says ``saved``;
(c) this service, with a client that asks every 100 ms.

Reported: the median of each, the ratios (b)/(a) and (c)/(a), and the same ratios with each job's
own generation time (the simulator's ledger) swapped for the direct call's, which takes the
simulator's +-9 % jitter out of the comparison. Where the time goes: post -> send, the service's
own time to its final answer (devhost's log), and how long after that each client saw it.
A larger shape does not fit real time (2048x2048 high is ~230 s a generation, 3840x2160 high
~370 s): ``--time-scale`` runs the simulator and the service on a faster clock, and the direct
call meets the same simulator at the same scale; Retry-After stays whole seconds, so the report
says how much of the figure that rounding is.
A measurement, not a test; results in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

from bench.devhost_log import JobClocks, read_invocations
from bench.history import JobHistory
from bench.ledger import reset, settled_ledger
from bench.stacks import free_port_stack
from bench.stats import ratio, table
from devhost.keys import load_or_create_keys

DEPLOYMENT = "gpt-image-2"
ORCHESTRATOR = "image_job"
PROMPT = "a red apple on a wooden table, morning light"
# The three ways' prompts have these lengths, so each round's ledger tells them apart.
CHARS = {"direct": 100, "retry-after": 101, "100 ms": 102, "warm-up": 103}
POLL_S = 0.1
TARGET = 1.03  # the issue: within 3 % of the direct call
WEBHOOK = "/runtime/webhooks/durabletask"


@dataclass(frozen=True)
class Options:
    rounds: int = 8
    warmup: int = 8
    size: str = "1024x1024"
    quality: str = "low"
    time_scale: float = 1.0
    # "azure": the simulator's Azure deployment, the SDK on its v1 path (/openai/v1); "openai":
    # the OpenAI route (/v1), without Azure's 60 s gateway, which a streamed 4K high request's
    # first minute of silence would meet.
    route: str = "azure"

    def job(self) -> dict[str, Any]:
        """The body of each of the service's jobs, less the prompt."""
        body: dict[str, Any] = {"size": self.size, "quality": self.quality, "partial_images": 1}
        if self.route != "azure":
            body["route"] = self.route
        return body

    def shape(self) -> str:
        return f"{self.size} {self.quality}"

    def sdk_path(self) -> str:
        """The simulator's path for the direct call of the same route."""
        return "/openai/v1" if self.route == "azure" else "/v1"


def prompt(way: str, index: int) -> str:
    text = f"{PROMPT}, {way} {index:04d}"
    return text.ljust(CHARS[way], ".")


def retry_after(headers: httpx.Headers) -> float:
    """The Retry-After of an answer in seconds (the service sends whole seconds)."""
    raw = headers.get("retry-after")
    if raw is None:
        raise RuntimeError("a running job's answer carries no Retry-After")
    return float(raw)


def corrected(took_s: float, generation_s: float, direct_generation_s: float) -> float:
    """``took_s`` had its generation lasted as long as the direct call's: the simulator's
    jitter is taken out, the rest (our overhead, the client's waits) stays."""
    return took_s - generation_s + direct_generation_s


def median_ratio(ours: Sequence[float], theirs: Sequence[float]) -> float:
    """The ratio of the medians."""
    return ratio(statistics.median(ours), statistics.median(theirs))


def paired_ratios(ours: Sequence[float], theirs: Sequence[float]) -> list[float]:
    return [ratio(a, b) for a, b in zip(ours, theirs, strict=True)]


# --- the three ways ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Direct:
    took_s: float


@dataclass(frozen=True)
class Polled:
    job_id: str
    posted_at: float  # epoch s, just before the POST
    took_s: float  # the POST until the answer that said saved
    image_s: float  # ... and the image's bytes fetched from its link
    polls: int
    waits: tuple[float, ...]  # the Retry-After values slept (or the poll interval)
    sent_at: float | None  # timings.requestStartedAt, epoch s


def direct_call(client: Any, index: int, o: Options | None = None) -> Direct:
    o = o or Options()
    started = time.perf_counter()
    stream = client.images.generate(
        model=DEPLOYMENT,
        prompt=prompt("direct", index),
        stream=True,
        size=o.size,
        quality=o.quality,
        partial_images=1,
    )
    image = b""
    for event in stream:
        if event.type == "image_generation.completed":
            image = base64.b64decode(event.b64_json)
    if not image:
        raise RuntimeError("the direct call ended without an image")
    return Direct(time.perf_counter() - started)


async def service_job(
    http: httpx.AsyncClient,
    blobs: httpx.AsyncClient,
    way: str,
    index: int,
    *,
    fixed_poll_s: float | None,
    job: Mapping[str, Any] | None = None,
) -> Polled:
    """Start a job and follow it: sleeping each Retry-After (``fixed_poll_s`` None) or every
    ``fixed_poll_s``, until its status says saved; then fetch the image from its link."""
    posted_at = time.time()
    started = time.perf_counter()
    body = {"prompt": prompt(way, index), **(job if job is not None else Options().job())}
    answer = await http.post("/api/images", json=body)
    if answer.status_code != 202:
        raise RuntimeError(f"POST /api/images: {answer.status_code}: {answer.text[:300]}")
    status_url = answer.headers["location"]
    waits: list[float] = []
    while True:
        wait = fixed_poll_s if fixed_poll_s is not None else retry_after(answer.headers)
        waits.append(wait)
        await asyncio.sleep(wait)
        answer = await http.get(status_url)
        if answer.status_code == 200:
            break
        if answer.status_code != 202:
            raise RuntimeError(f"GET {status_url}: {answer.status_code}: {answer.text[:300]}")
    took = time.perf_counter() - started
    body = answer.json()
    if body["state"] != "saved":
        raise RuntimeError(f"job {body['id']} ended {body['state']}: {body.get('error')}")
    image = await blobs.get(body["image"]["url"])
    image.raise_for_status()
    sent = body["timings"].get("requestStartedAt")
    return Polled(
        job_id=body["id"],
        posted_at=posted_at,
        took_s=took,
        image_s=time.perf_counter() - started,
        polls=len(waits),
        waits=tuple(waits),
        sent_at=datetime.fromisoformat(sent).timestamp() if sent else None,
    )


@dataclass(frozen=True)
class Round:
    index: int
    direct: Direct
    retry_after: Polled
    poller: Polled
    generation_s: dict[str, float]  # way -> the ledger's generation time

    def corrected(self, way: str) -> float:
        took = self.retry_after.took_s if way == "retry-after" else self.poller.took_s
        return corrected(took, self.generation_s[way], self.generation_s["direct"])


async def one_round(
    http: httpx.AsyncClient, blobs: httpx.AsyncClient, client: Any, index: int, o: Options
) -> tuple[Direct, Polled, Polled]:
    """The three ways at once: the same moment, the same machine load."""
    job = o.job()
    return await asyncio.gather(
        asyncio.to_thread(direct_call, client, index, o),
        service_job(http, blobs, "retry-after", index, fixed_poll_s=None, job=job),
        service_job(http, blobs, "100 ms", index, fixed_poll_s=POLL_S, job=job),
    )


async def warm_up(
    http: httpx.AsyncClient, blobs: httpx.AsyncClient, client: Any, count: int, o: Options
) -> None:
    """``count`` jobs of the measured shape at once (and one direct call): the route learns
    the class's clocks, the connections open."""
    job = o.job()
    jobs = [service_job(http, blobs, "warm-up", i, fixed_poll_s=0.5, job=job) for i in range(count)]
    await asyncio.gather(asyncio.to_thread(direct_call, client, 9999, o), *jobs)


# --- the result -------------------------------------------------------------------------------


@dataclass
class RetryAfterResult:
    options: Options
    rounds: list[Round]
    clocks: dict[str, JobClocks]
    histories: list[JobHistory]
    learned_samples: int | None
    date: str

    def machine(self) -> str:
        return (
            f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}, openai {version('openai')}, "
            f"azure-functions-durable {version('azure-functions-durable')}"
        )

    def direct_s(self) -> float:
        """(a): the direct call's median, s."""
        return statistics.median(r.direct.took_s for r in self.rounds)

    def took_s(self, way: str) -> float:
        """(b) ``retry-after`` or (c) ``100 ms``: the median to the saved answer, s."""
        return statistics.median(self._took(way))

    def _took(self, way: str) -> list[float]:
        return [(r.retry_after if way == "retry-after" else r.poller).took_s for r in self.rounds]

    def ratio(self, way: str) -> float:
        """The way's median over the direct call's."""
        return median_ratio(self._took(way), [r.direct.took_s for r in self.rounds])

    def paired_ratio(self, way: str) -> float:
        """The median of the rounds' ratios with the simulator's jitter taken out."""
        fixed = [r.corrected(way) for r in self.rounds]
        return statistics.median(paired_ratios(fixed, [r.direct.took_s for r in self.rounds]))

    def seen_after_final_s(self, way: str) -> float | None:
        """The median time from the job's answer turning final to the way's client seeing it."""
        seen = []
        for r in self.rounds:
            polled = r.retry_after if way == "retry-after" else r.poller
            clocks = self.clocks.get(polled.job_id)
            if clocks is not None and clocks.completed is not None:
                seen.append(polled.posted_at + polled.took_s - clocks.completed)
        return statistics.median(seen) if seen else None

    def lines(self) -> list[str]:
        rs = self.rounds
        a = [r.direct.took_s for r in rs]
        b = [r.retry_after.took_s for r in rs]
        c = [r.poller.took_s for r in rs]
        b_img = [r.retry_after.image_s for r in rs]
        c_img = [r.poller.image_s for r in rs]
        b_fix = [r.corrected("retry-after") for r in rs]
        c_fix = [r.corrected("100 ms") for r in rs]
        gen = [r.generation_s["direct"] for r in rs]

        def med(values: Sequence[float]) -> str:
            return f"{statistics.median(values):.2f}"

        out = [
            f"retry-after, {self.date}, {self.machine()}",
            f"{len(rs)} rounds of three {self.options.shape()} jobs started at once "
            f"(partial_images 1, streamed, route {self.options.route}), time scale "
            f"{self.options.time_scale:g}, no rate limit; after {self.options.warmup} warm-up jobs "
            f"(the route's class had {self.learned_samples} learned samples)",
            "",
        ]
        out += table(
            [
                "way",
                "median s",
                "min-max s",
                "ratio to (a), medians",
                "median of paired ratios, jitter taken out",
                "polls (median)",
            ],
            [
                [
                    "(a) direct SDK call, streamed, to decoded image bytes",
                    med(a),
                    f"{min(a):.2f}-{max(a):.2f}",
                    "1.00x",
                    "",
                    "",
                ],
                [
                    "(b) service, client sleeps each Retry-After, to the saved answer",
                    med(b),
                    f"{min(b):.2f}-{max(b):.2f}",
                    f"{median_ratio(b, a):.3f}x",
                    f"{statistics.median(paired_ratios(b_fix, a)):.3f}x",
                    f"{statistics.median(r.retry_after.polls for r in rs):g}",
                ],
                [
                    "(b) ... and the image fetched",
                    med(b_img),
                    f"{min(b_img):.2f}-{max(b_img):.2f}",
                    f"{median_ratio(b_img, a):.3f}x",
                    "",
                    "",
                ],
                [
                    "(c) service, 100 ms poller, to the saved answer",
                    med(c),
                    f"{min(c):.2f}-{max(c):.2f}",
                    f"{median_ratio(c, a):.3f}x",
                    f"{statistics.median(paired_ratios(c_fix, a)):.3f}x",
                    f"{statistics.median(r.poller.polls for r in rs):g}",
                ],
                [
                    "(c) ... and the image fetched",
                    med(c_img),
                    f"{min(c_img):.2f}-{max(c_img):.2f}",
                    f"{median_ratio(c_img, a):.3f}x",
                    "",
                    "",
                ],
            ],
        )
        over = median_ratio(b, a)
        out += [
            "",
            f"target: (b) within {TARGET:g}x of (a): {over:.3f}x "
            f"({'met' if over <= TARGET else 'MISSED'}); median generation of the direct calls "
            f"{statistics.median(gen):.2f} s (ledger)",
            "",
            "per round (s): (a) direct | (b) took, Retry-After waits, seen after final | "
            "(c) took, seen after final | post -> send (b, c) | ours to final (b, c)",
            "",
        ]
        rows = []
        for r in rs:
            cells = [str(r.index), f"{r.direct.took_s:.2f}"]
            seen: list[str] = []
            sends: list[str] = []
            finals: list[str] = []
            for polled in (r.retry_after, r.poller):
                clocks = self.clocks.get(polled.job_id)
                done = clocks.completed if clocks else None
                end = polled.posted_at + polled.took_s
                seen.append("n/a" if done is None else f"{end - done:.2f}")
                sends.append(
                    "n/a" if polled.sent_at is None else f"{polled.sent_at - polled.posted_at:.2f}"
                )
                finals.append("n/a" if done is None else f"{done - polled.posted_at:.2f}")
            waits = "+".join(f"{w:g}" for w in r.retry_after.waits)
            cells += [
                f"{r.retry_after.took_s:.2f}",
                waits,
                seen[0],
                f"{r.poller.took_s:.2f}",
                seen[1],
                f"{sends[0]}, {sends[1]}",
                f"{finals[0]}, {finals[1]}",
            ]
            rows.append(cells)
        out += table(
            [
                "round",
                "(a)",
                "(b)",
                "(b) waits",
                "(b) seen after final",
                "(c)",
                "(c) seen after final",
                "post -> send",
                "post -> final",
            ],
            rows,
        )
        out += ["", *self.where_the_time_goes()]
        return out

    def where_the_time_goes(self) -> list[str]:
        """Medians over the service's jobs, (b) and (c) together, s from the POST."""
        polled = [p for r in self.rounds for p in (r.retry_after, r.poller)]
        sends = [p.sent_at - p.posted_at for p in polled if p.sent_at is not None]
        finals: list[float] = []
        seen_b: list[float] = []
        seen_c: list[float] = []
        for r in self.rounds:
            for p, seen in ((r.retry_after, seen_b), (r.poller, seen_c)):
                clocks = self.clocks.get(p.job_id)
                if clocks is None or clocks.completed is None:
                    continue
                finals.append(clocks.completed - p.posted_at)
                seen.append(p.posted_at + p.took_s - clocks.completed)
        direct = [r.direct.took_s for r in self.rounds]
        gen_direct = [r.generation_s.get("direct") for r in self.rounds]
        gen_ours = [
            r.generation_s.get(way) for r in self.rounds for way in ("retry-after", "100 ms")
        ]
        trips = [t * 1000 for h in self.histories for t in h.entity_round_trips_s]
        out = ["where the time goes (medians, s):"]
        if sends:
            out.append(f"- service: POST -> request sent {statistics.median(sends):.3f}")
        if finals:
            out.append(
                f"- service: POST -> the orchestration completed (its answer final) "
                f"{statistics.median(finals):.2f}; generation at the simulator "
                f"{_median(gen_ours)}"
            )
        out.append(
            f"- direct call: {statistics.median(direct):.2f}, of which generation "
            f"{_median(gen_direct)}"
        )
        for name, seen in (("(b) Retry-After", seen_b), ("(c) 100 ms", seen_c)):
            if seen:
                out.append(
                    f"- {name} client saw the final answer {statistics.median(seen):.2f} after "
                    f"it was final (max {max(seen):.2f})"
                )
        if trips:
            out.append(
                f"- route entity round trips (durable history): {len(trips)}, p50 "
                f"{statistics.median(trips):.0f} ms, max {max(trips):.0f} ms"
            )
        return out


def _median(values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{statistics.median(known):.2f}" if known else "n/a"


# --- the whole run ----------------------------------------------------------------------------


def learned_samples(url: str, master_key: str, route: str = "azure") -> int | None:
    """How many saved attempts the route has learned for its busiest class (the route entity's
    state); None when the entity cannot be read."""
    answer = httpx.get(
        f"{url}{WEBHOOK}/entities/route/{route}", headers={"x-functions-key": master_key}
    )
    if answer.status_code != 200:
        return None
    classes = (answer.json() or {}).get("classes") or {}
    return max((len(c.get("total") or ()) for c in classes.values()), default=0)


async def job_history(http: httpx.AsyncClient, master_key: str, job: str) -> JobHistory:
    answer = await http.get(
        f"{WEBHOOK}/instances/{job}?showHistory=true&showHistoryOutput=true&showInput=false",
        headers={"x-functions-key": master_key},
    )
    answer.raise_for_status()
    return JobHistory.of(answer.json().get("historyEvents") or [])


def generation_by_way(entries: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Each way's generation time in one round's ledger, told apart by prompt length."""
    ways = {chars: way for way, chars in CHARS.items()}
    found = {}
    for entry in entries:
        chars = (entry.get("shape") or {}).get("prompt_chars")
        if chars in ways and entry.get("generation_s") is not None:
            found[ways[chars]] = float(entry["generation_s"])
    return found


def run(options: Options | None = None, *, log: Callable[[str], None] = print) -> RetryAfterResult:
    from openai import OpenAI

    o = options or Options()
    with tempfile.TemporaryDirectory(prefix="bench-retry-after-") as tmp:
        stack = free_port_stack(
            Path(tmp),
            time_scale=o.time_scale,
        )
        with stack, httpx.Client(base_url=stack.simulator_url, timeout=30.0) as sim:
            keys, _ = load_or_create_keys(stack.devhost_state)
            client = OpenAI(base_url=f"{stack.simulator_url}{o.sdk_path()}", api_key="bench-key")
            date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

            async def measure() -> tuple[list[Round], int | None, list[JobHistory]]:
                async with (
                    httpx.AsyncClient(
                        base_url=stack.devhost_url,
                        headers={"x-functions-key": keys.default_function_key},
                        timeout=60,
                    ) as http,
                    httpx.AsyncClient(timeout=60) as blobs,
                ):
                    log(f"warm-up: {o.warmup} jobs at once ...")
                    await warm_up(http, blobs, client, o.warmup, o)
                    learned = await asyncio.to_thread(
                        learned_samples, stack.devhost_url, keys.master_key, o.route
                    )
                    log(f"warm-up done: the route has {learned} learned samples of the class")
                    rounds = []
                    for i in range(o.rounds):
                        reset(sim)
                        direct, honours, fast = await one_round(http, blobs, client, i, o)
                        entries = await asyncio.to_thread(settled_ledger, sim)
                        rounds.append(Round(i, direct, honours, fast, generation_by_way(entries)))
                        log(
                            f"round {i}: direct {direct.took_s:.2f} s, Retry-After "
                            f"{honours.took_s:.2f} s, 100 ms {fast.took_s:.2f} s"
                        )
                    histories = await asyncio.gather(
                        *(
                            job_history(http, keys.master_key, p.job_id)
                            for r in rounds
                            for p in (r.retry_after, r.poller)
                        )
                    )
                    return rounds, learned, list(histories)

            rounds, learned, histories = asyncio.run(measure())
            found = read_invocations(stack.log_dir / "devhost.log")
            jobs = [p.job_id for r in rounds for p in (r.retry_after, r.poller)]
            clocks = {job: JobClocks.of(found, job, ORCHESTRATOR) for job in jobs}
    return RetryAfterResult(o, rounds, clocks, histories, learned, date)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.retry_after", description=__doc__)
    p.add_argument("--rounds", type=int, default=8, help="measured rounds (three jobs each)")
    p.add_argument("--warmup", type=int, default=8, help="warm-up jobs, at once")
    p.add_argument("--size", default=Options.size, help="the jobs' size")
    p.add_argument("--quality", default=Options.quality, help="the jobs' quality")
    p.add_argument(
        "--time-scale", type=float, default=Options.time_scale, help="simulator and service"
    )
    p.add_argument("--route", choices=("azure", "openai"), default=Options.route)
    args = p.parse_args(argv)
    result = run(
        Options(
            rounds=args.rounds,
            warmup=args.warmup,
            size=args.size,
            quality=args.quality,
            time_scale=args.time_scale,
            route=args.route,
        ),
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    for line in result.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
