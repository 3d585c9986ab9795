"""devhost's log as the benchmarks read it: when each function of a job ran.

devhost writes one line per invocation when it ends, with its duration:

    [2026-11-30 09:20:11,794] devhost.engine INFO: function=generate_image invocationId=1d9...
        instanceId=img-3b5...-1 durationMs=2884.7 outcome=Succeeded

so each invocation's end is the line's time (local time, milliseconds) and its start is that
less its duration. An orchestrator episode is one invocation; the one whose outcome is
``Completed`` is the moment the job's answer turns final (what a poller can see next).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_LINE = re.compile(
    r"^\[(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] devhost\.engine \w+: "
    r"function=(?P<function>\w+) invocationId=\S+ instanceId=(?P<instance>\S+) "
    r"durationMs=(?P<ms>[\d.]+) outcome=(?P<outcome>\w+)"
)


@dataclass(frozen=True)
class Invocation:
    """One function invocation; times are epoch seconds."""

    function: str
    instance: str
    start: float
    end: float
    outcome: str


def log_time(text: str) -> float:
    """``2026-11-30 09:20:11,794`` (the machine's local time, as logging writes it) as epoch s."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def invocations(lines: Iterable[str]) -> list[Invocation]:
    found = []
    for line in lines:
        match = _LINE.match(line)
        if match is None:
            continue
        end = log_time(match["at"])
        found.append(
            Invocation(
                function=match["function"],
                instance=match["instance"],
                start=end - float(match["ms"]) / 1000,
                end=end,
                outcome=match["outcome"],
            )
        )
    return found


def read_invocations(path: Path) -> list[Invocation]:
    with path.open(encoding="utf-8", errors="replace") as f:
        return invocations(f)


@dataclass(frozen=True)
class JobClocks:
    """One job's moments from the log (epoch s; None: not in the log)."""

    first_episode_end: float | None  # the first orchestrator episode (it asks the governor)
    activity_start: float | None  # the first generate_image invocation began
    completed: float | None  # the orchestration completed: its answer is final

    @classmethod
    def of(cls, found: Sequence[Invocation], instance: str, orchestrator: str) -> JobClocks:
        mine = sorted((i for i in found if i.instance == instance), key=lambda i: i.end)
        episodes = [i for i in mine if i.function == orchestrator]
        activities = [i for i in mine if i.function == "generate_image"]
        completed = [i for i in episodes if i.outcome == "Completed"]
        return cls(
            first_episode_end=episodes[0].end if episodes else None,
            activity_start=min(i.start for i in activities) if activities else None,
            completed=completed[-1].end if completed else None,
        )


@dataclass(frozen=True)
class FunctionLoad:
    """How often a function ran in a stretch of the log, and for how long (its durationMs)."""

    function: str
    count: int
    total_s: float
    p50_ms: float
    max_ms: float


def load(found: Sequence[Invocation], start: float, end: float) -> list[FunctionLoad]:
    """Per function, the invocations that ended between ``start`` and ``end`` (epoch s)."""
    by_function: dict[str, list[float]] = {}
    for i in found:
        if start <= i.end <= end:
            by_function.setdefault(i.function, []).append((i.end - i.start) * 1000)
    out = []
    for function, durations in sorted(by_function.items()):
        durations.sort()
        out.append(
            FunctionLoad(
                function=function,
                count=len(durations),
                total_s=sum(durations) / 1000,
                p50_ms=durations[len(durations) // 2],
                max_ms=durations[-1],
            )
        )
    return out
