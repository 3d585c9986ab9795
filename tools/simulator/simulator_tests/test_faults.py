"""Fault specs from JSON (errors name the field) and the queue that hands them out."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from simulator.faults import FaultMatch, FaultQueue, FaultSpec, RequestContext, parse_fault

CTX = RequestContext(
    route="azure", deployment="gpt-image-2", endpoint="generations", stream=True, size="2048x2048"
)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"kind": "http_error", "status": 503}, {"status": 503, "count": 1}),
        (
            {"kind": "http_error", "status": 500, "type": "server_error", "message": "boom"},
            {"type": "server_error", "message": "boom"},
        ),
        (
            {"kind": "http_error", "status": 400, "code": "invalid_value", "param": "size"},
            {"code": "invalid_value", "param": "size"},
        ),
        ({"kind": "slow_first_byte", "delay_s": 90}, {"delay_s": 90.0}),
        (
            {"kind": "mid_stream_error", "after_partials": 2},
            {"after_partials": 2, "style": "azure", "error_type": "server_error"},
        ),
        (
            {"kind": "mid_stream_error", "style": "openai", "error_type": "x", "code": "y"},
            {"style": "openai", "error_type": "x", "code": "y"},
        ),
        (
            {"kind": "mid_stream_error", "code": "content_filter", "param": "prompt"},
            {"code": "content_filter", "param": "prompt"},
        ),
        ({"kind": "stream_without_completed", "after_partials": 1}, {"after_partials": 1}),
        ({"kind": "connection_reset"}, {"at": "before_headers", "after_partials": 0}),
        (
            {"kind": "connection_reset", "at": "after_partials", "after_partials": 1},
            {"at": "after_partials", "after_partials": 1},
        ),
        ({"kind": "moderation_blocked", "count": 3}, {"count": 3}),
        ({"kind": "content_filter"}, {"style": "contentFilter"}),
        ({"kind": "content_filter", "style": "content_filter"}, {"style": "content_filter"}),
        ({"kind": "rate_limited"}, {"retry_after_s": 1.0, "header_style": "openai"}),
        (
            {"kind": "rate_limited", "retry_after_s": 12, "header_style": "message_only"},
            {"retry_after_s": 12.0, "header_style": "message_only"},
        ),
        ({"kind": "insufficient_quota"}, {"kind": "insufficient_quota"}),
        ({"kind": "auth_error"}, {"status": 401}),
        ({"kind": "auth_error", "status": 403}, {"status": 403}),
    ],
)
def test_every_kind_parses_with_its_defaults(obj, expected):
    spec = parse_fault(obj)
    assert spec.kind == obj["kind"]
    for name, value in expected.items():
        assert getattr(spec, name) == value


def test_match_is_parsed_and_round_trips():
    obj = {
        "kind": "mid_stream_error",
        "count": 2,
        "match": {"route": "azure_v1", "endpoint": "edits", "stream": True, "size": "2048x2048"},
        "after_partials": 1,
    }
    spec = parse_fault(obj)
    assert spec.match == FaultMatch(
        route="azure_v1", endpoint="edits", stream=True, size="2048x2048"
    )
    assert parse_fault(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({}, "kind"),
        ({"kind": "meteor"}, "kind"),
        ({"kind": 5}, "kind"),
        ({"kind": "http_error"}, "status"),
        ({"kind": "http_error", "status": 200}, "status"),
        ({"kind": "http_error", "status": "500"}, "status"),
        ({"kind": "http_error", "status": 500, "delay_s": 1}, "delay_s"),
        ({"kind": "http_error", "status": 500, "message": ""}, "message"),
        ({"kind": "slow_first_byte"}, "delay_s"),
        ({"kind": "slow_first_byte", "delay_s": -1}, "delay_s"),
        ({"kind": "slow_first_byte", "delay_s": True}, "delay_s"),
        ({"kind": "mid_stream_error", "after_partials": 4}, "after_partials"),
        ({"kind": "mid_stream_error", "style": "xml"}, "style"),
        ({"kind": "connection_reset", "at": "middle"}, "at"),
        ({"kind": "content_filter", "style": "azure"}, "style"),
        ({"kind": "rate_limited", "header_style": "loud"}, "header_style"),
        ({"kind": "rate_limited", "retry_after_s": "soon"}, "retry_after_s"),
        ({"kind": "auth_error", "status": 402}, "status"),
        ({"kind": "moderation_blocked", "count": 0}, "count"),
        ({"kind": "moderation_blocked", "count": 1.5}, "count"),
        ({"kind": "moderation_blocked", "match": []}, "match"),
        ({"kind": "moderation_blocked", "match": {"region": "x"}}, "match.region"),
        ({"kind": "moderation_blocked", "match": {"route": "aws"}}, "match.route"),
        ({"kind": "moderation_blocked", "match": {"endpoint": "x"}}, "match.endpoint"),
        ({"kind": "moderation_blocked", "match": {"stream": "yes"}}, "match.stream"),
        ({"kind": "moderation_blocked", "match": {"size": "big"}}, "match.size"),
        ({"kind": "moderation_blocked", "match": {"size": "16x16\n"}}, "match.size"),
        ({"kind": "moderation_blocked", "match": {"deployment": 3}}, "match.deployment"),
    ],
)
def test_a_bad_field_is_named_in_the_error(obj, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        parse_fault(obj)


def test_a_fault_that_is_not_an_object_is_refused():
    with pytest.raises(ValueError, match="JSON object"):
        parse_fault([])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("match", "fits"),
    [
        (FaultMatch(), True),
        (FaultMatch(route="azure"), True),
        (FaultMatch(route="openai"), False),
        (FaultMatch(deployment="other"), False),
        (FaultMatch(endpoint="generations", stream=True, size="2048x2048"), True),
        (FaultMatch(stream=False), False),
        (FaultMatch(size="1024x1024"), False),
    ],
)
def test_match_fits_only_requests_with_every_named_value(match, fits):
    assert match.fits(CTX) is fits


def test_queue_hands_out_the_first_matching_fault_and_counts_it_down():
    queue = FaultQueue()
    openai_only = parse_fault({"kind": "auth_error", "match": {"route": "openai"}})
    twice = parse_fault({"kind": "http_error", "status": 500, "count": 2})
    queue.add(openai_only)
    queue.add(twice)
    assert queue.take(CTX) == twice
    assert [f["count"] for f in queue.pending()] == [1, 1]
    assert queue.take(CTX) == twice
    assert queue.take(CTX) is None
    assert queue.pending() == [openai_only.to_dict()]
    openai_ctx = RequestContext("openai", None, "generations", False, "1024x1024")
    assert queue.take(openai_ctx) == openai_only
    assert queue.pending() == []


def test_pending_lists_json_objects_and_clear_empties_the_queue():
    queue = FaultQueue()
    queue.add(parse_fault({"kind": "rate_limited", "retry_after_s": 3, "count": 5}))
    assert queue.pending() == [
        {"kind": "rate_limited", "count": 5, "retry_after_s": 3.0, "header_style": "openai"}
    ]
    queue.clear()
    assert queue.pending() == []
    assert queue.take(CTX) is None


def test_queue_gives_each_count_to_exactly_one_taker_across_threads():
    queue = FaultQueue()
    queue.add(FaultSpec(kind="insufficient_quota", count=100))
    with ThreadPoolExecutor(max_workers=8) as pool:
        taken = list(pool.map(lambda _: queue.take(CTX), range(150)))
    assert sum(spec is not None for spec in taken) == 100
    assert queue.pending() == []


@pytest.mark.parametrize(
    ("spec", "stage"),
    [
        ({"kind": "http_error", "status": 500}, "answer"),
        ({"kind": "rate_limited"}, "answer"),
        ({"kind": "auth_error"}, "answer"),
        ({"kind": "slow_first_byte", "delay_s": 1}, "first_byte"),
        ({"kind": "mid_stream_error"}, "stream"),
        ({"kind": "stream_without_completed"}, "stream"),
        ({"kind": "connection_reset"}, "stream"),
    ],
)
def test_each_kind_knows_where_it_acts(spec, stage):
    assert parse_fault(spec).stage == stage
