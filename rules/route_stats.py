"""What a route has learned per request shape class: rolling clocks and outcomes. Pure rules.

A shape class groups the requests that take about as long: the model, the size class (by pixels),
the quality, the output format, streamed or not, and the partial images. For each class the
route keeps the last ``SAMPLES`` saved attempts' clocks (first byte, first partial image, stored
image; route seconds from the send) and the last ``OUTCOMES`` sent attempts' outcomes (``ok`` or
the failure kind), plus running totals. Until ``MIN_SAMPLES`` attempts of a class are saved,
expectations come from the calibration (rules.models: errs long on purpose) instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rules.models import rules_for
from rules.outcome import Failure, FailureKind
from rules.request import ImageJobRequest
from rules.route_records import AttemptReport, Expectation
from rules.settings import AppSettings

SAMPLES = 50
OUTCOMES = 100
MIN_SAMPLES = 5
# Where the calibration's guess is all there is: how early and how late an attempt may end, as
# shares of the guess (the calibration errs long, so early is the wider side).
CALIBRATED_EARLY = 0.6
CALIBRATED_LATE = 1.2
# Size classes by pixels: up to about 1 MP (1024x1024), 2 MP (1536x1024), 4.2 MP (2048x2048),
# above (3840x2160).
SIZE_CLASSES = ((1_100_000, "1mp"), (2_400_000, "2mp"), (4_300_000, "4mp"))


def size_class(size: str) -> str:
    if size == "auto":
        return "auto"
    width, height = (int(edge) for edge in size.split("x"))
    pixels = width * height
    return next((name for limit, name in SIZE_CLASSES if pixels <= limit), "8mp")


def shape_class(
    *,
    model: str,
    size: str,
    quality: str,
    output_format: str,
    stream: bool,
    partial_images: int,
    edit: bool = False,
    images: int = 1,
) -> str:
    """``gpt-image-2/1mp/low/png/stream-1``: the class an attempt's clocks are learned under;
    ``/n4`` after it for four images a request (more images take longer, so they are learned
    apart), ``/edit`` for an edit."""
    sent = f"stream-{partial_images}" if stream else "plain"
    count = f"/n{images}" if images > 1 else ""
    kind = "/edit" if edit else ""
    return f"{model}/{size_class(size)}/{quality}/{output_format}/{sent}{count}{kind}"


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(share * (len(ordered) - 1))))
    return ordered[rank]


@dataclass(frozen=True)
class ClassStats:
    """One shape class's rolling samples (newest last) and running totals."""

    first_byte: tuple[float, ...] = ()
    first_partial: tuple[float, ...] = ()
    total: tuple[float, ...] = ()
    outcomes: tuple[str, ...] = ()
    sent: int = 0
    saved: int = 0
    failures: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "first_byte": [round(v, 3) for v in self.first_byte],
            "first_partial": [round(v, 3) for v in self.first_partial],
            "total": [round(v, 3) for v in self.total],
            "outcomes": list(self.outcomes),
            "sent": self.sent,
            "saved": self.saved,
            "failures": dict(self.failures),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClassStats:
        return cls(
            first_byte=tuple(float(v) for v in data.get("first_byte", ())),
            first_partial=tuple(float(v) for v in data.get("first_partial", ())),
            total=tuple(float(v) for v in data.get("total", ())),
            outcomes=tuple(str(v) for v in data.get("outcomes", ())),
            sent=int(data.get("sent", 0)),
            saved=int(data.get("saved", 0)),
            failures={str(k): int(v) for k, v in (data.get("failures") or {}).items()},
        )


def _push(values: tuple[Any, ...], value: Any, keep: int) -> tuple[Any, ...]:
    return (*values, value)[-keep:]


def learn(stats: ClassStats | None, report: AttemptReport) -> ClassStats:
    """The class's statistics after ``report``. An attempt that was never sent teaches nothing
    about the route; a saved one adds its clocks; every sent one adds its outcome."""
    stats = stats or ClassStats()
    if report.sent_at is None:
        return stats
    outcome = report.failure_kind or "ok"
    stats = replace(
        stats,
        outcomes=_push(stats.outcomes, outcome, OUTCOMES),
        sent=stats.sent + 1,
    )
    if not report.ok:
        failures = dict(stats.failures)
        failures[outcome] = failures.get(outcome, 0) + 1
        return replace(stats, failures=failures)
    stats = replace(stats, saved=stats.saved + 1)
    if report.total_s is not None:
        stats = replace(stats, total=_push(stats.total, report.total_s, SAMPLES))
    if report.first_byte_s is not None:
        stats = replace(stats, first_byte=_push(stats.first_byte, report.first_byte_s, SAMPLES))
    if report.first_partial_s is not None:
        stats = replace(
            stats, first_partial=_push(stats.first_partial, report.first_partial_s, SAMPLES)
        )
    return stats


# A route's recent failures *before* a send (refused, DNS, a connect timeout, 401/403 before the
# send): nothing reached the route, so no shape class learns them, but a route that keeps
# refusing is not healthy (rules.failover reads them). Kept per route: the last ``UNSENT_KEEP``
# of them, counted for ``UNSENT_MEMORY_S`` seconds, forgotten once a sent attempt of the route is
# saved again. Our own failures (a worker that crashed, storage that failed before the send)
# say nothing of the route and are never counted.
UNSENT_KEEP = 20
UNSENT_MEMORY_S = 600.0
# The failure kinds in which a route refuses before the send (the connection refused or lost
# before it, DNS: connection_lost; a connect timeout: local_timeout with timeout "connect";
# the credentials refused).
ROUTE_REFUSALS = frozenset(
    {FailureKind.CONNECTION_LOST, FailureKind.AUTH_FAILED, FailureKind.PERMISSION_DENIED}
)
# Version 0 reports (rules.route_records.AttemptReport without ``refused``): every not-sent
# failure but these counted, as before.
UNSENT_NOT_THE_ROUTES = frozenset({"cancelled", "admission_expired"})


def refused_by_route(failure: Failure | None) -> bool:
    """Whether ``failure`` is the route refusing before the request was sent (what a report's
    ``refused`` says); never a failure of ours, nor one after the send."""
    if failure is None or failure.sent:
        return False
    if failure.kind is FailureKind.LOCAL_TIMEOUT:
        return failure.timeout == "connect"
    return failure.kind in ROUTE_REFUSALS


def unsent_after(unsent: tuple[float, ...], report: AttemptReport, now: float) -> tuple[float, ...]:
    """The route's recent not-sent failures (their moments, oldest first) after ``report``."""
    if report.sent_at is not None:
        return () if report.ok else unsent
    if report.refused is not None:  # the report says whether the route refused
        return _push(unsent, report.ended_at or now, UNSENT_KEEP) if report.refused else unsent
    if report.failure_kind is None or report.failure_kind in UNSENT_NOT_THE_ROUTES:
        return unsent
    return _push(unsent, report.ended_at or now, UNSENT_KEEP)


def recent_unsent(unsent: tuple[float, ...], now: float) -> int:
    """How many of the route's not-sent failures are recent enough to count."""
    return sum(1 for at in unsent if at > now - UNSENT_MEMORY_S)


def expectation(stats: ClassStats | None, calibrated: Expectation) -> Expectation:
    """What an attempt of the class is expected to take: learned once ``MIN_SAMPLES`` attempts
    were saved, else the calibration's guess (``calibrated``)."""
    if stats is None or len(stats.total) < MIN_SAMPLES:
        return calibrated
    return Expectation(
        first_byte_s=percentile(stats.first_byte, 0.5) if stats.first_byte else None,
        first_partial_s=percentile(stats.first_partial, 0.5) if stats.first_partial else None,
        total_s=percentile(stats.total, 0.5),
        early_s=percentile(stats.total, 0.1),
        late_s=percentile(stats.total, 0.9),
        samples=len(stats.total),
    )


def calibrated(total_s: float, *, first_partial_share: float | None) -> Expectation:
    """The calibration's guess for an attempt expected to take ``total_s`` (route seconds),
    its first partial image at ``first_partial_share`` of it (None: no partials)."""
    return Expectation(
        first_byte_s=None,
        first_partial_s=None if first_partial_share is None else total_s * first_partial_share,
        total_s=total_s,
        early_s=total_s * CALIBRATED_EARLY,
        late_s=total_s * CALIBRATED_LATE,
        samples=0,
    )


@dataclass(frozen=True)
class AttemptShape:
    """An attempt's shape class and the calibration's guess at its clocks."""

    name: str
    calibrated: Expectation


def attempt_shape(
    request: ImageJobRequest,
    *,
    stream: bool,
    partial_images: int,
    settings: AppSettings,
    first_partial_share: float,
) -> AttemptShape:
    """The shape class of ``request`` sent as planned, and the calibration's guess (route
    seconds: divided by the time scale) with its first partial at ``first_partial_share``."""
    return attempt_shape_by(
        request,
        model=settings.route(request.route).model,
        time_scale=settings.time_scale,
        stream=stream,
        partial_images=partial_images,
        first_partial_share=first_partial_share,
    )


def attempt_shape_by(
    request: ImageJobRequest,
    *,
    model: str,
    time_scale: float,
    stream: bool,
    partial_images: int,
    first_partial_share: float,
) -> AttemptShape:
    """As ``attempt_shape``, from the route's model and the time scale as given (a job's frozen
    decisions, rules.job_records.RouteDecided) instead of the settings."""
    total = request.expected_generation_s(rules_for(model)) / time_scale
    partials = partial_images if stream else 0
    name = shape_class(
        model=model,
        size=request.size,
        quality=request.quality,
        output_format=request.output_format,
        stream=stream,
        partial_images=partials,
        edit=request.is_edit,
        images=request.n,
    )
    share = first_partial_share if partials > 0 else None
    return AttemptShape(name, calibrated(total, first_partial_share=share))
