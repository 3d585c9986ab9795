"""What a route learns per shape class (rules.route_stats): the classes, the percentile, rolling
samples and outcomes, and the expectation that switches from the calibration to what was learned
once MIN_SAMPLES attempts were saved."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.route_records import AttemptReport, Expectation
from rules.route_stats import (
    MIN_SAMPLES,
    OUTCOMES,
    SAMPLES,
    ClassStats,
    calibrated,
    expectation,
    learn,
    percentile,
    shape_class,
    size_class,
)

SHAPE = "gpt-image-2/1mp/low/png/plain"


def report(
    failure_kind: str | None = None, sent_at: float | None = 0.0, **clocks: float
) -> AttemptReport:
    return AttemptReport("j", 1, SHAPE, failure_kind, sent_at, **clocks)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "named"),
    [
        ("auto", "auto"),
        ("1024x1024", "1mp"),
        ("1100x1000", "1mp"),  # 1 100 000 pixels: the top of the first class
        ("1101x1000", "2mp"),
        ("1536x1024", "2mp"),
        ("1024x1536", "2mp"),
        ("2400x1000", "2mp"),
        ("2560x1440", "4mp"),
        ("2048x2048", "4mp"),
        ("4300x1000", "4mp"),
        ("4301x1000", "8mp"),
        ("3840x2160", "8mp"),
    ],
)
def test_size_classes_by_pixels(size, named):
    assert size_class(size) == named


def test_shape_classes_name_everything_that_changes_the_clocks():
    common: dict[str, Any] = {"model": "gpt-image-2", "quality": "low", "output_format": "png"}
    assert (
        shape_class(size="1024x1024", stream=True, partial_images=1, **common)
        == "gpt-image-2/1mp/low/png/stream-1"
    )
    assert (
        shape_class(size="1536x1024", stream=False, partial_images=2, **common)
        == "gpt-image-2/2mp/low/png/plain"
    )
    assert (
        shape_class(size="auto", stream=True, partial_images=0, edit=True, **common)
        == "gpt-image-2/auto/low/png/stream-0/edit"
    )
    # More images a request are learned apart: they take longer.
    assert (
        shape_class(size="1024x1024", stream=True, partial_images=1, images=4, **common)
        == "gpt-image-2/1mp/low/png/stream-1/n4"
    )
    assert (
        shape_class(size="auto", stream=False, partial_images=0, edit=True, images=2, **common)
        == "gpt-image-2/auto/low/png/plain/n2/edit"
    )
    # Sizes of one class share it; quality and format do not.
    assert shape_class(size="1024x1024", stream=False, partial_images=0, **common) == shape_class(
        size="1000x1000", stream=False, partial_images=0, **common
    )
    assert shape_class(
        size="1024x1024", stream=False, partial_images=0, **dict(common, quality="high")
    ) != shape_class(size="1024x1024", stream=False, partial_images=0, **common)


@pytest.mark.parametrize(
    ("values", "share", "expected"),
    [
        ([7.0], 0.5, 7.0),
        ([3.0, 1.0, 2.0], 0.5, 2.0),
        ([10.0, 20.0, 30.0, 40.0, 50.0], 0.5, 30.0),
        ([10.0, 20.0, 30.0, 40.0, 50.0], 0.95, 50.0),  # index round(3.8) = 4
        ([10.0, 20.0, 30.0, 40.0, 50.0], 0.1, 10.0),  # index round(0.4) = 0
        ([10.0, 20.0, 30.0, 40.0, 50.0], 0.9, 50.0),  # index round(3.6) = 4
        ([float(v) for v in range(1, 21)], 0.95, 19.0),  # index round(18.05) = 18
        # Halves round to even (numpy's "nearest"): the upper middle of four, the lower of six.
        ([1.0, 2.0, 3.0, 4.0], 0.5, 3.0),  # index round(1.5) = 2
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.5, 3.0),  # index round(2.5) = 2
        ([float(v) for v in range(1, 101)], 0.5, 51.0),  # index round(49.5) = 50
        ([1.0, 2.0, 3.0, 4.0], 0.0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 1.0, 4.0),
    ],
)
def test_percentile_examples(values, share, expected):
    assert percentile(values, share) == expected


finite = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=60), st.floats(0, 1), st.floats(0, 1))
def test_percentile_is_a_sample_within_the_range_and_grows_with_the_share(values, a, b):
    low, high = sorted((a, b))
    got = percentile(values, low)
    assert got in values
    assert min(values) <= got <= percentile(values, high) <= max(values)
    assert percentile(values, 0.0) == min(values)
    assert percentile(values, 1.0) == max(values)


def test_a_report_never_sent_teaches_nothing():
    stats = learn(None, report(sent_at=None, total_s=5.0))
    assert stats == ClassStats()
    grown = learn(stats, report(total_s=5.0))
    assert learn(grown, report("connect_failed", sent_at=None)) == grown


def test_a_saved_report_adds_its_clocks_and_a_failure_its_kind():
    stats = learn(None, report(first_byte_s=1.0, first_partial_s=4.0, total_s=9.0))
    stats = learn(stats, report(total_s=11.0))  # no first byte, no partial image
    stats = learn(stats, report("server_error", total_s=100.0))  # a failure's clocks: not samples
    stats = learn(stats, report("server_error"))
    stats = learn(stats, report("rate_limited"))
    assert stats.total == (9.0, 11.0)
    assert stats.first_byte == (1.0,)
    assert stats.first_partial == (4.0,)
    assert stats.outcomes == ("ok", "ok", "server_error", "server_error", "rate_limited")
    assert (stats.sent, stats.saved) == (5, 2)
    assert dict(stats.failures) == {"server_error": 2, "rate_limited": 1}


def test_samples_and_outcomes_roll_while_the_totals_count_everything():
    stats = None
    for i in range(SAMPLES + 30):
        stats = learn(stats, report(total_s=float(i), first_byte_s=float(i)))
    for _ in range(OUTCOMES):
        stats = learn(stats, report("timeout"))
    assert stats is not None
    assert stats.total == tuple(float(i) for i in range(30, SAMPLES + 30))  # the newest kept
    assert len(stats.first_byte) == SAMPLES
    assert stats.outcomes == ("timeout",) * OUTCOMES
    assert (stats.sent, stats.saved) == (SAMPLES + 30 + OUTCOMES, SAMPLES + 30)


outcomes = st.one_of(st.none(), st.sampled_from(["server_error", "timeout", "rate_limited"]))


@settings(max_examples=50)
@given(
    st.lists(
        st.tuples(outcomes, st.booleans(), st.one_of(st.none(), finite)), min_size=0, max_size=80
    )
)
def test_the_counts_add_up_whatever_is_reported(reports):
    stats = ClassStats()
    for kind, was_sent, total in reports:
        stats = learn(stats, report(kind, 0.0 if was_sent else None, total_s=total))
    sent = [(kind, total) for kind, was_sent, total in reports if was_sent]
    assert stats.sent == len(sent)
    assert stats.saved == sum(1 for kind, _ in sent if kind is None)
    assert stats.saved + sum(stats.failures.values()) == stats.sent
    assert len(stats.outcomes) == min(len(sent), OUTCOMES)
    kept = [total for kind, total in sent if kind is None and total is not None]
    assert stats.total == tuple(kept[-SAMPLES:])
    written = stats.to_json()  # clocks kept to the millisecond
    assert ClassStats.from_json(written).to_json() == written


def test_the_calibration_until_enough_were_saved_then_what_was_learned():
    guess = calibrated(40.0, first_partial_share=0.5)
    assert guess == Expectation(None, 20.0, 40.0, 24.0, 48.0, 0)
    assert calibrated(40.0, first_partial_share=None).first_partial_s is None
    assert expectation(None, guess) is guess
    stats = None
    for total in [50.0, 10.0, 40.0, 20.0][: MIN_SAMPLES - 1]:
        stats = learn(stats, report(total_s=total, first_partial_s=total / 2))
        stats = learn(stats, report("timeout", total_s=999.0))  # failures do not count
    assert expectation(stats, guess) is guess
    stats = learn(stats, report(total_s=30.0, first_partial_s=15.0))
    assert expectation(stats, guess) == Expectation(
        first_byte_s=None,  # none reported
        first_partial_s=15.0,
        total_s=30.0,  # sorted 10 20 30 40 50
        early_s=10.0,
        late_s=50.0,
        samples=MIN_SAMPLES,
    )


def test_saved_reports_without_a_total_do_not_make_the_class_learned():
    stats = None
    for _ in range(MIN_SAMPLES + 2):
        stats = learn(stats, report(first_byte_s=1.0))
    assert stats is not None
    assert stats.saved == MIN_SAMPLES + 2
    guess = calibrated(40.0, first_partial_share=None)
    assert expectation(stats, guess) is guess


def test_class_stats_round_trip_through_json():
    stats = ClassStats(
        first_byte=(1.25,),
        first_partial=(4.5, 5.0),
        total=(9.0, 10.125),
        outcomes=("ok", "timeout"),
        sent=2,
        saved=1,
        failures={"timeout": 1},
    )
    assert ClassStats.from_json(stats.to_json()) == stats
    assert ClassStats.from_json({}) == ClassStats()
