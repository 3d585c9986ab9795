"""The pieces of the screen: the waterfall, the live line, the pace rules, Retry-After."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from rich.console import Console

from clients.api import retry_after_seconds
from clients.follow import MAX_POLL_S, MIN_POLL_S, poll_delay
from clients.render import LiveLine, Segment, retry_text, waterfall, waterfall_table


def test_the_waterfall_places_moments_from_the_send_and_durations_after_them():
    timings = {
        "connectMs": 30,
        "firstByteMs": 400,
        "firstPartialImageMs": None,  # never came: no row
        "finalImageMs": 2400,
        "downloadMs": 5,
        "uploadMs": 12,
    }
    assert waterfall(timings) == [
        Segment("connect", 0, 30, 30, False),
        Segment("first byte", 30, 400, 400, False),
        Segment("final image", 400, 2400, 2400, False),
        Segment("download", 2400, 2405, 5, True),
        Segment("upload", 2405, 2417, 12, True),
    ]
    assert waterfall({}) == []
    # The names answers had before they were camelCase are read too.
    assert waterfall({"connect_ms": 30, "upload_ms": 12}) == [
        Segment("connect", 0, 30, 30, False),
        Segment("upload", 30, 42, 12, True),
    ]
    assert waterfall_table(None, title="t") is None


def test_the_waterfall_fits_a_narrow_terminal():
    out = io.StringIO()
    console = Console(file=out, width=50, color_system=None)
    timings = {"connectMs": 30, "firstByteMs": 400, "finalImageMs": 2400, "uploadMs": 9}
    table = waterfall_table(timings, title="clocks", width=50)
    assert table is not None
    console.print(table)
    lines = out.getvalue().splitlines()
    assert any(line.startswith(" first byte ") for line in lines)  # labels are never cut
    assert all(len(line) <= 50 for line in lines)


def test_the_live_line_is_one_line_short_of_the_width():
    now = [100.0]
    line = LiveLine(lambda: now[0])
    line.update(
        {"state": "generating", "attempt": 2, "stateText": "Generating: " + "very " * 30},
        next_poll_s=2.0,
    )
    now[0] = 103.5
    out = io.StringIO()
    Console(file=out, width=60, color_system=None).print(line)
    lines = out.getvalue().rstrip("\n").splitlines()
    assert len(lines) == 1
    assert len(lines[0].rstrip()) <= 56  # room for the terminal's ^C echo
    assert "generating for 3.5s · attempt 2 · 3.5s in all · next p…" in lines[0]
    line.troubled("cannot connect", 4.0)
    assert "poll failed, trying again: cannot connect" in line.text().plain


def test_retry_text_counts_down_to_the_retry():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    retry = {"at": "2026-01-01T12:00:08.000Z", "reason": "rate limited"}
    assert retry_text(retry, now) == "retry in 8.0s (rate limited)"
    assert retry_text({"at": "2026-01-01T11:00:00Z"}, now) == "retry now"
    assert retry_text(None) == ""


def test_poll_delay_honours_retry_after_within_bounds_and_the_override_wins():
    assert poll_delay(3.0) == 3.0
    assert poll_delay(600.0) == MAX_POLL_S
    assert poll_delay(0.0) == MIN_POLL_S
    assert poll_delay(None) == 2.0
    assert poll_delay(600.0, 0.5) == 0.5


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2015, 10, 21, 7, 27, 50, tzinfo=UTC)
    assert retry_after_seconds("5") == 5.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 10.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("nan") is None


def test_a_jobs_error_names_its_param_and_field():
    from clients.render import error_text

    failure = {
        "layer": "model",
        "httpStatus": 400,
        "type": "invalid_request_error",
        "code": "invalid_value",
        "param": "size",
        "field": "size",
        "message": "bad  size\n here",
    }
    assert error_text(failure) == (
        "model HTTP 400 invalid_request_error invalid_value (param size) (field size): "
        "bad size here"
    )
