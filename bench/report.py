"""What `make bench` writes: each figure's result as a typed record, the summary page's generated
blocks in docs/benchmarks.md, and the PNG charts beside it.

    run = FigureRun(key="edge", title=..., command=..., seconds=..., budget_s=..., rows=[Row(...)],
                    lines=result.lines())
    text = write_page(old_text, SuiteRun(machine=Machine.here(), figures=[run, ...]))

docs/benchmarks.md keeps its prose; only the text between a pair of markers is generated:

    <!-- generated:summary:begin --> ... <!-- generated:summary:end -->    (the top summary)
    <!-- generated:edge:begin --> ... <!-- generated:edge:end -->          (one per figure)

so a rerun rewrites the figures and never the explanations around them. A figure whose block is
missing gets a section of its own at the end of the page.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.stats import table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks.md"
CHARTS = ROOT / "docs" / "benchmarks"
# Every record of the latest run, beside its charts: the page and the charts can be drawn again
# from it (`python -m bench.suite --render-only`), and two runs compared.
RESULTS = CHARTS / "results.json"
PACKAGES = (
    "azure-functions",
    "azure-functions-durable",
    "azure-storage-blob",
    "openai",
    "httpx",
    "aiohttp",
    "matplotlib",
)
# Units of whole things, shown without decimals.
COUNTS = frozenset({"images", "429s", "requests", "generations"})


@dataclass(frozen=True)
class Row:
    """One line of the summary table: a figure of this service against its anchor."""

    figure: str
    ours: float | None
    anchor: float | None
    unit: str  # "ms", "s", "MiB", "per image", "images"...
    anchor_name: str  # what the anchor is, in a few words
    # ours / anchor, or given (a paired ratio); None: no meaningful ratio (an anchor of 0).
    ratio: float | None = None
    target: str = ""  # "<= 1.5x", "<= 2 s", "0"; empty: no target
    met: bool | None = None  # None: no target

    def ratio_value(self) -> float | None:
        if self.ratio is not None:
            return self.ratio
        if self.ours is None or self.anchor is None or self.anchor == 0:
            return None
        return self.ours / self.anchor

    def cells(self) -> list[str]:
        r = self.ratio_value()
        return [
            self.figure,
            value_cell(self.ours, self.unit),
            f"{value_cell(self.anchor, self.unit)} ({self.anchor_name})",
            "n/a" if r is None else f"{r:.3f}x" if r < 2 else f"{r:.2f}x",
            self.target or "none",
            {True: "met", False: "**MISSED**", None: "-"}[self.met],
        ]


def value_cell(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    counted = unit in COUNTS and value == int(value)
    digits = 0 if counted or abs(value) >= 100 else (1 if abs(value) >= 10 else 2)
    return f"{value:.{digits}f} {unit}".strip()


@dataclass
class FigureRun:
    """One figure as the suite ran it."""

    key: str  # the generated block's name and the chart's file name
    title: str
    command: str  # what reproduces it (the suite's counts)
    seconds: float  # the figure's wall time in the suite
    budget_s: float
    time_scale: str  # "1", "25", "1 (1024 low), 25 (2048 and 4K high)"
    repetitions: str  # "200 sequential + 2 rounds of 50"
    rows: list[Row] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # the module's own report
    error: str | None = None  # the figure failed: why (its rows are then empty)

    def block(self) -> list[str]:
        """The figure's generated block: how it ran, then the module's own report."""
        out = [
            f"Latest `make bench` run: {self.seconds:.0f} s (budget {self.budget_s:.0f} s), time "
            f"scale {self.time_scale}, {self.repetitions}; `{self.command}`.",
            "",
        ]
        if self.error:
            out += [f"**The figure failed in this run**: {self.error}", ""]
        if self.rows:
            out += [f"![{self.title}](benchmarks/{self.key}.png)", ""]
        if self.lines:
            out += ["```", *self.lines, "```"]
        return out


@dataclass(frozen=True)
class Machine:
    date: str
    cpu: str
    cores: int
    memory_gb: float
    load_at_start: tuple[float, float, float]
    system: str
    python: str
    packages: dict[str, str]
    tools: dict[str, str]

    @classmethod
    def here(cls) -> Machine:
        return cls(
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            cpu=cpu_model(),
            cores=os.cpu_count() or 0,
            memory_gb=memory_gb(),
            load_at_start=os.getloadavg(),
            system=f"{platform.system()} {platform.release()}",
            python=platform.python_version(),
            packages={name: package_version(name) for name in PACKAGES},
            tools={"Azurite": azurite_version(), "Node": node_version()},
        )

    def lines(self) -> list[str]:
        load = ", ".join(f"{x:.2f}" for x in self.load_at_start)
        packages = ", ".join(f"{k} {v}" for k, v in self.packages.items())
        tools = ", ".join(f"{k} {v}" for k, v in self.tools.items())
        return [
            f"- date: {self.date}",
            f"- machine: {self.cpu}, {self.cores} cores, {self.memory_gb:.0f} GB, {self.system}; "
            f"load average at the start (1, 5, 15 min): {load}",
            f"- versions: Python {self.python}, {packages}, {tools}",
        ]


def cpu_model(cpuinfo: str | None = None) -> str:
    try:
        text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else platform.machine()


def memory_gb() -> float:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return 0.0
    found = re.search(r"^MemTotal:\s*(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) / 2**20 if found else 0.0


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def azurite_version() -> str:
    try:
        found: str = json.loads((ROOT / "node_modules/azurite/package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "unknown"
    return found


def node_version() -> str:
    try:
        out = subprocess.run(
            ["node", "--version"],  # noqa: S607 - the Node on PATH, as Azurite runs on it
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip().lstrip("v")


@dataclass
class SuiteRun:
    machine: Machine
    figures: list[FigureRun]
    seconds: float = 0.0  # the whole suite's wall time

    def rows(self) -> list[tuple[FigureRun, Row]]:
        return [(f, r) for f in self.figures for r in f.rows]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SuiteRun:
        m = dict(data["machine"])
        m["load_at_start"] = tuple(m["load_at_start"])
        figures = []
        for raw in data["figures"]:
            f = dict(raw)
            f["rows"] = [Row(**row) for row in f["rows"]]
            figures.append(FigureRun(**f))
        return cls(Machine(**m), figures, float(data["seconds"]))

    def summary(self) -> list[str]:
        budget = sum(f.budget_s for f in self.figures)
        met = [r.met for _, r in self.rows() if r.met is not None]
        out = [
            f"Generated by `make bench` (`python -m bench.suite`) in {self.seconds / 60:.1f} "
            f"minutes (the figures' budgets add up to {budget / 60:.1f}); each figure was measured "
            "once, in this one run on this one machine, against its anchor in the same run. "
            f"Targets met: {sum(met)} of {len(met)}.",
            "",
            *self.machine.lines(),
            "",
        ]
        out += table(
            ["figure", "this service", "anchor", "ratio", "target", "met?"],
            [r.cells() for _, r in self.rows()],
        )
        out += ["", "How each figure ran (its section below has the whole report):", ""]
        out += table(
            ["figure", "time scale", "repetitions", "took s", "budget s", "chart"],
            [
                [
                    f"[{f.title}](#{anchor_of(f.title)})",
                    f.time_scale,
                    f.repetitions,
                    f"{f.seconds:.0f}" + (" (failed)" if f.error else ""),
                    f"{f.budget_s:.0f}",
                    f"[{f.key}.png](benchmarks/{f.key}.png)" if f.rows else "none",
                ]
                for f in self.figures
            ],
        )
        out += ["", "![every ratio against its target](benchmarks/summary.png)"]
        return out


def anchor_of(title: str) -> str:
    """GitHub's anchor of a heading."""
    slug = re.sub(r"[^\w\- ]", "", title.lower()).strip()
    return slug.replace(" ", "-")


# --- the page ---------------------------------------------------------------------------------


def markers(key: str) -> tuple[str, str]:
    return f"<!-- generated:{key}:begin -->", f"<!-- generated:{key}:end -->"


def replace_block(text: str, key: str, body: Sequence[str]) -> str | None:
    """``text`` with the block ``key`` holding ``body``; None when the page has no such block."""
    begin, end = markers(key)
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        return None
    new = "\n".join([begin, *body, end])
    return pattern.sub(lambda _: new, text, count=1)


def write_page(
    text: str,
    suite: SuiteRun,
    sections: dict[str, str] | None = None,
    *,
    summary: bool = True,
) -> str:
    """The page with every generated block rewritten; a figure without a block on the page is
    added at its end under ``## {title}`` (``sections`` may name another heading). With
    ``summary`` False (some figures only), the summary of the last whole run stays."""
    out = replace_block(text, "summary", suite.summary()) if summary else text
    if out is None:
        raise ValueError("docs/benchmarks.md has no generated summary block")
    for figure in suite.figures:
        replaced = replace_block(out, figure.key, figure.block())
        if replaced is None:
            begin, end = markers(figure.key)
            heading = (sections or {}).get(figure.key, f"## {figure.title}")
            replaced = "\n".join(
                [out.rstrip("\n"), "", heading, "", begin, *figure.block(), end, ""]
            )
        out = replaced
    return out if out.endswith("\n") else out + "\n"


# --- the charts -------------------------------------------------------------------------------


def charts(suite: SuiteRun, folder: Path = CHARTS, *, summary: bool = True) -> list[Path]:
    """summary.png (every ratio against its target) and one PNG per figure (this service and
    its anchor, one panel per row); the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    # A ratio of 0 (nothing lost against the anchor's losses) has no place on a log axis.
    rows = [(f, r) for f, r in suite.rows() if (r.ratio_value() or 0.0) > 0]
    if rows and summary:
        fig, ax = plt.subplots(figsize=(10, 0.35 * len(rows) + 1.5))
        labels = [r.figure for _, r in rows]
        values = [r.ratio_value() or 0.0 for _, r in rows]
        colors = [{True: "#2e7d32", False: "#c62828", None: "#78909c"}[r.met] for _, r in rows]
        ax.barh(range(len(rows)), values, color=colors)
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xlabel("this service / anchor (log; green met, red missed, grey no target)")
        ax.set_title(f"make bench, {suite.machine.date}")
        fig.tight_layout()
        written.append(_save(fig, folder / "summary.png"))
        plt.close(fig)
    for figure in suite.figures:
        panels = [r for r in figure.rows if r.ours is not None or r.anchor is not None]
        if not panels:
            continue
        columns = min(3, len(panels))
        lines = -(-len(panels) // columns)
        fig, axes = plt.subplots(
            lines, columns, figsize=(3.3 * columns, 3.0 * lines + 0.4), squeeze=False
        )
        cells = [ax for line in axes for ax in line]
        for ax, row in zip(cells, panels, strict=False):
            ax.bar(
                ["this service", "anchor"],
                [row.ours or 0.0, row.anchor or 0.0],
                color=["#1565c0", "#9e9e9e"],
            )
            ax.set_title(textwrap.fill(row.figure, 34), fontsize=8)
            ax.set_ylabel(row.unit, fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in cells[len(panels) :]:
            ax.set_visible(False)
        fig.suptitle(figure.title, fontsize=10)
        fig.tight_layout()
        written.append(_save(fig, folder / f"{figure.key}.png"))
        plt.close(fig)
    return written


def _save(fig: Figure, path: Path) -> Path:
    # No software name or date in the PNG's metadata: the bytes change only with the figures.
    fig.savefig(path, dpi=90, metadata={"Software": None})
    return path
