"""Failover: only a failure before the send moves a job, only to a healthier partner that takes
the request as it is, and the moved job is planned for its new route."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rules.errors import RequestInvalid, SettingsInvalid
from rules.failover import failover_target, healthier, moved
from rules.job_records import JobInput
from rules.outcome import Failure, FailureKind, Layer
from rules.request import parse_failover, parse_job_request
from rules.route_records import RouteSummary
from rules.send_plan import plans
from rules.settings import AppSettings

from .conftest import ENV

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
