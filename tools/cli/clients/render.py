"""What a person sees: the live state line, one line per change, the timing waterfall, where
the images are. Pure functions make the text (tested without a terminal); ``Screen`` prints it.

Links (status URL, image and preview links, metadata) are printed whole on a line of their own
and never wrapped (``soft_wrap``), so they can be copied as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from clients.compare import CLOCKS as COMPARE_CLOCKS
from clients.compare import CellSummary, RunResult

# The clocks of one attempt, in the order they happen: the status answer's ``timings`` names
# (camelCase), the record's names (snake_case, as answers had them before), the label.
CLOCKS = (
    ("connectMs", "connect_ms", "connect"),
    ("firstByteMs", "first_byte_ms", "first byte"),
    ("firstPartialImageMs", "first_partial_image_ms", "first partial image"),
    ("finalImageMs", "final_image_ms", "final image"),
    ("downloadMs", "download_ms", "download"),
    ("uploadMs", "upload_ms", "upload"),
)
# These are durations of their own; the others are moments, in ms from the send.
DURATIONS = frozenset({"downloadMs", "uploadMs"})
MIN_BAR_WIDTH, MAX_BAR_WIDTH = 8, 40
STATE_STYLE = {
    "saved": "bold green",
    "failed": "bold red",
    "cancelled": "bold yellow",
    "cancelling": "yellow",
    "waiting_to_retry": "yellow",
}


@dataclass(frozen=True)
class Segment:
    """One row of the waterfall: a clock, where it starts and ends (ms from the send)."""

    label: str
    start_ms: int
    end_ms: int
    # For a moment: its value; for a duration: its length.
    value_ms: int
    duration: bool


def waterfall(timings: Mapping[str, Any] | None) -> list[Segment]:
    """The clocks that came, as segments: each moment from the one before it to itself, the
    download after the final image (or the first byte), the upload after the download."""
    timings = timings or {}
    segments: list[Segment] = []
    last_moment = 0
    for key, old_key, label in CLOCKS:
        value = timings.get(key, timings.get(old_key))
        if not isinstance(value, int):
            continue
        if key in DURATIONS:
            start = segments[-1].end_ms if segments else last_moment
            segments.append(Segment(label, start, start + value, value, True))
        else:
            start = min(last_moment, value)
            segments.append(Segment(label, start, value, value, False))
            last_moment = value
    return segments


def waterfall_table(
    timings: Mapping[str, Any] | None, *, title: str, width: int = 80
) -> Table | None:
    """The clocks as a table with a bar per clock, fitted to ``width`` columns."""
    segments = waterfall(timings)
    if not segments:
        return None
    total = max(s.end_ms for s in segments) or 1
    bar_width = max(MIN_BAR_WIDTH, min(MAX_BAR_WIDTH, width - 50))
    table = Table(title=title, title_justify="left", box=None, padding=(0, 1))
    table.add_column("clock", no_wrap=True)
    table.add_column("ms from send", justify="right", no_wrap=True)
    table.add_column("took ms", justify="right", no_wrap=True)
    table.add_column("waterfall", no_wrap=True, min_width=bar_width + 1)
    for s in segments:
        first = min(bar_width - 1, round(s.start_ms / total * bar_width))
        length = max(1, round((s.end_ms - s.start_ms) / total * bar_width))
        bar = Text(" " * first) + Text("█" * length, style="cyan" if s.duration else "green")
        at = f"{s.end_ms:,}" if not s.duration else f"~{s.end_ms:,}"
        table.add_row(s.label, at, f"{s.end_ms - s.start_ms:,}", bar)
    return table


def jobs_table(items: Sequence[Mapping[str, Any]]) -> Table:
    """``list``: one row per job, newest first (id, state, created)."""
    table = Table(box=None, padding=(0, 1))
    table.add_column("id", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    for item in items:
        state = str(item.get("state") or "?")
        table.add_row(
            str(item.get("id")),
            Text(state, style=STATE_STYLE.get(state, "")),
            str(item.get("createdAt") or "-"),
        )
    return table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def compare_table(summaries: Sequence[CellSummary]) -> Table:
    """``compare``: two rows per cell (p50, then p95) of each clock in ms, with the cell's
    saved runs and cost (its errors follow the table: ``compare_errors``)."""
    table = Table(
        title="ms: first byte, first partial and final image from the send (the service's "
        "clocks); to saved: from the start request to the answer saying saved (seen here); "
        "$: the cell's cost",
        title_justify="left",
        box=None,
        padding=(0, 1),
    )
    table.add_column("cell", no_wrap=True)
    table.add_column("", no_wrap=True)
    for _key, label in COMPARE_CLOCKS:
        header = "to\nsaved" if label.startswith("total") else label.replace(" ", "\n", 1)
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("saved", justify="right", no_wrap=True)
    table.add_column("$", justify="right", no_wrap=True)
    for s in summaries:
        saved = f"{s.saved}/{s.runs}"
        cost = "-" if s.cost_usd is None else f"{s.cost_usd:.4f}"
        cost += "~" if s.cost_estimated else ""
        for p in (50, 95):
            clocks = [_ms(s.clocks[key][p]) for key, _ in COMPARE_CLOCKS]
            first = p == 50
            table.add_row(
                s.cell.label if first else "",
                f"p{p}",
                *clocks,
                saved if first else "",
                cost if first else "",
                end_section=not first,
            )
    return table


def compare_errors(summaries: Sequence[CellSummary]) -> list[str]:
    """One line per cell that had errors: the kinds, most frequent first."""
    return [
        f"{s.cell.label}: " + ", ".join(f"{kind} x{n}" for kind, n in s.errors.most_common())
        for s in summaries
        if s.errors
    ]


def run_line(result: RunResult, done: int, total: int) -> str:
    """One finished run, when no progress bar can be drawn (not a terminal)."""
    what = result.state if result.error_kind is None else f"{result.state} ({result.error_kind})"
    total_ms = f", total {result.total_ms:,} ms" if result.total_ms is not None else ""
    return f"[{done}/{total}] {result.cell.label} run {result.run}: {what}{total_ms}"


def seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 100 else f"{value:.0f}s"


def retry_text(retry: Mapping[str, Any] | None, now: datetime | None = None) -> str:
    """``retry in 12s (rate limited)`` from the answer's ``retry`` {at, reason}."""
    if not retry:
        return ""
    reason = str(retry.get("reason") or "").strip()
    at = retry.get("at")
    when = ""
    if isinstance(at, str):
        try:
            moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            when = f" at {at}"
        else:
            left = (moment - (now or datetime.now(UTC))).total_seconds()
            when = f" in {seconds(max(0.0, left))}" if left > 0 else " now"
    return f"retry{when}" + (f" ({reason})" if reason else "")


def change_line(status: Mapping[str, Any], elapsed_s: float | None = None) -> Text:
    """One permanent line per change: time, state, attempt, the state's sentence, extras."""
    state = str(status.get("state") or "?")
    line = Text(f"{seconds(elapsed_s):>7}  " if elapsed_s is not None else "", style="dim")
    line.append(f"{state:<17}", style=STATE_STYLE.get(state, "bold"))
    line.append(f" attempt {status.get('attempt') or '-'}  ")
    line.append(str(status.get("stateText") or ""))
    previews = status.get("previews") or []
    if previews:
        line.append(f"  [{len(previews)} preview{'s' if len(previews) != 1 else ''}]", "dim")
    if status.get("retry"):
        line.append(f"  {retry_text(status['retry'])}", style="yellow")
    return line


def request_text(request: Mapping[str, Any] | None) -> str:
    if not request:
        return ""
    return ", ".join(f"{k} {v}" for k, v in request.items() if v is not None)


def error_text(error: Mapping[str, Any]) -> str:
    """The job's ``error``: layer, HTTP status, type and code, message, request id."""
    parts = [str(error.get("layer") or "?")]
    if error.get("httpStatus"):
        parts.append(f"HTTP {error['httpStatus']}")
    for key in ("type", "code"):
        if error.get(key):
            parts.append(str(error[key]))
    for key in ("param", "field"):
        if error.get(key):
            parts.append(f"({key} {error[key]})")
    text = " ".join(parts)
    if error.get("message"):
        text += f": {' '.join(str(error['message']).split())}"
    if error.get("requestId"):
        text += f" (request id {error['requestId']})"
    return text


def image_text(index: int, image: Mapping[str, Any], saved_to: str | None) -> str:
    size = f"{image.get('width')}x{image.get('height')}"
    line = f"image {index}: {size} {image.get('contentType')}, {image.get('bytes', 0):,} bytes"
    return f"{line} -> saved to {saved_to}" if saved_to else line


class LiveLine:
    """The line under the log that shows, between polls, where the job is right now."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self.started = monotonic()
        self.status: Mapping[str, Any] = {}
        self.state_since = self.started
        self.next_poll_at: float | None = None
        self.trouble: str | None = None
        self.polls = 0

    def update(self, status: Mapping[str, Any], next_poll_s: float) -> None:
        now = self._monotonic()
        if status.get("state") != self.status.get("state"):
            self.state_since = now
        self.status = status
        self.polls += 1
        self.trouble = None
        self.next_poll_at = now + next_poll_s if next_poll_s > 0 else None

    def troubled(self, message: str, next_poll_s: float) -> None:
        self.trouble = message
        self.next_poll_at = self._monotonic() + next_poll_s

    def text(self) -> Text:
        now = self._monotonic()
        state = str(self.status.get("state") or "starting")
        line = Text()
        line.append(state, style=STATE_STYLE.get(state, "bold"))
        line.append(f" for {seconds(now - self.state_since)}")
        line.append(f" · attempt {self.status.get('attempt') or '-'}")
        line.append(f" · {seconds(now - self.started)} in all", style="dim")
        if self.status.get("retry"):
            line.append(f" · {retry_text(self.status['retry'])}", style="yellow")
        if self.next_poll_at is not None:
            line.append(f" · next poll in {seconds(max(0.0, self.next_poll_at - now))}", "dim")
        if self.trouble:
            line.append(f" · poll failed, trying again: {self.trouble}", style="red")
        elif self.status.get("stateText"):
            line.append(f" · {self.status['stateText']}")
        return line

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # One line, cut short of the terminal's width: a wrapped live line leaves copies behind,
        # and the terminal's own "^C" echo must fit on it, or it pushes the line out of reach of
        # the clean-up on Ctrl-C.
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        grid.add_row(Spinner("dots"), self.text())
        yield from console.render(grid, options.update_width(max(10, options.max_width - 4)))


class Screen:
    """The two consoles: ``out`` for what the command shows, ``err`` for errors and warnings."""

    def __init__(self, out: Console, err: Console) -> None:
        self.out = out
        self.err = err

    def line(self, text: str | Text, *, style: str | None = None) -> None:
        self.out.print(text, style=style, highlight=False, markup=False, soft_wrap=True)

    def link(self, label: str, url: str) -> None:
        """``label`` on its line, then the URL alone, whole, unwrapped, unstyled."""
        self.out.print(Text(label), highlight=False, soft_wrap=True)
        self.out.print(Text(f"  {url}"), highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        self.err.print(Text(f"warning: {message}", style="yellow"), soft_wrap=True)

    def error(self, message: str, *, label: str = "error") -> None:
        """One line on stderr, never wrapped: ``error: what went wrong; what to do``."""
        self.err.print(Text(f"{label}: {message}", style="red"), soft_wrap=True)

    def print(self, renderable: RenderableType) -> None:
        self.out.print(renderable)

    @contextmanager
    def live(self, line: LiveLine) -> Iterator[None]:
        """Show ``line`` under the log while following (only on a terminal)."""
        if not self.out.is_terminal:
            yield
            return
        with Live(line, console=self.out, transient=True, refresh_per_second=4):
            yield
