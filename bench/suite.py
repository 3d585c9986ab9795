"""`make bench`: every figure of docs/benchmarks.md in one run, under 15 minutes on 2 cores.

    python -m bench.suite [--only edge,freshness] [--no-write] [--page docs/benchmarks.md]
    python -m bench.suite --render-only     (the page and charts again from results.json)
    (make bench)

Each figure runs with the counts below (chosen so that the whole suite, measured, stays under 15
minutes on this project's 2-core machine; each has a budget of its own, and the report gives
what it took), one after another, each on a stack of its own that it starts and stops. Each
module's result is turned into typed rows (bench.report.Row: this service, the anchor, the
ratio, the target, met or not); then the generated blocks of docs/benchmarks.md are rewritten
(the top summary and one block per figure; the prose around them stays) and the charts are drawn
under docs/benchmarks/, beside results.json (every record of the run). A figure that fails is
reported as failed, and the others still run.

Nothing here asserts a speed: a figure that misses its target says so on the page.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import drain, edge_latency, fault_mix, freshness, memory, overhead, retry_after
from bench.report import (
    CHARTS,
    PAGE,
    RESULTS,
    FigureRun,
    Machine,
    Row,
    SuiteRun,
    charts,
    write_page,
)
from bench.stats import percentile


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Figure:
    """How the suite runs one figure: its counts, its budget, and how its result becomes rows."""

    key: str
    title: str
    command: str
    budget_s: float
    time_scale: str
    repetitions: str
    measure: Callable[[], Any]  # runs the module; its result
    rows: Callable[[Any], list[Row]]  # the result's summary rows
    lines: Callable[[Any], list[str]]  # the result's own report


# --- each figure's rows -----------------------------------------------------------------------


def edge_rows(result: edge_latency.EdgeResult) -> list[Row]:
    out = []
    for f in result.figures:
        target = edge_latency.TARGETS[f.kind]
        out.append(
            Row(
                f"{f.name}, p99",
                f.ours.p99_ms,
                f.anchor.p99_ms,
                "ms",
                "Durable quickstart" if f.kind == "start" else "the host's status query",
                ratio=f.p99_ratio,
                target=f"<= {target:g}x",
                met=f.p99_ratio <= target,
            )
        )
    return out


def overhead_rows(result: overhead.OverheadResult) -> list[Row]:
    out = []
    for r in result.results:
        o = r.options
        shape = f"{o.size} {o.quality}" + ("" if o.time_scale == 1 else f" (x{o.time_scale:g})")
        paired = r.paired_ratio("retry-after")
        out.append(
            Row(
                f"Retry-After client sees the image, {shape}",
                r.took_s("retry-after"),
                r.direct_s(),
                "s",
                "direct SDK call",
                ratio=paired,
                target=f"<= {retry_after.TARGET:g}x (jitter out)",
                met=paired <= retry_after.TARGET,
            )
        )
        out.append(
            Row(
                f"100 ms poller sees the image, {shape}",
                r.took_s("100 ms"),
                r.direct_s(),
                "s",
                "direct SDK call",
                ratio=r.paired_ratio("100 ms"),
            )
        )
    return out


def freshness_rows(result: freshness.FreshnessResult) -> list[Row]:
    ours, anchor = result.visible(anchor=False), result.visible(anchor=True)
    out = []
    for q, name in ((0.5, "p50"), (0.95, "p95")):
        mine = percentile(ours, q) * 1000 if ours else None
        theirs = percentile(anchor, q) * 1000 if anchor else None
        out.append(
            Row(
                f"partial leaves the route -> a 100 ms poller sees it, {name}",
                mine,
                theirs,
                "ms",
                "the SDK's own stream event",
                target=f"<= {freshness.TARGET_P95_S * 1000:g} ms" if q == 0.95 else "",
                met=(
                    None
                    if q != 0.95
                    else mine is not None
                    and mine <= freshness.TARGET_P95_S * 1000
                    and not result.missed()
                ),
            )
        )
    return out


def memory_rows(result: memory.MemoryResult) -> list[Row]:
    out = []
    for jobs, samples in result.samples.items():
        if not samples:
            continue
        over = sorted(s.over_idle_bytes / memory.MIB for s in samples)[len(samples) // 2]
        images = sorted(s.images_bytes / memory.MIB for s in samples)[len(samples) // 2]
        worst = max(s.per_image() for s in samples)
        out.append(
            Row(
                f"peak RSS over idle, {jobs} 3840x2160 PNG job{'s' if jobs > 1 else ''} "
                "(worst ratio)",
                over,
                images,
                "MiB",
                "the images' bytes",
                ratio=worst,
                target=f"<= {memory.TARGET:g}x" if jobs == 1 else "",
                met=worst <= memory.TARGET if jobs == 1 else None,
            )
        )
    return out


def drain_rows(result: drain.DrainResult) -> list[Row]:
    wall = result.service.wall_s
    over = wall / result.even_minimum_s if result.even_minimum_s else None
    out = [
        Row(
            f"drain wall, {result.options.jobs} jobs at {result.options.rpm}/min",
            wall,
            result.even_minimum_s,
            "s",
            "theoretical minimum",
            ratio=over,
            target=f"<= {drain.TARGET_OVER_MINIMUM:g}x",
            met=over is not None and over <= drain.TARGET_OVER_MINIMUM and result.service.finished,
        ),
    ]
    sequential = next((a for a in result.anchors if a.name.endswith("for-loop")), None)
    if sequential is not None:
        out.append(
            Row(
                "drain wall against a plain SDK loop",
                wall,
                sequential.wall_s,
                "s",
                "SDK sequential loop",
            )
        )
    rate_limited = result.ledger.rate_limited
    out.append(
        Row(
            "drain 429s",
            rate_limited,
            0,
            "429s",
            "the minimum",
            target="<= 1",
            met=rate_limited <= 1,
        )
    )
    delays = [
        (t.accepted_arrival or t.first_arrival or 0.0) - t.posted.posted_at
        for t in result.interactive()
        if (t.accepted_arrival or t.first_arrival) is not None
    ]
    if delays:
        worst = max(delays) / result.slot_s
        out.append(
            Row(
                "interactive job sent after its POST, worst",
                worst,
                drain.TARGET_INTERACTIVE_SLOTS,
                "slots",
                "one slot of the route's pace",
                target=f"<= {drain.TARGET_INTERACTIVE_SLOTS:g}",
                met=worst <= drain.TARGET_INTERACTIVE_SLOTS,
            )
        )
    return out


def fault_mix_rows(result: fault_mix.FaultMixResult) -> list[Row]:
    ours = result.way("this service")
    theirs = result.way("SDK loop")
    if ours is None:
        return []
    return [
        Row(
            "fault mix: billable generations per saved image",
            ours.per_saved,
            theirs.per_saved if theirs else None,
            "per image",
            "SDK loop, default retries",
        ),
        Row(
            f"fault mix: images lost of {ours.jobs}",
            ours.lost,
            theirs.lost if theirs else None,
            "images",
            "SDK loop, default retries",
            target=f"<= {fault_mix.TARGET_LOST}",
            met=ours.lost <= fault_mix.TARGET_LOST,
        ),
        Row(
            "fault mix: duplicates beyond the generations in flight at the worker kill",
            ours.avoidable,
            theirs.avoidable if theirs else None,
            "generations",
            "SDK loop, default retries",
            target=f"<= {fault_mix.TARGET_AVOIDABLE}",
            met=ours.avoidable <= fault_mix.TARGET_AVOIDABLE,
        ),
    ]


# --- the suite's counts -----------------------------------------------------------------------

EDGE = edge_latency.Options(sequential=200, concurrency=50, rounds=4, warmup=20)
OVERHEAD = overhead.Options(rounds=3, warmup=6)
FRESHNESS = freshness.Options(jobs=20, concurrency=4, time_scale=5.0)
MEMORY = memory.Options(repetitions=2, jobs=(1, 20))
# Time scale 10: the drain and its sequential SDK loop fit the suite's 15 minutes (at the module's
# default, 5, the SDK loop alone takes about 8); `make bench-drain` measures at 5.
DRAIN = drain.Options(time_scale=10.0)
FAULT_MIX = fault_mix.Options()


def figures() -> list[Figure]:
    scales = ", ".join(f"{s.time_scale:g} ({s.label()})" for s in OVERHEAD.shapes)
    return [
        Figure(
            "edge",
            "Edge latency: start and status against the Durable quickstart",
            "python -m bench.edge_latency",
            45,
            "1",
            f"{EDGE.sequential} sequential requests per side, {EDGE.rounds} rounds of "
            f"{EDGE.concurrency} concurrent",
            lambda: edge_latency.run(EDGE),
            edge_rows,
            lambda r: r.lines(),
        ),
        Figure(
            "overhead",
            "Overhead: a poller and a Retry-After client against a direct SDK call",
            f"python -m bench.overhead --rounds {OVERHEAD.rounds} --warmup {OVERHEAD.warmup}",
            240,
            scales,
            f"{OVERHEAD.rounds} rounds of 3 jobs per shape after {OVERHEAD.warmup} warm-up",
            lambda: overhead.run(OVERHEAD, log=log),
            overhead_rows,
            lambda r: r.lines(),
        ),
        Figure(
            "freshness",
            "Freshness: a partial image leaving the route until a poller sees it",
            f"python -m bench.freshness --jobs {FRESHNESS.jobs} --concurrency "
            f"{FRESHNESS.concurrency} --time-scale {FRESHNESS.time_scale:g}",
            45,
            f"{FRESHNESS.time_scale:g}",
            f"{FRESHNESS.jobs} jobs, {FRESHNESS.concurrency} at once, {FRESHNESS.rounds} "
            "direct calls",
            lambda: freshness.run(FRESHNESS, log=log),
            freshness_rows,
            lambda r: r.lines(),
        ),
        Figure(
            "memory",
            "Memory: one 4K PNG job, and 20 at once, against the image's bytes",
            f"python -m bench.memory --repetitions {MEMORY.repetitions} --jobs "
            + ",".join(str(j) for j in MEMORY.jobs),
            105,
            f"{MEMORY.time_scale:g}",
            f"{MEMORY.repetitions} fresh workers per row",
            lambda: memory.run(MEMORY),
            memory_rows,
            memory.report,
        ),
        Figure(
            "drain",
            "Drain: 100 jobs at once on a 10 requests/min route",
            "python -m bench.drain --time-scale 10",
            330,
            f"{DRAIN.time_scale:g}",
            f"one drain of {DRAIN.jobs} + {DRAIN.interactive} interactive jobs, the SDK loops "
            "once each",
            lambda: drain.run(DRAIN, log=log),
            drain_rows,
            lambda r: r.lines(),
        ),
        Figure(
            "fault-mix",
            "Fault mix: duplicates and losses against a plain SDK loop",
            "python -m bench.fault_mix",
            70,
            f"{FAULT_MIX.time_scale:g}",
            f"{FAULT_MIX.jobs} jobs each way, once",
            lambda: fault_mix.run(FAULT_MIX, log=log),
            fault_mix_rows,
            lambda r: r.lines(),
        ),
    ]


def run_figure(figure: Figure) -> FigureRun:
    log(f"== {figure.key} (budget {figure.budget_s:.0f} s) ...")
    started = time.monotonic()
    out = FigureRun(
        figure.key,
        figure.title,
        figure.command,
        0.0,
        figure.budget_s,
        figure.time_scale,
        figure.repetitions,
    )
    try:
        result = figure.measure()
        out.lines = figure.lines(result)
        out.rows = figure.rows(result)
    except Exception as exc:  # a failed figure is reported, the others still run
        traceback.print_exc()
        out.error = f"{type(exc).__name__}: {exc}"
    out.seconds = time.monotonic() - started
    log(f"== {figure.key}: {out.seconds:.0f} s" + (f", FAILED: {out.error}" if out.error else ""))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__)
    p.add_argument("--only", help="comma-separated figure keys (edge, overhead, freshness, ...)")
    p.add_argument("--no-write", action="store_true", help="print only; leave the page alone")
    p.add_argument("--page", type=Path, default=PAGE)
    p.add_argument("--charts", type=Path, default=CHARTS)
    p.add_argument(
        "--render-only",
        action="store_true",
        help="run nothing: draw the page and charts again from the latest results.json",
    )
    args = p.parse_args(argv)
    results = args.charts / RESULTS.name
    if args.render_only:
        suite = SuiteRun.from_json(json.loads(results.read_text(encoding="utf-8")))
        write(args.page, args.charts, suite)
        return 0
    chosen = figures()
    if args.only:
        keys = set(args.only.split(","))
        unknown = keys - {f.key for f in chosen}
        if unknown:
            p.error(f"unknown figures: {', '.join(sorted(unknown))}")
        chosen = [f for f in chosen if f.key in keys]
    machine = Machine.here()
    started = time.monotonic()
    runs = [run_figure(f) for f in chosen]
    suite = SuiteRun(machine, runs, time.monotonic() - started)
    for line in suite.summary():
        print(line)
    if not args.no_write:
        # Some figures only: their blocks and charts; the summary, its chart and results.json
        # stay those of the last whole run, whose figures were all measured together.
        whole = not args.only
        args.charts.mkdir(parents=True, exist_ok=True)
        if whole:
            results.write_text(json.dumps(suite.to_json(), indent=1) + "\n", encoding="utf-8")
            log(f"wrote {results}")
        write(args.page, args.charts, suite, summary=whole)
    return 1 if any(r.error for r in runs) else 0


def write(page: Path, folder: Path, suite: SuiteRun, *, summary: bool = True) -> None:
    text = write_page(page.read_text(encoding="utf-8"), suite, summary=summary)
    page.write_text(text, encoding="utf-8")
    for path in charts(suite, folder, summary=summary):
        log(f"wrote {path}")
    log(f"wrote {page}")


if __name__ == "__main__":
    sys.exit(main())
