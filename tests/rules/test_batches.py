"""The batch manifest read line by line, and the choice between real time and the Batch API."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rules.batch_records import (
    BATCH_INPUT_SCHEMA_VERSION,
    COMPLETION_MARGIN_S,
    BatchCounts,
    BatchDecided,
    BatchInput,
    ItemResult,
    counted,
)
from rules.batches import (
    BatchMode,
    BatchOptions,
    ManifestInvalid,
    batch_id_for,
    check_deadline_ahead,
    parse_manifest,
    plan_batch,
    planned,
)
from rules.records import RecordUnreadable
from rules.settings import AppSettings

from .conftest import ENV

SETTINGS = AppSettings.from_env({**ENV, "IMAGE_ROUTE_AZURE_REQUESTS_PER_MINUTE": "10"})
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def jsonl(*lines: object) -> bytes:
    return "".join(
        (line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines
    ).encode()


def line(custom_id: str, **fields: object) -> dict[str, object]:
    return {"custom_id": custom_id, "prompt": f"a cat {custom_id}", **fields}


def test_every_valid_line_runs_and_every_bad_line_says_why():
    manifest = parse_manifest(
        jsonl(
            line("a"),
            "not json",
            line("b", size="13x13"),
            {"prompt": "no id"},
            line("a"),  # a repeated custom_id
            line("c", quality="high", route="openai"),
            line("d", images=[{"upload": "x"}]),
            line("e", colour="red"),
            line("f", webhookUrl="https://hooks.example.com/in"),
            line("g", n=10, size="3840x2160", quality="high"),  # past the whole-request limit
        ),
        SETTINGS,
    )
    assert [item.custom_id for item in manifest.items] == ["a", "c"]
    assert manifest.items[1].request.route == "openai"
    errors = {(e.line, e.field, e.code) for e in manifest.errors}
    assert errors == {
        (2, "line", "invalid_json"),
        (3, "size", "invalid_value"),
        (4, "custom_id", "invalid_value"),
        (5, "custom_id", "duplicate"),
        (7, "images", "unsupported"),
        (8, "colour", "unknown_field"),
        (9, "webhookUrl", "unsupported"),
        (10, "n", "invalid_value"),
    }
    assert manifest.lines == 10
    # No prompt text in any error.
    assert "a cat" not in json.dumps([e.to_json() for e in manifest.errors])


def test_a_line_in_the_batch_api_form_reads_the_same():
    manifest = parse_manifest(
        jsonl(
            {
                "custom_id": "x",
                "method": "POST",
                "url": "/v1/images/generations",
                "body": {"model": "gpt-image-2", "prompt": "a cat", "size": "1024x1536"},
            },
            {"custom_id": "y", "method": "POST", "url": "/v1/chat/completions", "body": {}},
        ),
        SETTINGS,
    )
    assert manifest.items[0].request.size == "1024x1536"
    assert [(e.line, e.field) for e in manifest.errors] == [(2, "url")]


def test_an_options_line_that_is_not_the_first_is_named_as_such():
    deadline = "2026-12-03T18:00:00Z"
    manifest = parse_manifest(
        jsonl(line("a"), {"batch": {"deadline": deadline}}, line("b")), SETTINGS
    )
    assert [item.custom_id for item in manifest.items] == ["a", "b"]
    (error,) = manifest.errors
    assert (error.line, error.field, error.code) == (2, "batch", "unsupported")
    assert "first line" in error.message
    assert "custom_id" not in error.message
    assert manifest.options.deadline is None


def test_a_batch_api_line_with_a_field_it_does_not_have_is_refused_as_a_native_one_is():
    form = {"custom_id": "x", "method": "POST", "url": "/v1/images/generations"}
    manifest = parse_manifest(
        jsonl(
            {**form, "body": {"prompt": "a cat"}, "extra": 1},
            {**form, "custom_id": "y", "body": {"prompt": "a cat", "colour": "red"}},
            line("z", colour="red"),
            {**form, "custom_id": "ok", "body": {"prompt": "a cat"}},
        ),
        SETTINGS,
    )
    assert [item.custom_id for item in manifest.items] == ["ok"]
    assert [(e.line, e.field, e.code) for e in manifest.errors] == [
        (1, "extra", "unknown_field"),
        (2, "colour", "unknown_field"),
        (3, "colour", "unknown_field"),
    ]


def test_a_line_with_a_priority_is_refused_the_batch_decides_it():
    form = {"custom_id": "y", "method": "POST", "url": "/v1/images/generations"}
    manifest = parse_manifest(
        jsonl(
            line("a", priority="interactive"),
            {**form, "body": {"prompt": "a cat", "priority": "batch"}},
            line("b"),
        ),
        SETTINGS,
    )
    assert [item.custom_id for item in manifest.items] == ["b"]
    assert [(e.line, e.field, e.code) for e in manifest.errors] == [
        (1, "priority", "unsupported"),
        (2, "priority", "unsupported"),
    ]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('{"custom_id": "a", "prompt": "x", "prompt": "y"}', "'prompt' appears twice"),
        ('{"custom_id": "a", "custom_id": "b", "prompt": "x"}', "'custom_id' appears twice"),
        ('{"custom_id": "a", "prompt": "x", "n": NaN}', "NaN"),
        ('{"custom_id": "a", "prompt": "x", "n": Infinity}', "Infinity"),
    ],
)
def test_a_line_that_strict_json_has_not_is_invalid_json_naming_the_problem(text, named):
    manifest = parse_manifest(jsonl(text, line("b")), SETTINGS)
    (error,) = manifest.errors
    assert (error.line, error.field, error.code) == (1, "line", "invalid_json")
    assert named in error.message


def test_a_deadline_in_the_past_is_refused():
    check_deadline_ahead(None, NOW)
    check_deadline_ahead(NOW + timedelta(seconds=1), NOW)
    for past in (NOW, NOW - timedelta(seconds=1), datetime(2020, 1, 1, tzinfo=UTC)):
        with pytest.raises(ManifestInvalid) as raised:
            check_deadline_ahead(past, NOW)
        assert (raised.value.field, raised.value.code) == ("deadline", "invalid_value")
        assert "past" in raised.value.message


def test_options_come_from_the_first_line_and_the_request_wins():
    deadline = "2026-12-03T18:00:00Z"
    data = jsonl({"batch": {"deadline": deadline, "route": "openai"}}, line("a"))
    manifest = parse_manifest(data, SETTINGS)
    assert manifest.options.deadline == datetime(2026, 12, 3, 18, tzinfo=UTC)
    assert manifest.items[0].request.route == "openai"
    asked = parse_manifest(data, SETTINGS, options=BatchOptions(route="azure"))
    assert asked.items[0].request.route == "azure"
    with pytest.raises(ManifestInvalid) as raised:
        parse_manifest(jsonl({"batch": {"deadline": "tomorrow"}}, line("a")), SETTINGS)
    assert raised.value.field == "deadline"


@pytest.mark.parametrize(
    ("data", "code"),
    [(b"", "empty"), (b"\n\n", "empty"), (b"\xff\xfe", "invalid_encoding")],
)
def test_a_manifest_with_nothing_to_run_is_refused_whole(data, code):
    with pytest.raises(ManifestInvalid) as raised:
        parse_manifest(data, SETTINGS)
    assert raised.value.code == code


def test_without_a_deadline_a_batch_runs_now_and_both_quotes_are_given():
    manifest = parse_manifest(jsonl(*(line(str(i)) for i in range(100))), SETTINGS)
    plan = planned(manifest, SETTINGS, NOW)
    assert plan.mode is BatchMode.REALTIME
    assert plan.realtime_usd is not None
    assert plan.batch_api_usd == pytest.approx(plan.realtime_usd / 2)
    # 100 sends at 10/min, one every 6 s: 594 s, then the last one's generation.
    assert plan.realtime_s is not None
    assert 594 < plan.realtime_s < 594 + 120


def test_the_batch_api_needs_a_deadline_past_its_window_and_a_route_that_has_it():
    with_api = AppSettings.from_env({**ENV, "IMAGE_ROUTE_OPENAI_BATCH_API": "true"})
    items = [line(str(i), route="openai") for i in range(3)]
    late = parse_manifest(
        jsonl(*items), with_api, options=BatchOptions(deadline=NOW + timedelta(hours=30))
    )
    plan = plan_batch(late, with_api, NOW, generation_s=30)
    assert (plan.mode, plan.route) == (BatchMode.BATCH_API, "openai")
    soon = replace(late, options=BatchOptions(deadline=NOW + timedelta(hours=2)))
    assert plan_batch(soon, with_api, NOW, generation_s=30).mode is BatchMode.REALTIME
    assert "inside the Batch API's 24 h" in plan_batch(soon, with_api, NOW, generation_s=30).reason
    without = plan_batch(late, SETTINGS, NOW, generation_s=30)
    assert without.mode is BatchMode.REALTIME
    assert "has no Batch API" in without.reason


def test_a_batch_id_is_the_callers_and_tells_nothing_of_the_manifest():
    secret = b"s" * 32
    one = batch_id_for(secret, "alice", None, b"manifest")
    assert one == batch_id_for(secret, "alice", None, b"manifest")
    assert one != batch_id_for(secret, "bob", None, b"manifest")
    assert one != batch_id_for(secret, "alice", "key-1", b"manifest")
    assert one.startswith("bat-")
    assert len(one) == 28


def test_a_report_counts_its_lines():
    results = [
        ItemResult(1, "a", "img-1", "saved", attempts=1, cost_usd=0.01),
        ItemResult(2, "b", "img-2", "failed", attempts=2, cost_usd=0.005),
        ItemResult(3, "c", "img-3", "cancelled"),
        ItemResult(4, "d", None, "invalid"),
    ]
    assert counted(results) == BatchCounts(
        items=3, invalid=1, started=2, saved=1, failed=1, cancelled=1, cost_usd=0.015
    )


def test_the_batch_input_round_trips():
    manifest = parse_manifest(jsonl(line("a")), SETTINGS)
    batch = BatchInput(
        batch_id="bat-0123456789abcdef01234567",
        caller="digest",
        created_at="2026-11-30T09:00:00.000Z",
        manifest="claimed/bat-0123456789abcdef01234567.jsonl",
        plan=planned(manifest, SETTINGS, NOW),
        next_wave=2,
        waves=5,
        counts=BatchCounts(items=500, saved=10),
        execution=1,
    )
    assert BatchInput.from_json(json.dumps(batch.to_json())) == batch


def test_the_batch_input_carries_what_it_decides_by_as_version_2_and_reads_version_1_as_before():
    manifest = parse_manifest(jsonl(line("a")), SETTINGS)
    settings = AppSettings.from_env({**ENV, "IMAGE_BATCH_IN_FLIGHT": "7", "IMAGE_TIME_SCALE": "10"})
    older = BatchInput(
        batch_id="bat-0123456789abcdef01234567",
        caller="digest",
        created_at="2026-11-30T09:00:00.000Z",
        manifest="claimed/bat-0123456789abcdef01234567.jsonl",
        plan=planned(manifest, SETTINGS, NOW),
    )
    decided = BatchDecided.from_settings(settings)
    assert decided.in_flight == 7
    assert decided.routes == ("azure", "openai")
    assert decided.give_up_s == (24 * 3600 + COMPLETION_MARGIN_S) / 10
    frozen = replace(older, decided=decided)
    written = frozen.to_json()
    assert written["v"] == BATCH_INPUT_SCHEMA_VERSION == 2
    assert BatchInput.from_json(json.dumps(written)) == frozen
    # Without it, written exactly as version 1; a version 1 (or 0) input decides by the settings.
    assert older.to_json()["v"] == 1
    assert "decided" not in older.to_json()
    for version in (1, 0):
        data = {k: v for k, v in older.to_json().items() if k != "v" or version}
        if version:
            data["v"] = version
        read = BatchInput.from_json(data)
        assert read.decided is None
        assert read.deciding(settings) == decided
    with pytest.raises(RecordUnreadable, match="newer"):
        BatchInput.from_json({**written, "v": 3})
