"""Failover: only a failure before the send moves a job, only to a healthier partner that takes
the request as it is, and the moved job is planned for its new route."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from rules import route_model
from rules.errors import RequestInvalid, SettingsInvalid
from rules.failover import decided_for, failover_target, healthier, moved
from rules.job_records import JobInput
from rules.outcome import Failure, FailureKind, Layer
from rules.pacing import Pace
from rules.records import RecordUnreadable
from rules.request import parse_failover, parse_job_request
from rules.route_model import RouteState
from rules.route_records import AttemptReport, RouteSummary
from rules.route_stats import UNSENT_MEMORY_S, refused_by_route
from rules.send_plan import PlanBasis, plans
from rules.settings import AppSettings

from .conftest import ENV
from .route_clock import SHAPE, saved

SETTINGS = AppSettings.from_env({**ENV, "IMAGE_ROUTE_AZURE_FAILOVER_TO": "openai"})


def job(**body: object) -> JobInput:
    request = parse_job_request({"prompt": "p", **body}, SETTINGS)
    planned = plans(request, SETTINGS)
    return JobInput(
        request=request,
        send=planned.first,
        policy=SETTINGS.retry,
        caller="c",
        fingerprint="f",
        created_at="2026-11-30T09:00:00.000Z",
    )


REFUSED = Failure(FailureKind.CONNECTION_LOST, Layer.NETWORK, "connection refused", sent=False)
AFTER_SEND = replace(REFUSED, sent=True)


def test_a_failure_before_the_send_may_move_the_job_to_the_partner():
    assert failover_target(job(), REFUSED, SETTINGS) == "openai"


@pytest.mark.parametrize(
    "failure",
    [
        AFTER_SEND,  # the first route may still be generating: never a second generation
        replace(REFUSED, kind=FailureKind.CANCELLED),
        replace(REFUSED, kind=FailureKind.ADMISSION_EXPIRED),
    ],
)
def test_a_sent_request_or_a_failure_of_ours_never_moves(failure):
    assert failover_target(job(), failure, SETTINGS) is None


def test_no_partner_or_a_job_that_refuses_stays():
    assert failover_target(job(), REFUSED, AppSettings.from_env(ENV)) is None
    assert failover_target(replace(job(), failover=False), REFUSED, SETTINGS) is None
    # The openai route names no partner.
    assert failover_target(job(route="openai"), REFUSED, SETTINGS) is None


def test_a_partner_that_cannot_take_the_request_as_it_is_is_not_used():
    settings = AppSettings.from_env(
        {**ENV, "IMAGE_ROUTE_OPENAI_FAILOVER_TO": "azure"}
    )  # Azure serves png and jpeg only
    webp = parse_job_request({"prompt": "p", "route": "openai", "output_format": "webp"}, settings)
    webp_job = replace(job(), request=webp)
    assert failover_target(webp_job, REFUSED, settings) is None


@pytest.mark.parametrize(
    ("other", "current", "expected"),
    [
        (RouteSummary(0.9, False), RouteSummary(0.5, False), True),
        (RouteSummary(0.5, False), RouteSummary(0.5, False), True),
        (RouteSummary(0.4, False), RouteSummary(0.5, False), False),
        (RouteSummary(1.0, True), RouteSummary(0.1, False), False),  # cooling down after a 429
        (RouteSummary(None, False), RouteSummary(1.0, False), True),  # no record yet: healthy
        (RouteSummary(0.9, False), RouteSummary(None, False), False),
    ],
)
def test_healthier(other, current, expected):
    assert healthier(other, current) is expected


def test_a_moved_job_names_its_new_route_and_is_planned_for_it():
    # 2K high without partials: behind Azure's 60 s gateway it needs one partial image; the
    # openai route has no gateway, so it goes as asked there.
    before = job(size="2048x2048", quality="high", partial_images=0)
    assert before.send.partial_images == 1
    after = moved(before, "openai", SETTINGS)
    assert after.request.route == "openai"
    assert after.request.prompt == before.request.prompt
    assert (after.send.stream, after.send.partial_images) == (True, 0)
    assert after.send_after_gateway_kill == plans(after.request, SETTINGS).after_gateway_kill


def test_a_partner_must_be_another_route_of_the_app():
    with pytest.raises(SettingsInvalid, match="IMAGE_ROUTE_AZURE_FAILOVER_TO"):
        AppSettings.from_env({**ENV, "IMAGE_ROUTE_AZURE_FAILOVER_TO": "elsewhere"})
    with pytest.raises(SettingsInvalid, match="another route"):
        AppSettings.from_env({**ENV, "IMAGE_ROUTE_AZURE_FAILOVER_TO": "azure"})


def test_the_job_field_is_a_boolean():
    assert parse_failover({}) is True
    assert parse_failover({"failover": False}) is False
    with pytest.raises(RequestInvalid) as raised:
        parse_failover({"failover": "no"})
    assert raised.value.field == "failover"


# --- the route's health as the failover rule reads it (rules.route_model.summary) ------------

PACE = Pace(requests_per_minute=60, window_s=60.0)


def reported(reports: list[AttemptReport], now: float) -> RouteState:
    """A route's state after ``reports``, kept as the entity keeps it (JSON) between them."""
    state = RouteState()
    for report in reports:
        state = RouteState.from_json(
            json.loads(json.dumps(route_model.on_report(state, PACE, report, now).to_json()))
        )
    return state


def refused(job_id: str, at: float, kind: str = "connection_lost") -> AttemptReport:
    """An attempt that failed before its send: nothing reached the route."""
    return AttemptReport(
        job_id=job_id, attempt=1, shape=SHAPE, failure_kind=kind, sent_at=None, ended_at=at
    )


def test_a_route_that_keeps_refusing_is_seen_unhealthy_and_the_job_fails_over():
    """The failures that allow a failover are never sent, so no shape class learns them: the
    route's summary counts them apart, and a partner that answers wins."""
    here = [saved(f"ok-{i}", float(i), 10.0) for i in range(20)]  # a good record, then:
    there = [saved(f"p-{i}", float(i), 10.0) for i in range(19)]
    there.append(replace(saved("p-bad", 19.0, 10.0), failure_kind="server_error"))
    partner = route_model.summary(reported(there, 100.0), 100.0)
    assert partner.recent_success_rate == 0.95

    current = route_model.summary(reported(here, 100.0), 100.0)
    assert not healthier(partner, current)  # a route with a better record keeps its jobs

    refusals = [refused(f"r-{i}", 100.0 + i) for i in range(3)]
    current = route_model.summary(reported(here + refusals, 110.0), 110.0)
    assert current.unsent_failures == 3
    assert current.recent_success_rate == pytest.approx(20 / 23)
    assert healthier(partner, current)  # it keeps refusing: the job moves
    # And the rule that lets it move: a failure before the send, to a partner that takes it.
    assert failover_target(job(route="azure"), REFUSED, SETTINGS) == "openai"


def test_a_route_that_refuses_before_it_ever_sent_is_not_a_route_without_a_record():
    current = route_model.summary(reported([refused("r-1", 5.0)], 6.0), 6.0)
    assert current.recent_success_rate == 0.0
    assert healthier(RouteSummary(None, False), current)
    assert healthier(RouteSummary(0.5, False), current)


def test_refusals_are_forgotten_once_the_route_saves_again_or_after_a_while():
    refusals = [refused(f"r-{i}", float(i)) for i in range(3)]
    state = reported(refusals, 3.0)
    assert route_model.summary(state, 3.0).unsent_failures == 3
    assert route_model.summary(state, 3.0 + UNSENT_MEMORY_S).unsent_failures == 0
    again = reported([*refusals, saved("ok", 4.0, 10.0)], 15.0)
    assert route_model.summary(again, 15.0) == RouteSummary(1.0, False, 0)


@pytest.mark.parametrize("kind", ["cancelled", "admission_expired"])
def test_a_not_sent_end_that_is_not_the_routes_is_not_counted(kind):
    state = reported([refused("r-1", 1.0, kind)], 2.0)
    assert route_model.summary(state, 2.0) == RouteSummary(None, False, 0)


def test_a_failure_after_the_send_never_fails_over_however_unhealthy_the_route():
    refusals = [refused(f"r-{i}", float(i)) for i in range(10)]
    current = route_model.summary(reported(refusals, 10.0), 10.0)
    assert healthier(RouteSummary(None, False), current)
    assert failover_target(job(route="azure"), AFTER_SEND, SETTINGS) is None


def test_the_summary_round_trips_and_an_older_one_reads_with_no_refusals():
    summary = RouteSummary(0.5, True, 4)
    assert RouteSummary.from_json(json.dumps(summary.to_json())) == summary
    older = {"recent_success_rate": 0.5, "cooling_down": False}
    assert RouteSummary.from_json(older) == RouteSummary(0.5, False, 0)


def failure(kind: FailureKind, *, sent: bool = False, timeout: str | None = None) -> Failure:
    return Failure(kind=kind, layer=Layer.NETWORK, message="m", sent=sent, timeout=timeout)


@pytest.mark.parametrize(
    ("said", "counted"),
    [
        (failure(FailureKind.CONNECTION_LOST), True),  # refused, lost before the send, DNS
        (failure(FailureKind.LOCAL_TIMEOUT, timeout="connect"), True),
        (failure(FailureKind.AUTH_FAILED), True),
        (failure(FailureKind.PERMISSION_DENIED), True),
        # Our own: an activity that raised (read as a possible send, no timings), the mark
        # before the send not stored, a worker crash before it, no free connection of ours.
        (failure(FailureKind.INTERNAL_ERROR, sent=True), False),
        (failure(FailureKind.INTERNAL_ERROR), False),
        (failure(FailureKind.STORAGE_FAILED), False),
        (failure(FailureKind.LOCAL_TIMEOUT, timeout="pool"), False),
        (failure(FailureKind.CANCELLED), False),
        (failure(FailureKind.ADMISSION_EXPIRED), False),
        (failure(FailureKind.CONNECTION_LOST, sent=True), False),  # after the send
        (None, False),
    ],
)
def test_only_the_route_refusing_before_the_send_counts_against_its_health(said, counted):
    """Our own failures never lower a route's health nor fail a job over to its partner: a
    report says whether the route refused (AttemptReport version 1), and only that counts."""
    assert refused_by_route(said) is counted
    kind = said.kind.value if said is not None else None
    report = replace(refused("r-1", 1.0, kind or "connection_lost"), refused=counted)
    report = AttemptReport.from_json(json.loads(json.dumps(report.to_json())))
    assert report.refused is counted
    expected = 1 if counted else 0
    assert route_model.summary(reported([report], 2.0), 2.0).unsent_failures == expected


def test_a_report_of_the_previous_version_counts_its_unsent_failures_as_before():
    """A version 0 report (no ``v``, no ``refused``) is read as it always was: every not-sent
    failure but a cancel or an expired admission counts."""
    older = refused("r-1", 1.0, "internal_error").to_json()
    assert "v" not in older
    assert "refused" not in older
    report = AttemptReport.from_json(older)
    assert report.refused is None
    assert route_model.summary(reported([report], 2.0), 2.0).unsent_failures == 1
    newer = replace(report, refused=False).to_json()
    assert newer["v"] == 1
    with pytest.raises(RecordUnreadable, match="newer"):
        AttemptReport.from_json({**newer, "v": 2})


def test_what_a_job_decides_by_holds_the_basis_of_its_send_plans_here_and_at_its_partner():
    """Frozen at the start (the starters write it): the job plans again on measured clocks
    from it, never from the settings of the moment (orchestrators.image_job)."""
    scaled = AppSettings.from_env(
        {
            **ENV,
            "IMAGE_ROUTE_AZURE_FAILOVER_TO": "openai",
            "IMAGE_TIME_SCALE": "10",
            "IMAGE_SILENT_STREAM_FIX": "non_streaming",
            "IMAGE_READ_IDLE_TIMEOUT_S": "300",
        }
    )
    request = parse_job_request({"prompt": "p", "route": "azure"}, scaled)
    decided = decided_for(request, True, scaled)
    assert decided.route.plan_basis == PlanBasis.of("azure", scaled)
    assert decided.route.plan_basis.gateway_idle_timeout_s == 6.0  # 60 s at 10x
    assert decided.route.plan_basis.read_idle_s == 30.0
    assert decided.route.plan_basis.silent_stream_fix == "non_streaming"
    assert decided.failover is not None
    assert decided.failover.route.plan_basis == PlanBasis.of("openai", scaled)
