"""`make bench`'s suite: each figure's rows from made-up results, the page's generated blocks
rewritten without touching the prose, the summary and the charts (nothing is started, nothing
is timed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import overhead, suite
from bench.devhost_log import JobClocks
from bench.edge_latency import EdgeResult, Figure
from bench.edge_latency import Options as EdgeOptions
from bench.fault_mix import FaultMixResult, Way
from bench.fault_mix import Options as FaultOptions
from bench.freshness import FreshnessResult, Sample, Seen
from bench.freshness import Options as FreshOptions
from bench.memory import MemoryResult
from bench.memory import Options as MemoryOptions
from bench.report import (
    FigureRun,
    Machine,
    Row,
    SuiteRun,
    anchor_of,
    charts,
    cpu_model,
    markers,
    replace_block,
    value_cell,
    write_page,
)
from bench.retry_after import Direct, Polled, RetryAfterResult, Round
from bench.retry_after import Options as RetryOptions
from bench.stats import Summary

from .test_drain import made_up_result as made_up_drain
from .test_fault_mix import ledger
from .test_memory import sample

ROOT = Path(__file__).resolve().parents[2]

MACHINE = Machine(
    date="2026-11-30 12:00 UTC",
    cpu="AMD EPYC",
    cores=2,
    memory_gb=23.4,
    load_at_start=(1.5, 2.0, 1.25),
    system="Linux 6.18",
    python="3.11.7",
    packages={"openai": "3.54.0"},
    tools={"Azurite": "3.35.0"},
)


# --- the records and the arithmetic -----------------------------------------------------------


def test_a_row_gives_its_ratio_and_its_verdict():
    row = Row("start, p99", 12.0, 4.0, "ms", "quickstart", target="<= 1.5x", met=False)
    assert row.ratio_value() == pytest.approx(3.0)
    assert row.cells() == [
        "start, p99",
        "12.0 ms",
        "4.00 ms (quickstart)",
        "3.00x",
        "<= 1.5x",
        "**MISSED**",
    ]
    # A ratio given (a paired one) wins; an anchor of 0 has none; no target, no verdict.
    assert Row("x", 10.0, 9.0, "s", "a", ratio=1.01).ratio_value() == 1.01
    assert Row("x", 1.0, 0.0, "429s", "a").cells()[3] == "n/a"
    assert Row("x", 1.0, 0.0, "429s", "a").cells()[1] == "1 429s"
    assert Row("x", None, 1.0, "s", "a").cells()[1:] == ["n/a", "1.00 s (a)", "n/a", "none", "-"]


def test_values_are_shown_to_a_sensible_precision():
    assert value_cell(1234.56, "ms") == "1235 ms"
    assert value_cell(23.456, "s") == "23.5 s"
    assert value_cell(1.0, "per image") == "1.00 per image"
    assert value_cell(4.0, "images") == "4 images"
    assert value_cell(None, "s") == "n/a"


def test_the_machine_is_described_from_cpuinfo_and_the_load():
    assert cpu_model("processor : 0\nmodel name\t: AMD EPYC 9B14\n") == "AMD EPYC 9B14"
    text = "\n".join(MACHINE.lines())
    assert "AMD EPYC, 2 cores, 23 GB, Linux 6.18" in text
    assert "load average at the start (1, 5, 15 min): 1.50, 2.00, 1.25" in text
    assert "Python 3.11.7, openai 3.54.0, Azurite 3.35.0" in text
    here = Machine.here()
    assert here.cores >= 1
    assert here.packages["openai"] != "not installed"


def test_the_anchor_of_a_heading_is_githubs():
    assert anchor_of("Drain: 100 jobs at once on a 10 requests/min route") == (
        "drain-100-jobs-at-once-on-a-10-requestsmin-route"
    )
    assert anchor_of("Memory: one 4K PNG job, and 20 at once, against the image's bytes") == (
        "memory-one-4k-png-job-and-20-at-once-against-the-images-bytes"
    )


# --- each figure's rows -----------------------------------------------------------------------


def test_edge_rows_are_the_p99s_against_their_targets():
    result = EdgeResult(
        EdgeOptions(),
        [
            Figure("start, sequential", "start", Summary(200, 6.0, 12.0), Summary(200, 1.3, 10.0)),
            Figure("status, sequential", "status", Summary(200, 3.0, 6.0), Summary(200, 0.4, 1.5)),
        ],
    )
    rows = suite.edge_rows(result)
    assert [(r.figure, r.met, r.target) for r in rows] == [
        ("start, sequential, p99", True, "<= 1.5x"),
        ("status, sequential, p99", False, "<= 2x"),
    ]
    assert rows[0].ratio_value() == pytest.approx(1.2)


def retry_after_result(size: str, scale: float, extra: float) -> RetryAfterResult:
    def polled(job: str, took: float) -> Polled:
        return Polled(job, 1000.0, took, took + 0.01, 3, (2.0, 1.0), 1000.05)

    rounds = [
        Round(
            i,
            Direct(10.0 + i),
            polled(f"b{i}", 10.0 + i + extra),
            polled(f"c{i}", 10.0 + i + 0.1),
            {"direct": 9.9 + i, "retry-after": 9.9 + i, "100 ms": 9.9 + i},
        )
        for i in range(3)
    ]
    clocks = {f"{w}{i}": JobClocks(None, None, 1000.0 + 9.95 + i) for w in "bc" for i in range(3)}
    options = RetryOptions(rounds=3, warmup=6, size=size, quality="high", time_scale=scale)
    return RetryAfterResult(options, rounds, clocks, [], 6, "2026-11-30 12:00 UTC")


def test_overhead_rows_and_report_per_shape():
    result = overhead.OverheadResult(
        overhead.Options(),
        [retry_after_result("2048x2048", 25.0, 0.2), retry_after_result("3840x2160", 25.0, 0.5)],
    )
    small = result.results[0]
    assert small.direct_s() == pytest.approx(11.0)
    assert small.took_s("retry-after") == pytest.approx(11.2)
    assert small.paired_ratio("retry-after") == pytest.approx(11.2 / 11.0)
    assert small.seen_after_final_s("retry-after") == pytest.approx(11.2 - 10.95)
    rows = suite.overhead_rows(result)
    assert [r.figure for r in rows] == [
        "Retry-After client sees the image, 2048x2048 high (x25)",
        "100 ms poller sees the image, 2048x2048 high (x25)",
        "Retry-After client sees the image, 3840x2160 high (x25)",
        "100 ms poller sees the image, 3840x2160 high (x25)",
    ]
    assert [r.met for r in rows] == [True, None, False, None]
    text = "\n".join(result.lines())
    assert "| 2048x2048 high | 25 | azure | 3 | 11.00 | 11.20 | 1.018x / 1.018x |" in text
    assert "| 3840x2160 high | 25 | azure | 3 | 11.00 | 11.50 | 1.045x / 1.045x |" in text
    assert text.count("MISSED") == 1


def test_overhead_shapes_parse():
    shapes = overhead.parse_shapes(overhead.DEFAULT_SHAPES)
    assert [(s.size, s.quality, s.time_scale, s.route) for s in shapes] == [
        ("1024x1024", "low", 1.0, "azure"),
        ("2048x2048", "high", 25.0, "openai"),
        ("3840x2160", "high", 25.0, "openai"),
    ]
    with pytest.raises(ValueError, match="SIZE:QUALITY"):
        overhead.Shape.parse("1024x1024:low")
    with pytest.raises(ValueError, match="route"):
        overhead.Shape.parse("1024x1024:low:1:gateway")
    job = overhead.Options().of(shapes[2]).job()
    assert job == {"size": "3840x2160", "quality": "high", "partial_images": 1, "route": "openai"}
    assert overhead.Options().of(shapes[0]).job() == {
        "size": "1024x1024",
        "quality": "low",
        "partial_images": 1,
    }
    assert RetryOptions(route="openai").sdk_path() == "/v1"


def test_freshness_rows_are_p50_and_p95_against_the_sdk():
    samples = [Sample(0, True, a, None) for a in (0.02, 0.03, 0.04)]
    samples += [Sample(0, False, v, v) for v in (0.2, 0.4, 0.25, 0.3, 0.35)]
    jobs = [Seen(100, 1.0, state="saved")]
    rows = suite.freshness_rows(FreshnessResult(FreshOptions(), samples, jobs, "today"))
    assert [r.ours for r in rows] == pytest.approx([300.0, 400.0])
    assert [r.anchor for r in rows] == pytest.approx([30.0, 40.0])
    assert [r.met for r in rows] == [None, True]


def test_memory_rows_hold_one_job_to_its_target():
    result = MemoryResult(
        MemoryOptions(repetitions=2),
        datetime(2026, 11, 30, tzinfo=UTC),
        {1: [sample(1, 20.0), sample(1, 22.0)], 20: [sample(20, 280.0), sample(20, 300.0)]},
    )
    one, twenty = suite.memory_rows(result)
    assert one.target == "<= 3x"
    assert one.met is True
    assert one.ratio_value() == pytest.approx(22 * 2**20 / 15_759_360)
    assert twenty.met is None
    assert twenty.anchor == pytest.approx(20 * 15_759_360 / 2**20)


def test_drain_rows_are_the_wall_the_429s_and_the_interactive_wait():
    rows = suite.drain_rows(made_up_drain())
    names = [r.figure for r in rows]
    assert names[0].startswith("drain wall, 2 jobs at 10/min")
    assert "drain 429s" in names
    assert "drain wall against a plain SDK loop" in names
    assert rows[0].anchor == pytest.approx(made_up_drain().even_minimum_s)


def test_fault_mix_rows_compare_with_the_sdk_loop():
    result = FaultMixResult(
        FaultOptions(),
        [
            Way("SDK loop, default retries", 12, 8, 17.0, ledger(33, 48, 12), at_kill=8),
            Way("this service", 12, 12, 25.0, ledger(13, 27, 12), at_kill=2),
        ],
        "today",
    )
    per, lost, beyond = suite.fault_mix_rows(result)
    assert per.ours == pytest.approx(13 / 12)
    assert per.anchor == pytest.approx(33 / 8)
    assert per.met is None
    assert (lost.ours, lost.anchor, lost.met) == (0, 4, True)
    assert (beyond.ours, beyond.anchor, beyond.met) == (0, 17, True)


def test_every_figure_of_the_suite_has_a_block_on_the_page_and_a_budget():
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    figures = suite.figures()
    assert [f.key for f in figures] == [
        "edge",
        "overhead",
        "freshness",
        "memory",
        "drain",
        "fault-mix",
    ]
    for f in figures:
        begin, end = markers(f.key)
        assert begin in text, f.key
        assert end in text, f.key
        assert f"## {f.title}\n" in text, f.title
    assert all(m in text for m in markers("summary"))
    # The budgets leave the suite inside 15 minutes, with room for the stacks' starts.
    assert sum(f.budget_s for f in figures) <= 14 * 60


# --- the page and the charts ------------------------------------------------------------------


PAGE = """# Benchmarks

Intro prose.

<!-- generated:summary:begin -->
old summary
<!-- generated:summary:end -->

## Edge latency

Why it is what it is: prose that must stay.

<!-- generated:edge:begin -->
old edge
<!-- generated:edge:end -->

More prose after.
"""


def made_up_suite() -> SuiteRun:
    edge = FigureRun(
        "edge",
        "Edge latency",
        "python -m bench.edge_latency",
        20.4,
        45,
        "1",
        "200 sequential",
        [Row("start, p99", 12.0, 4.0, "ms", "quickstart", target="<= 1.5x", met=False)],
        ["| figure | ... |", "new edge"],
    )
    fresh = FigureRun(
        "freshness",
        "Freshness",
        "python -m bench.freshness",
        33.0,
        60,
        "5",
        "20 jobs",
        [Row("p95", 400.0, 40.0, "ms", "SDK", target="<= 2000 ms", met=True)],
        ["new freshness"],
    )
    failed = FigureRun(
        "drain", "Drain", "python -m bench.drain", 3.0, 300, "15", "one", error="boom"
    )
    return SuiteRun(MACHINE, [edge, fresh, failed], seconds=600.0)


def test_the_page_keeps_its_prose_and_rewrites_only_the_blocks():
    out = write_page(PAGE, made_up_suite())
    assert "Intro prose." in out
    assert "Why it is what it is: prose that must stay." in out
    assert "More prose after." in out
    assert "old summary" not in out
    assert "old edge" not in out
    assert "new edge" in out
    assert "Latest `make bench` run: 20 s (budget 45 s), time scale 1, 200 sequential" in out
    assert "![Edge latency](benchmarks/edge.png)" in out
    # A figure without a block gets a section of its own at the end; a failed one says so.
    assert "## Freshness\n\n<!-- generated:freshness:begin -->" in out
    assert "**The figure failed in this run**: boom" in out
    # The summary: the table, the machine, the timing, the charts.
    assert "| start, p99 | 12.0 ms | 4.00 ms (quickstart) | 3.00x | <= 1.5x | **MISSED** |" in out
    assert "| p95 | 400 ms | 40.0 ms (SDK) | 10.00x | <= 2000 ms | met |" in out
    assert "in 10.0 minutes" in out
    assert "Targets met: 1 of 2." in out
    assert "load average at the start (1, 5, 15 min): 1.50, 2.00, 1.25" in out
    assert "| [Drain](#drain) | 15 | one | 3 (failed) | 300 | none |" in out
    assert "![every ratio against its target](benchmarks/summary.png)" in out
    # A rerun rewrites the same blocks in place: the page does not grow.
    again = write_page(out, made_up_suite())
    assert again == out


def test_a_page_without_a_summary_block_is_refused():
    with pytest.raises(ValueError, match="summary"):
        write_page("# Benchmarks\n", made_up_suite())
    assert replace_block("no block", "edge", ["x"]) is None


def test_the_charts_are_written(tmp_path: Path):
    written = charts(made_up_suite(), tmp_path)
    assert sorted(p.name for p in written) == ["edge.png", "freshness.png", "summary.png"]
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG")


def test_the_records_round_trip_through_json_and_render_the_same_page():
    run = made_up_suite()
    again = SuiteRun.from_json(json.loads(json.dumps(run.to_json())))
    assert again == run
    assert write_page(PAGE, again) == write_page(PAGE, run)


def test_render_only_draws_the_page_and_charts_from_results_json(tmp_path: Path):
    page = tmp_path / "benchmarks.md"
    page.write_text(PAGE)
    folder = tmp_path / "charts"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(made_up_suite().to_json()))
    assert suite.main(["--render-only", "--page", str(page), "--charts", str(folder)]) == 0
    assert "new edge" in page.read_text()
    assert (folder / "summary.png").exists()


def test_some_figures_only_leave_the_summary_of_the_last_whole_run(tmp_path: Path):
    out = write_page(PAGE, made_up_suite(), summary=False)
    assert "old summary" in out
    assert "new edge" in out
    written = charts(made_up_suite(), tmp_path, summary=False)
    assert "summary.png" not in [p.name for p in written]
