"""The experiment matrix of field report A, run for real through the service.

    cells = matrix(["azure", "openai"], ["low"], ["1024x1024"], ["png", "jpeg"])
    results = run_matrix(settings.client, cells, runs=3, concurrency=2, prompt=PROMPT)
    summaries = summarize(results)
    write_csv(path, summaries); write_runs_csv(path, results); write_chart(path, summaries)

Each run is a real job (``POST /api/images`` with an ``Idempotency-Key`` of its own, so that
the service's dedup never folds two runs of one cell into one job), followed to its end at the
pace the service asks. A run keeps four clocks: first byte, first partial image and final
image (the service's, ms from the send of the attempt that ended the job) and total to saved
(this client's, ms from the start request to the answer that says ``saved``). Per cell: p50 and
p95 of each clock over the runs that have it, the success rate, errors by kind, and cost.

The chart is drawn with matplotlib on its Agg backend (no display needed); matplotlib is a
dependency of this tool, never of the service.
"""

from __future__ import annotations

import csv
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients.api import JobClient, Problem, Refused
from clients.follow import follow, poll_delay

# The clocks of a run, in the order they happen: (key, label).
CLOCKS = (
    ("first_byte_ms", "first byte"),
    ("first_partial_ms", "first partial"),
    ("final_image_ms", "final image"),
    ("total_ms", "total to saved"),
)
PERCENTILES = (50, 95)


class Stopped(Exception):
    """The comparison was interrupted (Ctrl-C): runs stop following their jobs."""


@dataclass(frozen=True, order=True)
class Cell:
    """One shape of the matrix: the route and the request's levers."""

    route: str
    quality: str
    size: str
    output_format: str

    @property
    def label(self) -> str:
        return f"{self.route}/{self.quality}/{self.size}/{self.output_format}"

    def request(self, prompt: str, partial_images: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": prompt,
            "route": self.route,
            "quality": self.quality,
            "size": self.size,
            "output_format": self.output_format,
        }
        if partial_images is not None:
            body["partial_images"] = partial_images
        return body


def matrix(
    routes: Sequence[str], qualities: Sequence[str], sizes: Sequence[str], formats: Sequence[str]
) -> list[Cell]:
    """Every combination, routes outermost, in the order given."""
    return [
        Cell(route, quality, size, output_format)
        for route in routes
        for quality in qualities
        for size in sizes
        for output_format in formats
    ]


@dataclass(frozen=True)
class RunResult:
    """One run of one cell: the job it made and how it went."""

    cell: Cell
    run: int
    job_id: str | None
    state: str
    # None when saved; else the job's error kind (``server_error``, ``rejected``...),
    # ``cancelled``, or ``client:<what>`` when this client could not see the job through.
    error_kind: str | None
    first_byte_ms: int | None = None
    first_partial_ms: int | None = None
    final_image_ms: int | None = None
    total_ms: int | None = None
    cost_usd: float | None = None
    cost_estimated: bool = False
    attempts: int | None = None
    # What went wrong on this side, for the person (the CSV keeps ``error_kind``).
    detail: str | None = None

    @property
    def saved(self) -> bool:
        return self.state == "saved"

    def clock(self, key: str) -> int | None:
        value: int | None = getattr(self, key)
        return value


def run_one(
    client: JobClient,
    cell: Cell,
    run: int,
    *,
    prompt: str,
    partial_images: int | None,
    poll_interval_s: float | None,
    timeout_s: float,
    sleep: Callable[[float], None],
    monotonic: Callable[[], float] = time.monotonic,
) -> RunResult:
    """Start one job of ``cell`` and follow it to its end. A failure of the job is a result;
    a failure to see it through (no connection, a refused start) is a result too, with an
    ``error_kind`` of ``client:...``, so one bad run never stops the comparison."""
    started = monotonic()
    key = f"compare-{uuid.uuid4().hex}"
    job_id: str | None = None
    try:
        answer = client.start(cell.request(prompt, partial_images), idempotency_key=key)
        job_id = str(answer.body["id"])
        final = follow(
            client,
            job_id,
            on_status=lambda _status, _next: None,
            poll_interval_s=poll_interval_s,
            first_delay_s=poll_delay(answer.retry_after_s, poll_interval_s),
            timeout_s=timeout_s,
            patience_s=min(60.0, timeout_s),
            sleep=sleep,
            monotonic=monotonic,
        )
    except Refused as refused:  # the service refused the start: every run of the cell will
        return RunResult(cell, run, job_id, "refused", "client:refused", detail=refused.message)
    except Problem as problem:
        name = type(problem).__name__.lower()
        return RunResult(cell, run, job_id, "unknown", f"client:{name}", detail=problem.message)
    ended = monotonic()
    state = str(final.get("state"))
    timings = final.get("timings") or {}
    error = final.get("error") or {}
    if state == "saved":
        kind = None
    elif state == "cancelled":
        kind = "cancelled"
    else:
        kind = str(error.get("kind") or final.get("failure") or state)
    return RunResult(
        cell,
        run,
        job_id,
        state,
        kind,
        first_byte_ms=_int(timings.get("firstByteMs")),
        first_partial_ms=_int(timings.get("firstPartialImageMs")),
        final_image_ms=_int(timings.get("finalImageMs")),
        total_ms=round((ended - started) * 1000) if state == "saved" else None,
        cost_usd=final.get("costUsd"),
        cost_estimated=bool(final.get("costEstimated")),
        attempts=_int(final.get("attempt")),
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def run_matrix(
    make_client: Callable[[], JobClient],
    cells: Sequence[Cell],
    *,
    runs: int,
    concurrency: int,
    prompt: str,
    partial_images: int | None = None,
    poll_interval_s: float | None = None,
    timeout_s: float = 900.0,
    on_result: Callable[[RunResult], None] = lambda _result: None,
    stop: threading.Event | None = None,
) -> list[RunResult]:
    """Every cell ``runs`` times, ``concurrency`` jobs at once, round by round (run 1 of every
    cell, then run 2...) so that a slow minute of the route falls on every cell alike.
    ``stop`` set (Ctrl-C) ends the runs still following; the results so far are returned."""
    stop = stop or threading.Event()

    def pause(seconds: float) -> None:
        if stop.wait(seconds):
            raise Stopped

    def task(cell: Cell, run: int) -> RunResult:
        if stop.is_set():
            raise Stopped
        with make_client() as client:
            return run_one(
                client,
                cell,
                run,
                prompt=prompt,
                partial_images=partial_images,
                poll_interval_s=poll_interval_s,
                timeout_s=timeout_s,
                sleep=pause,
            )

    order = [(cell, run) for run in range(1, runs + 1) for cell in cells]
    results: list[RunResult] = []
    executor = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="compare")
    try:
        pending: set[Future[RunResult]] = {executor.submit(task, c, r) for c, r in order}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    result = future.result()
                except Stopped:
                    continue
                results.append(result)
                on_result(result)
    except BaseException:
        stop.set()
        raise
    finally:
        # After a stop, the runs still going see it at their next pause and end at once.
        executor.shutdown(wait=True, cancel_futures=True)
    return sorted(results, key=lambda r: (r.cell, r.run))


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile by linear interpolation between the closest ranks (numpy's
    default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class CellSummary:
    cell: Cell
    runs: int
    saved: int
    # clock key -> {50: value, 95: value}
    clocks: dict[str, dict[int, float | None]]
    errors: Counter[str] = field(default_factory=Counter)
    cost_usd: float | None = None
    cost_estimated: bool = False

    @property
    def success_rate(self) -> float | None:
        return self.saved / self.runs if self.runs else None


def summarize(results: Iterable[RunResult]) -> list[CellSummary]:
    """One summary per cell, in matrix order."""
    by_cell: dict[Cell, list[RunResult]] = {}
    for result in results:
        by_cell.setdefault(result.cell, []).append(result)
    summaries = []
    for cell in sorted(by_cell):
        runs = by_cell[cell]
        clocks = {}
        for key, _label in CLOCKS:
            values = [v for v in (r.clock(key) for r in runs) if v is not None]
            clocks[key] = {p: percentile(values, p) for p in PERCENTILES}
        costs = [r.cost_usd for r in runs if r.cost_usd is not None]
        summaries.append(
            CellSummary(
                cell=cell,
                runs=len(runs),
                saved=sum(1 for r in runs if r.saved),
                clocks=clocks,
                errors=Counter(r.error_kind for r in runs if r.error_kind),
                cost_usd=round(sum(costs), 6) if costs else None,
                cost_estimated=any(r.cost_estimated for r in runs),
            )
        )
    return summaries


SUMMARY_COLUMNS = (
    "route",
    "quality",
    "size",
    "format",
    "runs",
    "saved",
    "success_rate",
    *(f"{key.removesuffix('_ms')}_p{p}_ms" for key, _label in CLOCKS for p in PERCENTILES),
    "errors",
    "cost_usd",
    "cost_usd_per_run",
    "cost_estimated",
)
RUN_COLUMNS = (
    "route",
    "quality",
    "size",
    "format",
    "run",
    "job_id",
    "state",
    "error_kind",
    "attempts",
    *(key for key, _label in CLOCKS),
    "cost_usd",
    "cost_estimated",
)


def errors_text(errors: Counter[str]) -> str:
    """``server_error=2; rejected=1``, most frequent first."""
    return "; ".join(f"{kind}={count}" for kind, count in errors.most_common())


def write_csv(path: Path, summaries: Sequence[CellSummary]) -> None:
    """One row per cell (SUMMARY_COLUMNS)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(SUMMARY_COLUMNS)
        for s in summaries:
            cell = s.cell
            clocks = [_number(s.clocks[key][p]) for key, _label in CLOCKS for p in PERCENTILES]
            per_run = round(s.cost_usd / s.runs, 6) if s.cost_usd is not None and s.runs else ""
            writer.writerow(
                [
                    cell.route,
                    cell.quality,
                    cell.size,
                    cell.output_format,
                    s.runs,
                    s.saved,
                    _number(s.success_rate, 4),
                    *clocks,
                    errors_text(s.errors),
                    "" if s.cost_usd is None else s.cost_usd,
                    per_run,
                    str(s.cost_estimated).lower(),
                ]
            )


def write_runs_csv(path: Path, results: Sequence[RunResult]) -> None:
    """One row per run (RUN_COLUMNS): the raw data the summary is made of."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(RUN_COLUMNS)
        for r in results:
            writer.writerow(
                [
                    r.cell.route,
                    r.cell.quality,
                    r.cell.size,
                    r.cell.output_format,
                    r.run,
                    r.job_id or "",
                    r.state,
                    r.error_kind or "",
                    "" if r.attempts is None else r.attempts,
                    *("" if r.clock(key) is None else r.clock(key) for key, _label in CLOCKS),
                    "" if r.cost_usd is None else r.cost_usd,
                    str(r.cost_estimated).lower(),
                ]
            )


def runs_csv_path(summary_path: Path) -> Path:
    """Where the runs go beside the summary: ``compare.csv`` -> ``compare-runs.csv``."""
    return summary_path.with_name(f"{summary_path.stem}-runs{summary_path.suffix or '.csv'}")


def _number(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def write_chart(path: Path, summaries: Sequence[CellSummary], *, title: str) -> None:
    """A PNG: per cell, one bar per clock at its p50 with a whisker up to its p95, and the
    cell's success rate beside its label."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    cells = list(summaries)
    height = max(3.0, 0.9 * len(cells) * len(CLOCKS) / 2 + 1.5)
    figure, axes = plt.subplots(figsize=(10, height), dpi=100)
    try:
        bar = 0.8 / len(CLOCKS)
        colors = ("#4c72b0", "#55a868", "#c44e52", "#8172b2")
        for k, (key, label) in enumerate(CLOCKS):
            positions, p50s, whiskers = [], [], []
            for i, summary in enumerate(cells):
                p50, p95 = summary.clocks[key][50], summary.clocks[key][95]
                positions.append(i + (k - (len(CLOCKS) - 1) / 2) * bar)
                p50s.append(p50 or 0.0)
                whiskers.append(max(0.0, (p95 or 0.0) - (p50 or 0.0)))
            axes.barh(
                positions,
                p50s,
                height=bar,
                xerr=[[0.0] * len(whiskers), whiskers],
                color=colors[k % len(colors)],
                label=label,
                capsize=3,
            )
        labels = []
        for summary in cells:
            rate = summary.success_rate
            shown = "-" if rate is None else f"{rate:.0%}"
            cost = "" if summary.cost_usd is None else f", ${summary.cost_usd:.4f}"
            labels.append(
                f"{summary.cell.label}\n{summary.saved}/{summary.runs} saved ({shown}){cost}"
            )
        axes.set_yticks(range(len(cells)), labels)
        axes.invert_yaxis()
        axes.set_xlabel("ms (bar: p50, whisker: p95)")
        axes.set_title(title)
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(CLOCKS))
        axes.grid(axis="x", alpha=0.3)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)


def summary_json(summary: CellSummary) -> dict[str, Any]:
    """A cell's summary for --json: the CSV's fields, nested."""
    cell = summary.cell
    return {
        "route": cell.route,
        "quality": cell.quality,
        "size": cell.size,
        "format": cell.output_format,
        "runs": summary.runs,
        "saved": summary.saved,
        "successRate": summary.success_rate,
        "clocksMs": {
            key.removesuffix("_ms"): {f"p{p}": summary.clocks[key][p] for p in PERCENTILES}
            for key, _label in CLOCKS
        },
        "errors": dict(summary.errors.most_common()),
        "costUsd": summary.cost_usd,
        "costEstimated": summary.cost_estimated,
    }
