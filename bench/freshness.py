"""Freshness: a partial image leaving the route, until a poller can see it.

    python -m bench.freshness [--jobs 20] [--concurrency 4] [--time-scale 5] [--poll-s 0.1]
    (make bench-freshness)

One run on one machine starts the local stack (Azurite, the simulator, devhost on this app) with
no rate limit. Rounds of ``--concurrency`` 1024x1024 low jobs with partial_images 1 are started
at once, each followed by a client that asks for its status every ``--poll-s`` (100 ms) until
the answer lists a preview; beside them, in each round, one direct call through the official SDK
(streamed, partial_images 1, on the simulator's Azure v1 path), the anchor: what a client of the
route itself sees of the same partial.

The moment a partial image leaves the route is the simulator's own: its ledger records when the
request arrived (``received_at``, epoch s) and when the stream's first event, the first partial
image, was written (``first_byte_s`` later). A job's freshness is the poll answer that first
listed the preview (read, epoch s) minus that moment; the anchor's is the SDK's
``partial_image`` event decoded minus the same moment of its own request. Each job's prompt has a
length of its own, which ties it to its ledger entry. The preview is then also fetched from its
link (the bytes a page would show).

The time scale only shortens the generations around the partial: what is measured (the preview
decoded, stored, recorded, and a poll reading it) is the service's own work in wall seconds at
any scale. A measurement, not a test; results in docs/benchmarks.md.
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

from bench.ledger import reset, settled_ledger
from bench.stacks import free_port_stack
from bench.stats import percentile, ratio, table
from devhost.keys import load_or_create_keys

DEPLOYMENT = "gpt-image-2"
JOB = {"size": "1024x1024", "quality": "low", "partial_images": 1}
PROMPT = "a paper boat on a puddle after rain, close up"
# Prompt lengths: the anchor's, then one per service job of a round (BASE + its slot).
ANCHOR_CHARS = 90
BASE_CHARS = 100
# The poller, and the web page's promise: a preview shows within 2 s of being stored.
POLL_S = 0.1
TARGET_P95_S = 2.0


@dataclass(frozen=True)
class Options:
    jobs: int = 20
    concurrency: int = 4
    time_scale: float = 5.0
    poll_s: float = POLL_S

    @property
    def rounds(self) -> int:
        return max(1, -(-self.jobs // self.concurrency))


def prompt(chars: int, index: int) -> str:
    """A prompt of exactly ``chars`` characters, unique per round (``index``)."""
    text = f"{PROMPT}, {index:04d}"
    if len(text) > chars:
        raise ValueError(f"{chars} characters cannot hold {text!r}")
    return text.ljust(chars, ".")


def partial_left_at(entries: Sequence[Mapping[str, Any]]) -> dict[int, float]:
    """Prompt length -> when the first partial image of that request left the simulator (epoch
    s): its arrival plus its first byte, the stream's first event. Only requests that sent a
    partial count."""
    found: dict[int, float] = {}
    for entry in entries:
        chars = (entry.get("shape") or {}).get("prompt_chars")
        first = entry.get("first_byte_s")
        if not isinstance(chars, int) or first is None or not entry.get("partials_sent"):
            continue
        found[chars] = float(entry["received_at"]) + float(first)
    return found


@dataclass(frozen=True)
class Seen:
    """One job's (or the anchor's) preview: when the client saw it, epoch s."""

    chars: int
    seen_at: float | None  # the answer that first listed a preview was read / the SDK event
    fetched_at: float | None = None  # the preview's bytes fetched from its link
    polls: int = 0
    job_id: str | None = None
    state: str | None = None  # the job's end


@dataclass(frozen=True)
class Sample:
    """One preview's freshness, s (None: never seen, or the ledger has no partial)."""

    round: int
    anchor: bool
    visible_s: float | None
    fetched_s: float | None


def samples_of(index: int, seen: Sequence[Seen], left: Mapping[int, float]) -> list[Sample]:
    out = []
    for s in seen:
        at = left.get(s.chars)
        visible = None if at is None or s.seen_at is None else s.seen_at - at
        fetched = None if at is None or s.fetched_at is None else s.fetched_at - at
        out.append(Sample(index, s.chars == ANCHOR_CHARS, visible, fetched))
    return out


# --- the two clients --------------------------------------------------------------------------


def direct_call(client: Any, index: int) -> Seen:
    """The anchor: the official SDK, streamed; when its first partial image was decoded."""
    stream = client.images.generate(
        model=DEPLOYMENT, prompt=prompt(ANCHOR_CHARS, index), stream=True, **JOB
    )
    seen_at = None
    for event in stream:
        if event.type == "image_generation.partial_image" and seen_at is None:
            base64.b64decode(event.b64_json)
            seen_at = time.time()
    return Seen(ANCHOR_CHARS, seen_at)


async def service_job(
    http: httpx.AsyncClient, blobs: httpx.AsyncClient, chars: int, index: int, poll_s: float
) -> Seen:
    """Start a job, poll every ``poll_s`` until a preview is listed, fetch it, then follow the
    job to its end (more slowly: the round ends with every job)."""
    answer = await http.post("/api/images", json={"prompt": prompt(chars, index), **JOB})
    if answer.status_code != 202:
        raise RuntimeError(f"POST /api/images: {answer.status_code}: {answer.text[:300]}")
    status_url = answer.headers["location"]
    seen_at = fetched_at = None
    polls = 0
    body: dict[str, Any] = answer.json()
    while True:
        await asyncio.sleep(poll_s if seen_at is None else 0.5)
        answer = await http.get(status_url)
        read_at = time.time()
        polls += 1
        if answer.status_code not in (200, 202):
            raise RuntimeError(f"GET {status_url}: {answer.status_code}: {answer.text[:300]}")
        body = answer.json()
        previews = body.get("previews") or []
        if seen_at is None and previews:
            seen_at = read_at
            fetched = await blobs.get(previews[0]["url"])
            fetched.raise_for_status()
            fetched_at = time.time()
        if answer.status_code == 200:
            break
    return Seen(chars, seen_at, fetched_at, polls, body.get("id"), body.get("state"))


# --- the result -------------------------------------------------------------------------------


@dataclass
class FreshnessResult:
    options: Options
    samples: list[Sample]
    jobs: list[Seen]
    date: str

    def visible(self, *, anchor: bool) -> list[float]:
        return [s.visible_s for s in self.samples if s.anchor is anchor and s.visible_s is not None]

    def fetched(self) -> list[float]:
        return [s.fetched_s for s in self.samples if not s.anchor and s.fetched_s is not None]

    def p(self, q: float, *, anchor: bool = False) -> float | None:
        values = self.visible(anchor=anchor)
        return percentile(values, q) if values else None

    def missed(self) -> int:
        """Service jobs whose preview was never seen (or never sent)."""
        return sum(1 for s in self.samples if not s.anchor and s.visible_s is None)

    @property
    def met(self) -> bool:
        p95 = self.p(0.95)
        return p95 is not None and p95 <= TARGET_P95_S and not self.missed()

    def machine(self) -> str:
        return (
            f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}, openai {version('openai')}, "
            f"azure-functions-durable {version('azure-functions-durable')}"
        )

    def lines(self) -> list[str]:
        o = self.options

        def cells(values: Sequence[float]) -> list[str]:
            if not values:
                return ["0", "n/a", "n/a", "n/a"]
            return [
                str(len(values)),
                f"{percentile(values, 0.5) * 1000:.0f}",
                f"{percentile(values, 0.95) * 1000:.0f}",
                f"{max(values) * 1000:.0f}",
            ]

        ours = self.visible(anchor=False)
        anchor = self.visible(anchor=True)
        out = [
            f"freshness, {self.date}, {self.machine()}",
            f"{o.rounds} rounds of {o.concurrency} 1024x1024 low jobs at once (partial_images 1) "
            f"and one direct SDK call, a poller every {o.poll_s * 1000:g} ms per job, time scale "
            f"{o.time_scale:g}, no rate limit",
            "",
        ]
        out += table(
            ["from the partial leaving the route to", "n", "p50 ms", "p95 ms", "max ms"],
            [
                ["the status answer listing it (this service, the poller)", *cells(ours)],
                ["... and its bytes fetched from the link", *cells(self.fetched())],
                ["the SDK's partial_image event decoded (direct call)", *cells(anchor)],
            ],
        )
        p50, p95 = self.p(0.5), self.p(0.95)
        a50, a95 = self.p(0.5, anchor=True), self.p(0.95, anchor=True)
        out.append("")
        if p50 is not None and p95 is not None and a50 and a95:
            out.append(
                f"ratio to the direct call: p50 {ratio(p50, a50):.0f}x, p95 {ratio(p95, a95):.0f}x"
                f" (the anchor is a stream's own delivery: it bounds what any poller could do)"
            )
        verdict = "met" if self.met else "MISSED"
        shown = "n/a" if p95 is None else f"{p95:.2f} s"
        out.append(
            f"target: p95 <= {TARGET_P95_S:g} s (a preview shows within 2 s): {shown} "
            f"({verdict}); previews never seen: {self.missed()}"
        )
        polls = [s.polls for s in self.jobs]
        if polls:
            out.append(
                f"polls per job (to its end): median {statistics.median(polls):g}; the poll "
                f"interval alone adds {o.poll_s * 500:.0f} ms on average"
            )
        ended = [str(s.state) for s in self.jobs]
        others = sorted(set(ended) - {"saved"})
        out.append(
            f"jobs: {ended.count('saved')}/{len(ended)} saved"
            + "".join(f", {ended.count(s)} {s}" for s in others)
        )
        return out


# --- the whole run ----------------------------------------------------------------------------


def run(options: Options | None = None, *, log: Callable[[str], None] = print) -> FreshnessResult:
    from openai import OpenAI

    o = options or Options()
    with tempfile.TemporaryDirectory(prefix="bench-freshness-") as tmp:
        stack = free_port_stack(
            Path(tmp),
            time_scale=o.time_scale,
        )
        with stack, httpx.Client(base_url=stack.simulator_url, timeout=30.0) as sim:
            keys, _ = load_or_create_keys(stack.devhost_state)
            client = OpenAI(base_url=f"{stack.simulator_url}/openai/v1", api_key="bench-key")
            date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

            async def measure() -> tuple[list[Sample], list[Seen]]:
                samples: list[Sample] = []
                jobs: list[Seen] = []
                async with (
                    httpx.AsyncClient(
                        base_url=stack.devhost_url,
                        headers={"x-functions-key": keys.default_function_key},
                        timeout=60,
                    ) as http,
                    httpx.AsyncClient(timeout=60) as blobs,
                ):
                    left = o.jobs
                    for index in range(o.rounds):
                        count = min(o.concurrency, left)
                        left -= count
                        await asyncio.to_thread(reset, sim)
                        seen = await asyncio.gather(
                            asyncio.to_thread(direct_call, client, index),
                            *(
                                service_job(http, blobs, BASE_CHARS + k, index, o.poll_s)
                                for k in range(count)
                            ),
                        )
                        entries = await asyncio.to_thread(settled_ledger, sim)
                        found = samples_of(index, seen, partial_left_at(entries))
                        samples += found
                        jobs += seen[1:]
                        shown = ", ".join(
                            "n/a" if s.visible_s is None else f"{s.visible_s * 1000:.0f}"
                            for s in found
                        )
                        log(f"round {index}: anchor, jobs ms: {shown}")
                return samples, jobs

            samples, jobs = asyncio.run(measure())
    return FreshnessResult(o, samples, jobs, date)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.freshness", description=__doc__)
    p.add_argument("--jobs", type=int, default=Options.jobs, help="service jobs in all")
    p.add_argument("--concurrency", type=int, default=Options.concurrency, help="jobs at once")
    p.add_argument("--time-scale", type=float, default=Options.time_scale)
    p.add_argument("--poll-s", type=float, default=Options.poll_s, help="the poller's interval")
    args = p.parse_args(argv)
    options = Options(args.jobs, args.concurrency, args.time_scale, args.poll_s)
    result = run(options, log=lambda line: print(line, file=sys.stderr, flush=True))
    for line in result.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
