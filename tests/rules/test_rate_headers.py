"""The route's rate-limit headers read (rules.rate_headers), and the records that cross the route
entity's boundary (rules.route_records): their JSON round trips, and RecordUnreadable for a
record that breaks its shape."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.rate_headers import hint_from_headers, number, parse_duration
from rules.records import RecordUnreadable
from rules.route_records import (
    Admission,
    AdmitRequest,
    AttemptReport,
    Expectation,
    Priority,
    RateLimitHint,
)

# --- numbers and durations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5.0),
        ("-1", -1.0),
        ("2.5", 2.5),
        (" 7 ", 7.0),
        ("inf", None),
        ("-inf", None),
        ("nan", None),
        ("1e400", None),  # overflows to inf
        ("", None),
        ("five", None),
        (None, None),
    ],
)
def test_numbers_are_finite_or_none(text, value):
    assert number(text) == value


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("12ms", 0.012),
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("1h2m3s", 3723.0),
        ("2m30.5s", 150.5),
        ("1s500ms", 1.5),
        ("20", 20.0),  # a plain number is seconds (retry-after)
        ("0", 0.0),
        (" 6s ", 6.0),
    ],
)
def test_go_style_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["-1", "-5s", "", None, "x", "6 s", "6sm", "s", "1.2.3s", ".s", "..5s", "1d", "infs", "nan"],
)
def test_junk_durations_are_none(text):
    assert parse_duration(text) is None


@given(st.text(max_size=20))
def test_parse_duration_never_raises(text):
    got = parse_duration(text)
    assert got is None or (math.isfinite(got) and got >= 0)


units = st.sampled_from([("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 0.001)])


@given(st.lists(st.tuples(st.integers(0, 999), units), min_size=1, max_size=4))
def test_durations_add_their_parts(parts):
    text = "".join(f"{value}{unit}" for value, (unit, _) in parts)
    assert parse_duration(text) == pytest.approx(sum(v * scale for v, (_, scale) in parts))


# --- the hint ------------------------------------------------------------------------------


def test_openai_headers_give_limit_remaining_and_reset():
    headers = {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "6s",
    }
    assert hint_from_headers(headers, 100.0, window_s=60.0) == RateLimitHint(
        observed_at=100.0, until=106.0, remaining=0, limit_requests=5, limit_images=None
    )


def test_header_names_are_read_whatever_their_case():
    headers = {"X-RateLimit-Limit-Requests": "5", "X-RateLimit-Reset-Requests": "12ms"}
    hint = hint_from_headers(headers, 1.0, window_s=60.0)
    assert hint is not None
    assert (hint.limit_requests, hint.remaining) == (5, None)
    assert hint.until == pytest.approx(1.012)


def test_azure_headers_without_a_reset_hold_the_remaining_count_for_a_window():
    headers = {"x-ratelimit-limit-requests": "30", "x-ratelimit-remaining-requests": "2"}
    assert hint_from_headers(headers, 10.0, window_s=6.0) == RateLimitHint(10.0, 16.0, 2, 30)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-ratelimit-reset-requests": "6s"},  # a reset alone says nothing of a count
        {"x-ratelimit-limit-requests": "-1", "x-ratelimit-remaining-requests": "-1"},
        {"x-ratelimit-limit-requests": "lots", "x-ratelimit-remaining-requests": "2.5"},
        {"x-ratelimit-remaining-tokens": "0"},  # tokens are not this governor's
    ],
)
def test_headers_that_say_nothing_usable_give_no_hint(headers):
    assert hint_from_headers(headers, 0.0, window_s=60.0) is None


def test_minus_one_values_are_ignored_beside_real_ones():
    headers = {
        "x-ratelimit-limit-requests": "-1",
        "x-ratelimit-remaining-requests": "3",
        "x-ratelimit-reset-requests": "-1",
    }
    assert hint_from_headers(headers, 0.0, window_s=60.0) == RateLimitHint(0.0, 60.0, 3, None)


def test_images_headers_set_the_images_limit_and_the_lower_remaining_count():
    headers = {
        "x-ratelimit-limit-images": "20",
        "x-ratelimit-remaining-images": "1",
        "x-ratelimit-remaining-requests": "4",
        "x-ratelimit-limit-requests": "0",  # a zero limit is no limit said
    }
    assert hint_from_headers(headers, 0.0, window_s=60.0) == RateLimitHint(
        0.0, 60.0, remaining=1, limit_requests=None, limit_images=20
    )


header_values = st.one_of(
    st.integers(-2, 100).map(str), st.sampled_from(["-1", "6s", "1m0s", "x", "", "1.5"])
)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
                "x-ratelimit-limit-images",
                "x-ratelimit-remaining-images",
            ]
        ),
        header_values,
    )
)
def test_a_hint_never_holds_a_negative_count_nor_ends_before_it_was_seen(headers):
    hint = hint_from_headers(headers, 50.0, window_s=60.0)
    if hint is None:
        return
    assert hint.until >= hint.observed_at == 50.0
    for count in (hint.remaining, hint.limit_requests, hint.limit_images):
        assert count is None or (isinstance(count, int) and count >= 0)
    assert hint.limit_requests != 0
    assert hint.limit_images != 0


# --- records: round trips ------------------------------------------------------------------

millis = st.integers(0, 10**12).map(lambda ms: ms / 1000)
maybe_millis = st.one_of(st.none(), millis)
expectations = st.builds(
    Expectation,
    first_byte_s=maybe_millis,
    first_partial_s=maybe_millis,
    total_s=millis,
    early_s=millis,
    late_s=millis,
    samples=st.integers(0, 50),
)
names = st.text(min_size=1, max_size=12)
requests = st.builds(
    AdmitRequest,
    job_id=names,
    attempt=st.integers(1, 20),
    priority=st.sampled_from(list(Priority)),
    images=st.integers(1, 10),
    shape=names,
    calibrated=expectations,
    queued_since=millis,
)
admissions = st.builds(
    Admission,
    admitted=st.booleans(),
    position=st.integers(0, 1000),
    start_at=millis,
    ask_again_at=maybe_millis,
    reason=st.one_of(st.none(), names),
    expected=st.one_of(st.none(), expectations),
)
reports = st.builds(
    AttemptReport,
    job_id=names,
    attempt=st.integers(1, 20),
    shape=names,
    failure_kind=st.one_of(st.none(), names),
    sent_at=maybe_millis,
    first_byte_s=maybe_millis,
    first_partial_s=maybe_millis,
    total_s=maybe_millis,
    retry_after_s=maybe_millis,
    rate_limit=st.one_of(st.none(), st.dictionaries(names, names, min_size=1, max_size=3)),
    headers_at=maybe_millis,
    ended_at=maybe_millis,
)
hints = st.builds(
    RateLimitHint,
    observed_at=millis,
    until=millis,
    remaining=st.one_of(st.none(), st.integers(0, 1000)),
    limit_requests=st.one_of(st.none(), st.integers(1, 1000)),
    limit_images=st.one_of(st.none(), st.integers(1, 1000)),
)


@settings(max_examples=60)
@given(requests, admissions, reports, hints)
def test_records_round_trip_through_json_text(request, admission, report, hint):
    assert AdmitRequest.from_json(json.dumps(request.to_json())) == request
    assert Admission.from_json(json.dumps(admission.to_json())) == admission
    assert AttemptReport.from_json(json.dumps(report.to_json())) == report
    assert RateLimitHint.from_json(json.loads(json.dumps(hint.to_json()))) == hint
    assert report.ok is (report.failure_kind is None)


def test_an_admit_request_without_priority_or_images_is_one_interactive_image():
    written = AdmitRequest(
        "j", 1, Priority.BATCH, 3, "s", Expectation(None, None, 1.0, 1.0, 1.0, 0), 0.0
    ).to_json()
    del written["priority"], written["images"]
    request = AdmitRequest.from_json(written)
    assert (request.priority, request.images) == (Priority.INTERACTIVE, 1)


def test_priority_ranks_interactive_first():
    assert Priority.INTERACTIVE.rank < Priority.BATCH.rank


# --- records: broken shapes ----------------------------------------------------------------

REQUEST = {
    "job_id": "j",
    "attempt": 1,
    "priority": "batch",
    "images": 1,
    "shape": "s",
    "calibrated": {
        "first_byte_s": None,
        "first_partial_s": None,
        "total_s": 20.0,
        "early_s": 12.0,
        "late_s": 24.0,
        "samples": 0,
    },
    "queued_since": 0.0,
}
ADMISSION = {"admitted": False, "position": 2, "start_at": 10.0, "ask_again_at": 9.0}
REPORT = {"job_id": "j", "attempt": 1, "shape": "s", "failure_kind": None, "sent_at": 1.0}


def broken(record: Mapping[str, object], **change: object) -> dict[str, object]:
    out = dict(record, **change)
    return {name: value for name, value in out.items() if value is not ...}


@pytest.mark.parametrize(
    ("reader", "value", "kind"),
    [
        (AdmitRequest.from_json, [], "admit request"),
        (AdmitRequest.from_json, "{not json", "admit request"),
        (AdmitRequest.from_json, broken(REQUEST, job_id=...), "admit request"),
        (AdmitRequest.from_json, broken(REQUEST, calibrated=...), "admit request"),
        (AdmitRequest.from_json, broken(REQUEST, queued_since=...), "admit request"),
        (AdmitRequest.from_json, broken(REQUEST, attempt="first"), "admit request"),
        (AdmitRequest.from_json, broken(REQUEST, priority="urgent"), "admit request"),
        (AdmitRequest.from_json, broken(REQUEST, images="many"), "admit request"),
        (AdmitRequest.from_json, broken(REQUEST, calibrated={"total_s": 1}), "admit request"),
        (AdmitRequest.from_json, broken(REQUEST, calibrated=[]), "admit request"),
        (Admission.from_json, 3, "admission"),
        (Admission.from_json, broken(ADMISSION, admitted=...), "admission"),
        (Admission.from_json, broken(ADMISSION, start_at="soon"), "admission"),
        (Admission.from_json, broken(ADMISSION, ask_again_at="later"), "admission"),
        (Admission.from_json, broken(ADMISSION, expected={"total_s": "x"}), "admission"),
        (AttemptReport.from_json, None, "attempt report"),
        (AttemptReport.from_json, broken(REPORT, shape=...), "attempt report"),
        (AttemptReport.from_json, broken(REPORT, attempt=None), "attempt report"),
        (AttemptReport.from_json, broken(REPORT, sent_at="soon"), "attempt report"),
        (AttemptReport.from_json, broken(REPORT, total_s=[1]), "attempt report"),
        (AttemptReport.from_json, broken(REPORT, retry_after_s="20s"), "attempt report"),
        (AttemptReport.from_json, broken(REPORT, rate_limit=["x-ratelimit"]), "attempt report"),
    ],
)
def test_a_record_that_breaks_its_shape_is_unreadable(reader, value, kind):
    with pytest.raises(RecordUnreadable) as caught:
        reader(value)
    assert caught.value.kind == kind
