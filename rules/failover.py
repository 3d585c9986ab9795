"""Failover: when a job's next attempt may move to another route. Pure rules.

Only a failure that came before the request was sent may move a job: nothing was generated or
billed, so the other route starts from nothing. After a send the first route may still be
generating (and billing) the image, so the job never moves (a second route's generation would be
a second billable image the policy did not choose). A route names its partner in
``IMAGE_ROUTE_<R>_FAILOVER_TO``; a job may refuse with ``"failover": false``. The job moves only
when the partner is healthier (``healthier``) and takes the request as it is (the partner must
accept its output format).
"""

from __future__ import annotations

from dataclasses import replace

from rules.job_records import FailoverDecided, JobDecided, JobInput, RouteDecided
from rules.models import rules_for
from rules.outcome import Failure, FailureKind
from rules.request import ImageJobRequest
from rules.route_records import RouteSummary
from rules.send_plan import PlanBasis, plans
from rules.settings import AppSettings

# Failures that say nothing about the route's health: the caller's, or our own scheduling.
NOT_THE_ROUTES = frozenset(
    {FailureKind.CANCELLED, FailureKind.ADMISSION_EXPIRED, FailureKind.SLOT_TAKEN}
)


def route_decided(name: str, settings: AppSettings) -> RouteDecided:
    """The route's figures a job decides by (SettingsInvalid: no such route)."""
    pace = settings.pace(name)
    basis = PlanBasis.of(name, settings)
    return RouteDecided(
        name=name,
        model=basis.model,
        spacing_s=pace.window_s / (pace.requests_per_minute or 60),
        time_scale=basis.time_scale,
        gateway_idle_timeout_s=basis.gateway_idle_timeout_s,
        gateway_idle_non_streamed=basis.gateway_idle_non_streamed,
        read_idle_s=basis.read_idle_s,
        request_s=basis.request_s,
        silent_stream_fix=basis.silent_stream_fix,
    )


def decided_for(request: ImageJobRequest, failover: bool, settings: AppSettings) -> JobDecided:
    """What a job of ``request`` decides by, from the settings when it starts: its route, and
    its failover partner with the job's plans there (None: no partner that takes it as it is,
    or the job refused failover)."""
    partner = _partner(request, failover, settings)
    moved_to = None
    if partner is not None:
        planned = plans(replace(request, route=partner), settings)
        moved_to = FailoverDecided(
            route=route_decided(partner, settings),
            send=planned.first,
            send_after_gateway_kill=planned.after_gateway_kill,
            send_after_read_idle=planned.after_read_idle,
        )
    return JobDecided(route=route_decided(request.route, settings), failover=moved_to)


def decided_target(job: JobInput, failure: Failure, decided: JobDecided) -> str | None:
    """As ``failover_target``, from the job's frozen decisions (never the settings of now)."""
    if failure.sent or failure.kind in NOT_THE_ROUTES or not job.failover:
        return None
    return decided.failover.route.name if decided.failover is not None else None


def moved_decided(job: JobInput, decided: JobDecided) -> JobInput:
    """As ``moved``, from the job's frozen decisions: the job at its partner, planned as it was
    planned there when it started. A moved job moves no further."""
    partner = decided.failover
    assert partner is not None, "moved_decided without a partner"
    return replace(
        job,
        request=replace(job.request, route=partner.route.name),
        send=partner.send,
        send_after_gateway_kill=partner.send_after_gateway_kill,
        send_after_read_idle=partner.send_after_read_idle,
        decided=JobDecided(route=partner.route, failover=None),
    )


def _partner(request: ImageJobRequest, failover: bool, settings: AppSettings) -> str | None:
    if not failover:
        return None
    route = settings.routes.get(request.route)
    target = route.failover_to if route is not None else None
    if target is None or target not in settings.routes:
        return None
    other = settings.route(target)
    if request.output_format not in rules_for(other.model).formats_for(other.owner):
        return None
    return target


def failover_target(job: JobInput, failure: Failure, settings: AppSettings) -> str | None:
    """The route the job may move to after ``failure``, or None (the settings of now: a job
    whose input has no frozen decisions, rules.job_records.JobDecided)."""
    if failure.sent or failure.kind in NOT_THE_ROUTES or not job.failover:
        return None
    return _partner(job.request, job.failover, settings)


def healthier(other: RouteSummary, current: RouteSummary) -> bool:
    """Whether ``other`` is the better bet now: not cooling down after a 429, and a recent
    success rate at least the current route's (a route with no record yet counts as healthy).
    The rates count each route's recent failures before a send as failures
    (rules.route_model.summary): the failures that allow a failover are those."""
    if other.cooling_down:
        return False
    if other.recent_success_rate is None:
        return True
    if current.recent_success_rate is None:
        return False
    return other.recent_success_rate >= current.recent_success_rate


def moved(job: JobInput, route: str, settings: AppSettings) -> JobInput:
    """The job as it goes on at ``route``: the request names it, the send is planned for it."""
    request = replace(job.request, route=route)
    planned = plans(request, settings)
    return replace(
        job,
        request=request,
        send=planned.first,
        send_after_gateway_kill=planned.after_gateway_kill,
        send_after_read_idle=planned.after_read_idle,
    )
