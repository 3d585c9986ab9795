"""GET /api/routes, called with the fake durable client: each route's health from its entity's
state (the JSON's shape and figures), a route no attempt asked about yet, and a 503 when the
state cannot be read."""

from __future__ import annotations

from typing import Any

import pytest

from http_api import handlers
from orchestrators.route_entity import ROUTE_ENTITY
from rules.route_model import RouteState, on_admit, on_report
from rules.route_records import AdmitRequest, AttemptReport, Expectation, Priority
from rules.timing import epoch_iso, iso_utc

from .test_http_handlers import NOW, World, assert_envelope, request

URL = "http://127.0.0.1:7071/api/routes"
SHAPE = "gpt-image-2/1mp/low/png/stream-1"
T = NOW.timestamp()

ROUTE_KEYS = {
    "route",
    "sent",
    "saved",
    "successRate",
    "errors",
    "pace",
    "queued",
    "running",
    "expiredSlots",
    "slotsTaken",
    "shapes",
    "owner",
    "model",
    "failoverTo",
    "default",
    "outputFormats",
}
PACE_KEYS = {
    "requestsPerMinute",
    "imagesPerMinute",
    "concurrency",
    "burst",
    "spacingS",
    "sendsLastWindow",
    "nextSendAt",
    "coolDownUntil",
    "coolDownReason",
}
SHAPE_KEYS = {
    "shape",
    "sent",
    "saved",
    "successRate",
    "recentSuccessRate",
    "errors",
    "firstByteS",
    "firstPartialImageS",
    "totalS",
    "samples",
}


def entity_key(route: str) -> str:
    return f"@{ROUTE_ENTITY}@{route}"


def report(job_id: str, *, failure: str | None = None, **fields: Any) -> AttemptReport:
    values: dict[str, Any] = {"sent_at": T - 60, "ended_at": T - 30}
    values.update(fields)
    return AttemptReport(job_id=job_id, attempt=1, shape=SHAPE, failure_kind=failure, **values)


def busy_azure(world: World) -> RouteState:
    """Two saved attempts (20 s and 24 s), a mid-stream server error, a 429 a second ago that
    asked for 30 s, and a batch job queued behind its cool-down."""
    pace = world.settings.pace("azure")
    state = RouteState()
    for item in (
        report("img-a", total_s=20.0, first_byte_s=1.0, first_partial_s=4.0),
        report("img-b", total_s=24.0, first_byte_s=2.0, first_partial_s=5.0),
        report("img-c", failure="server_error"),
        report("img-d", failure="rate_limited", retry_after_s=30.0, ended_at=T - 1),
    ):
        state = on_report(state, pace, item, T - 1)
    guess = Expectation(None, None, total_s=22.0, early_s=13.0, late_s=26.0, samples=0)
    ask = AdmitRequest("img-e", 1, Priority.BATCH, 1, SHAPE, guess, queued_since=T)
    state, admission = on_admit(state, pace, ask, T)
    assert not admission.admitted
    return state


def routes(world: World) -> tuple[int, dict[str, Any], Any]:
    return world.call(handlers.list_routes, request("GET", URL))


def test_each_route_shows_its_health_from_its_entity():
    world = World(IMAGE_ROUTE_AZURE_REQUESTS_PER_MINUTE="10")
    world.client.entities[entity_key("azure")] = busy_azure(world).to_json()

    status, body, _ = routes(world)

    assert status == 200
    assert set(body) == {"asOf", "routes"}
    assert body["asOf"] == iso_utc(NOW)
    assert [route["route"] for route in body["routes"]] == ["azure", "openai"]
    azure, openai = body["routes"]
    assert set(azure) == ROUTE_KEYS
    assert (azure["owner"], azure["model"], azure["failoverTo"]) == ("azure", "gpt-image-2", None)
    # What each route takes as output_format, and which one a request naming none takes: the
    # web page offers only the default route's formats (Azure's take no webp).
    assert azure["outputFormats"] == ["jpeg", "png"]
    assert openai["outputFormats"] == ["jpeg", "png", "webp"]
    assert [r["route"] for r in body["routes"] if r["default"]] == [world.settings.default_route]
    assert (azure["sent"], azure["saved"], azure["successRate"]) == (4, 2, 0.5)
    assert azure["errors"] == {"rate_limited": 1, "server_error": 1}
    assert azure["queued"] == {"interactive": 0, "batch": 1}
    assert (azure["running"], azure["expiredSlots"]) == (0, 0)
    pace = azure["pace"]
    assert set(pace) == PACE_KEYS
    assert pace["requestsPerMinute"] == 10
    assert (pace["imagesPerMinute"], pace["concurrency"], pace["burst"]) == (None, None, 1)
    assert pace["spacingS"] == pytest.approx(6.12)
    # The 429 a second ago asked for 30 s: the queued job goes when it ends, one more a
    # spacing later.
    assert pace["coolDownUntil"] == epoch_iso(T + 29)
    assert "429" in pace["coolDownReason"]
    assert pace["nextSendAt"] == epoch_iso(T + 29 + 6.12)
    [shape] = azure["shapes"]
    assert set(shape) == SHAPE_KEYS
    assert shape["shape"] == SHAPE
    assert (shape["sent"], shape["saved"], shape["samples"]) == (4, 2, 2)
    assert shape["successRate"] == shape["recentSuccessRate"] == 0.5
    assert shape["errors"] == {"rate_limited": 1, "server_error": 1}
    assert shape["totalS"] == {"p50": 20.0, "p95": 24.0}
    assert shape["firstByteS"] == {"p50": 1.0, "p95": 2.0}
    assert shape["firstPartialImageS"] == {"p50": 4.0, "p95": 5.0}

    # No attempt asked about openai yet: its entity does not exist, and its figures are empty.
    assert set(openai) == ROUTE_KEYS
    assert (openai["sent"], openai["saved"], openai["successRate"]) == (0, 0, None)
    assert openai["errors"] == {}
    assert openai["shapes"] == []
    assert openai["queued"] == {"interactive": 0, "batch": 0}
    assert openai["pace"]["requestsPerMinute"] is None
    assert openai["pace"]["spacingS"] is None
    assert openai["pace"]["nextSendAt"] is None
    assert openai["pace"]["coolDownUntil"] is None
    # One state read per route, nothing else.
    assert world.client.calls == [
        ("read_entity_state", entity_key("azure")),
        ("read_entity_state", entity_key("openai")),
    ]


@pytest.mark.parametrize("failure", ["error_answer", "down"])
def test_a_state_read_that_fails_is_a_503_with_retry_after(failure: str):
    world = World()
    world.client.entities[entity_key("azure")] = busy_azure(world).to_json()
    if failure == "error_answer":
        world.client.entity_errors = True
    else:
        world.client.down = True

    status, body, headers = routes(world)

    assert status == 503
    assert_envelope(body, "store_error", "service")
    assert int(headers["Retry-After"]) >= 1


def test_a_state_a_newer_deployment_wrote_is_a_503_not_a_guess():
    world = World()
    world.client.entities[entity_key("azure")] = {**RouteState().to_json(), "v": 99}

    status, body, headers = routes(world)

    assert status == 503
    assert_envelope(body, "record_unreadable", "service")
    assert int(headers["Retry-After"]) >= 1
