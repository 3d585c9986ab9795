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

from rules.job_records import JobInput
from rules.models import rules_for
from rules.outcome import Failure, FailureKind
from rules.route_records import RouteSummary
from rules.send_plan import plans
from rules.settings import AppSettings

# Failures that say nothing about the route's health: the caller's, or our own scheduling.
NOT_THE_ROUTES = frozenset({FailureKind.CANCELLED, FailureKind.ADMISSION_EXPIRED})


def failover_target(job: JobInput, failure: Failure, settings: AppSettings) -> str | None:
    """The route the job may move to after ``failure``, or None."""
    if failure.sent or failure.kind in NOT_THE_ROUTES or not job.failover:
        return None
    route = settings.routes.get(job.request.route)
    target = route.failover_to if route is not None else None
    if target is None or target not in settings.routes:
        return None
    other = settings.route(target)
    if job.request.output_format not in rules_for(other.model).formats_for(other.owner):
        return None
    return target


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
