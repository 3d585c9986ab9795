"""``compare``: the experiment matrix run for real, summarized as a table, CSV and a chart."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from clients.api import ExitCode
from clients.commands.common import _connection_options, _print_json, _screen, _settings
from clients.compare import (
    RunResult,
    matrix,
    run_matrix,
    runs_csv_path,
    summarize,
    summary_json,
    write_chart,
    write_csv,
    write_runs_csv,
)
from clients.render import Screen, compare_errors, compare_table, run_line

# compare's prompt: one for every run, so that only the shape varies between cells.
COMPARE_PROMPT = "a red apple on a white background, studio light"


def _csv_list(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in value.split(",") if part.strip())
    if not items:
        raise click.BadParameter("name at least one value (comma-separated)")
    return items


@click.command()
@click.option(
    "--route",
    "routes",
    default="azure",
    show_default=True,
    callback=_csv_list,
    metavar="A,B",
    help="Routes to compare (comma-separated; GET /api/routes lists them).",
)
@click.option(
    "--quality",
    "qualities",
    default="low",
    show_default=True,
    callback=_csv_list,
    metavar="Q,...",
    help="Qualities (low, medium, high, auto).",
)
@click.option(
    "--size",
    "sizes",
    default="1024x1024",
    show_default=True,
    callback=_csv_list,
    metavar="WxH,...",
    help="Sizes (e.g. 1024x1024,1536x1024).",
)
@click.option(
    "--format",
    "formats",
    default="png",
    show_default=True,
    callback=_csv_list,
    metavar="F,...",
    help="Output formats (png, jpeg, webp).",
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    metavar="N",
    help="Jobs per cell.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    metavar="K",
    help="Jobs running at once.",
)
@click.option(
    "--prompt",
    default=COMPARE_PROMPT,
    show_default=True,
    help="The prompt of every run (one prompt for all: only the shape varies).",
)
@click.option(
    "--partial-images",
    type=int,
    metavar="K",
    help="Previews to stream (the service's default).",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("compare.csv"),
    show_default=True,
    metavar="FILE",
    help="The summary, one row per cell; the runs go beside it as FILE-runs.csv.",
)
@click.option(
    "--chart",
    "chart_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("compare.png"),
    show_default=True,
    metavar="FILE",
    help="The PNG chart: per cell and clock, p50 (bar) and p95 (whisker).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.05),
    metavar="SECONDS",
    help="Poll at this pace instead of the service's Retry-After (total-to-saved is measured "
    "at the poll that sees the job saved).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=900.0,
    show_default=True,
    metavar="SECONDS",
    help="Give up following one job after this long (it counts as an error).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@_connection_options
@click.pass_context
def compare(ctx: click.Context, /, **kwargs: Any) -> int:
    """Compare shapes and routes for real: N jobs per cell of the experiment matrix.

    The matrix is every combination of --route, --quality, --size and --format. Per cell:
    p50 and p95 of first byte, first partial image, final image (the service's clocks) and
    total to saved (this client's), success rate, errors by kind, and cost. Writes the
    summary and the runs as CSV, and a PNG chart. Ctrl-C stops following; the
    jobs started go on, and what ended so far is still written.
    """
    settings = _settings(ctx, kwargs.pop("command_url"), kwargs.pop("command_key"))
    runtime = settings.runtime
    screen = _screen(runtime, as_json=kwargs["as_json"])
    cells = matrix(kwargs["routes"], kwargs["qualities"], kwargs["sizes"], kwargs["formats"])
    with settings.client() as client:
        known = [str(r.get("route")) for r in client.routes().body.get("routes") or []]
    unknown = [route for route in kwargs["routes"] if route not in known]
    if unknown:
        raise click.BadParameter(
            f"no route {', '.join(unknown)} in the service (it has {', '.join(known)})",
            param_hint="--route",
        )
    runs, concurrency = kwargs["runs"], kwargs["concurrency"]
    total = len(cells) * runs
    screen.line(
        f"comparing {len(cells)} cell{'s' if len(cells) != 1 else ''} x {runs} run"
        f"{'s' if runs != 1 else ''} = {total} jobs, {concurrency} at once"
    )
    stop = threading.Event()
    progress = CompareProgress(screen, total)
    interrupted = False
    results: list[RunResult] = []
    try:
        with progress:
            results = run_matrix(
                settings.client,
                cells,
                runs=runs,
                concurrency=concurrency,
                prompt=kwargs["prompt"],
                partial_images=kwargs["partial_images"],
                poll_interval_s=kwargs["poll_interval"],
                timeout_s=kwargs["timeout"],
                on_result=progress.done,
                stop=stop,
            )
    except KeyboardInterrupt:
        stop.set()
        interrupted = True
        results = sorted(progress.results, key=lambda r: (r.cell, r.run))
    summaries = summarize(results)
    if summaries:
        write_csv(kwargs["csv_path"], summaries)
        write_runs_csv(runs_csv_path(kwargs["csv_path"]), results)
        title = f"{len(results)} runs, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        write_chart(kwargs["chart_path"], summaries, title=title)
        screen.print(compare_table(summaries))
        for line in compare_errors(summaries):
            screen.line(f"errors {line}", style="yellow")
        screen.line(f"summary: {kwargs['csv_path']}")
        screen.line(f"runs:    {runs_csv_path(kwargs['csv_path'])}")
        screen.line(f"chart:   {kwargs['chart_path']}")
    if kwargs["as_json"]:
        _print_json(runtime, {"cells": [summary_json(s) for s in summaries]})
    if interrupted:
        screen.error(
            f"stopped after {len(results)} of {total} runs; the jobs started go on "
            f"(`{settings.command('list')}` shows them)",
            label="interrupted",
        )
        return ExitCode.INTERRUPTED
    return ExitCode.OK


class CompareProgress:
    """The runs as they end: a rich progress bar on a terminal, a line per run elsewhere."""

    def __init__(self, screen: Screen, total: int) -> None:
        self.screen = screen
        self.total = total
        self.results: list[RunResult] = []
        self._lock = threading.Lock()
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=screen.out,
            transient=True,
        )
        self._task = self._bar.add_task("runs", total=total)

    def __enter__(self) -> CompareProgress:
        if self.screen.out.is_terminal:
            self._bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._bar.stop()

    def done(self, result: RunResult) -> None:
        with self._lock:
            self.results.append(result)
            failed = sum(1 for r in self.results if not r.saved)
            self._bar.update(
                self._task,
                advance=1,
                description=f"runs ({failed} not saved)" if failed else "runs",
            )
            if not self.screen.out.is_terminal:
                self.screen.line(run_line(result, len(self.results), self.total))
            if result.detail and result.error_kind == "client:refused":
                self.screen.warn(f"{result.cell.label}: {result.detail}")
