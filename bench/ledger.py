"""The simulator's ledger as the benchmarks read it: what reached the route, what was refused,
what was billed, and when.

    entries = settled_ledger(sim)           # once every generation has ended upstream
    summary = LedgerSummary.of(entries)
    summary.rate_limited, summary.billable, summary.median_generation_s

The ledger's times are the simulator's wall clock (``received_at``: epoch seconds when the request
arrived) and its durations are scaled (``generation_s``: seconds of the run's own clock), so they
compare directly with a client's ``time.time()`` on the same machine. Entries never hold the
prompt, only its length (``shape.prompt_chars``), which is how a benchmark tells one job's
requests from another's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

# The ledger's outcome for a request its rate limiter refused.
RATE_LIMITED = 429


@dataclass(frozen=True)
class LedgerSummary:
    """One run's ledger, summed up. Times are epoch seconds, sorted."""

    requests: int
    rate_limited: int
    billable: int
    completed: int
    # When each request that the limiter let through arrived (a generation started).
    sends: tuple[float, ...]
    # When each refused request (429) arrived.
    refusals: tuple[float, ...]
    # (when, prompt length) of each request let through, by arrival.
    accepted: tuple[tuple[float, int], ...]
    # generation_s of every completed generation (seconds of the run's clock).
    generation_s: tuple[float, ...]
    # prompt length -> when the first request with a prompt of that length arrived.
    first_arrival: Mapping[int, float]
    # prompt length -> when the first request of that length that was let through arrived.
    accepted_arrival: Mapping[int, float]

    @classmethod
    def of(cls, entries: Sequence[Mapping[str, Any]]) -> LedgerSummary:
        sends: list[float] = []
        refusals: list[float] = []
        generation: list[float] = []
        first: dict[int, float] = {}
        accepted: dict[int, float] = {}
        let_through: list[tuple[float, int]] = []
        for entry in entries:
            at = float(entry["received_at"])
            if entry.get("status") == RATE_LIMITED:
                refusals.append(at)
            elif entry.get("generation_started"):
                sends.append(at)
            if entry.get("outcome") == "completed" and entry.get("generation_s") is not None:
                generation.append(float(entry["generation_s"]))
            shape = entry.get("shape") or {}
            chars = shape.get("prompt_chars")
            if isinstance(chars, int):
                first[chars] = min(at, first.get(chars, at))
                if entry.get("generation_started"):
                    accepted[chars] = min(at, accepted.get(chars, at))
                    let_through.append((at, chars))
        return cls(
            requests=len(entries),
            rate_limited=len(refusals),
            billable=sum(1 for entry in entries if entry.get("billable")),
            completed=len(generation),
            sends=tuple(sorted(sends)),
            refusals=tuple(sorted(refusals)),
            accepted=tuple(sorted(let_through)),
            generation_s=tuple(generation),
            first_arrival=first,
            accepted_arrival=accepted,
        )

    @property
    def median_generation_s(self) -> float | None:
        return statistics.median(self.generation_s) if self.generation_s else None

    def billable_per_saved(self, saved: int) -> float | None:
        return self.billable / saved if saved else None


def settled_ledger(sim: httpx.Client, *, timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """The ledger once no request is in progress and every generation that started has ended
    upstream (one whose client went away runs on, and is billed when it ends)."""
    deadline = time.monotonic() + timeout_s
    while True:
        entries: list[dict[str, Any]] = sim.get("/_sim/ledger").raise_for_status().json()
        running = [
            e
            for e in entries
            if e["outcome"] == "in_progress"
            or (e["generation_started"] and not e["upstream_done_at"])
        ]
        if not running:
            return entries
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(running)} simulator requests still running at {timeout_s} s")
        time.sleep(0.1)


def reset(sim: httpx.Client) -> None:
    """Clear the simulator's ledger, faults and rate-limit windows."""
    sim.post("/_sim/reset").raise_for_status()
