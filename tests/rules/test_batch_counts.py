"""A batch's counts partition its items: every valid line is in exactly one of notStarted,
running, saved, failed and cancelled, whatever the batch's counters hold (a cancelled batch's
unstarted items end cancelled without ever starting)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rules.batch_records import BatchCounts

PARTS = ("notStarted", "running", "saved", "failed", "cancelled")


@st.composite
def counters(draw: st.DrawFn) -> BatchCounts:
    """Counters a batch can hold: ended items (some of them never started) within the items,
    started items within the items."""
    items = draw(st.integers(0, 5000))
    saved = draw(st.integers(0, items))
    failed = draw(st.integers(0, items - saved))
    cancelled = draw(st.integers(0, items - saved - failed))
    started = draw(st.integers(0, items))
    return BatchCounts(
        items=items,
        invalid=draw(st.integers(0, 100)),
        started=started,
        saved=saved,
        failed=failed,
        cancelled=cancelled,
    )


@given(counters())
def test_the_counts_partition_the_items(counts: BatchCounts):
    shown = counts.by_state()
    assert all(shown[part] >= 0 for part in PARTS)
    assert sum(shown[part] for part in PARTS) == counts.items
    assert (shown["saved"], shown["failed"], shown["cancelled"]) == (
        counts.saved,
        counts.failed,
        counts.cancelled,
    )


@given(counters())
def test_what_started_and_has_not_ended_is_running(counts: BatchCounts):
    shown = counts.by_state()
    assert shown["running"] == max(0, counts.started - counts.done)


def test_a_batch_cancelled_while_running_counts_each_item_once():
    # 2,000 lines, 100 started, then cancelled: every item ends cancelled.
    counts = BatchCounts(items=2000, started=100, saved=0, failed=0, cancelled=2000)
    shown = counts.by_state()
    assert (shown["notStarted"], shown["running"], shown["cancelled"]) == (0, 0, 2000)
    assert sum(shown[part] for part in PARTS) == 2000


def test_a_running_batch_shows_what_waits_and_what_runs():
    counts = BatchCounts(items=2000, started=150, saved=90, failed=5, cancelled=5)
    assert counts.by_state() == {
        "items": 2000,
        "invalid": 0,
        "notStarted": 1850,
        "running": 50,
        "saved": 90,
        "failed": 5,
        "cancelled": 5,
    }
