"""One route's shared model: the governor (rules.pacing) and what it learned (rules.route_stats),
kept as the state of one durable entity per route. Pure rules: every operation takes the state
and the moment and gives the new state (and an answer); orchestrators.route_entity does the I/O.

Operations:
- ``on_admit``: an attempt asks to be sent (Admission: send now, or its place and expected start);
- ``on_report``: an attempt ended: its slot is freed, its real send time counted, its clocks and
  outcome learned, a 429 cools the whole route down, its headers tighten the pace;
- ``on_leave``: a job left the queue (cancelled while waiting);
- ``health``: the figures of ``GET /api/routes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rules import pacing
from rules.outcome import FailureKind
from rules.pacing import Pace, PacerState
from rules.rate_headers import hint_from_headers
from rules.records import as_object, checked_version, optional_seconds, reading
from rules.route_records import (
    Admission,
    AdmitRequest,
    AttemptReport,
    Priority,
    RateLimitHint,
    RouteSummary,
)
from rules.route_stats import (
    ClassStats,
    expectation,
    learn,
    percentile,
    recent_unsent,
    unsent_after,
)

STATE_VERSION = 1
RATE_LIMITED = "rate_limited"
ADMISSION_EXPIRED = FailureKind.ADMISSION_EXPIRED.value
SLOT_TAKEN = FailureKind.SLOT_TAKEN.value


@dataclass(frozen=True)
class RouteState:
    """The route entity's state."""

    pacer: PacerState = field(default_factory=PacerState)
    classes: Mapping[str, ClassStats] = field(default_factory=dict)
    last_report_at: float | None = None
    # Batches cancelled (batch id -> when): their items are refused, never sent.
    cancelled_batches: Mapping[str, float] = field(default_factory=dict)
    # The route's recent failures before a send (rules.route_stats.unsent_after): when.
    unsent: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "pacer": self.pacer.to_json(),
            "classes": {name: stats.to_json() for name, stats in sorted(self.classes.items())},
            "last_report_at": self.last_report_at,
            "cancelled_batches": dict(self.cancelled_batches),
            # A field a reader of the same version without it ignores (nothing else changes).
            "unsent": [round(at, 3) for at in self.unsent],
        }

    @classmethod
    @reading("route state")
    def from_json(cls, value: object) -> RouteState:
        """None or an empty value: a route no attempt has asked about yet."""
        if value is None or value == "":
            return cls()
        data = as_object(value, "route state")
        checked_version(data, "route state", STATE_VERSION)
        return cls(
            pacer=PacerState.from_json(data.get("pacer") or {"sends": []}),
            classes={
                name: ClassStats.from_json(stats)
                for name, stats in (data.get("classes") or {}).items()
            },
            last_report_at=optional_seconds(data.get("last_report_at")),
            cancelled_batches={
                str(batch): float(at) for batch, at in (data.get("cancelled_batches") or {}).items()
            },
            unsent=tuple(float(at) for at in data.get("unsent") or ()),
        )


def on_admit(
    state: RouteState, pace: Pace, request: AdmitRequest, now: float
) -> tuple[RouteState, Admission]:
    expected = expectation(state.classes.get(request.shape), request.calibrated)
    if request.batch_id is not None and request.batch_id in state.cancelled_batches:
        refused = Admission(
            admitted=False,
            position=0,
            start_at=now,
            ask_again_at=None,
            reason="its batch was cancelled",
            expected=expected,
            cancelled=True,
        )
        return on_leave(state, request.job_id), refused
    pacer, answer = pacing.admit(state.pacer, pace, request, now, expected_s=expected.total_s)
    return replace(state, pacer=pacer), replace(answer, expected=expected)


# How long a cancelled batch is remembered: longer than any of its items can still ask.
CANCELLED_BATCH_MEMORY_S = 7 * 86_400.0


def on_cancel_batch(state: RouteState, batch_id: str, now: float) -> RouteState:
    """The batch is cancelled: its queued items leave the queue now, and any item that asks
    later is refused (``Admission.cancelled``)."""
    remembered = {
        batch: at
        for batch, at in state.cancelled_batches.items()
        if now - at < CANCELLED_BATCH_MEMORY_S
    }
    remembered[batch_id] = now
    queue = tuple(w for w in state.pacer.queue if w.batch_id != batch_id)
    return replace(state, pacer=replace(state.pacer, queue=queue), cancelled_batches=remembered)


def on_report(state: RouteState, pace: Pace, report: AttemptReport, now: float) -> RouteState:
    pacer = state.pacer
    if report.sent_at is None:
        # Where its slot had been given from or to another attempt, that one's now.
        pacer = pacing.not_sent(
            pacer, report.job_id, report.attempt, slot_taken=report.failure_kind == SLOT_TAKEN
        )
    pacer = pacing.release(pacer, report.job_id, report.attempt)
    if report.sent_at is not None:
        pacer = pacing.sent_at(pacer, report.job_id, report.attempt, report.sent_at)
    elif report.failure_kind == ADMISSION_EXPIRED:
        # Not sent, and the same attempt asks again: its send is given back.
        pacer = pacing.unsent(pacer, report.job_id, report.attempt)
    if report.failure_kind == RATE_LIMITED:
        ended = report.ended_at or now
        wait = cool_down_s(pace, report.retry_after_s, pacer.hint)
        pacer = pacing.cool_down(
            pacer, ended + wait, f"the route answered 429: every send waits {wait:.1f}s"
        )
    if report.rate_limit and report.headers_at is not None:
        hint = hint_from_headers(report.rate_limit, report.headers_at, window_s=pace.window_s)
        if hint is not None:
            pacer = pacing.with_hint(pacer, hint, pace, counted_at=report.sent_at)
    classes = dict(state.classes)
    classes[report.shape] = learn(classes.get(report.shape), report)
    return replace(
        state,
        pacer=pacing.tidy(pacer, pace, now),
        classes=classes,
        last_report_at=now,
        unsent=unsent_after(state.unsent, report, now),
    )


def cool_down_s(
    pace: Pace, retry_after_s: float | None, hint: RateLimitHint | None = None
) -> float:
    """How long a 429 stops every send of the route: the wait it named, else a spacing and at
    least ``pacing.UNNAMED_COOL_DOWN_S`` route seconds."""
    if retry_after_s is not None:
        return retry_after_s
    spacing = pacing.limits(pace, hint).spacing_s or 0.0
    return max(spacing, pace.window_s * pacing.UNNAMED_COOL_DOWN_S / 60.0)


def on_leave(state: RouteState, job_id: str) -> RouteState:
    return replace(state, pacer=pacing.release(state.pacer, job_id))


def summary(state: RouteState, now: float) -> RouteSummary:
    """The route's health in brief (rules.failover): recent outcomes over every shape class,
    and its recent failures before a send, each a failure (a route that keeps refusing
    connections is unhealthy, though no request of it was sent)."""
    outcomes = [o for stats in state.classes.values() for o in stats.outcomes]
    unsent = recent_unsent(state.unsent, now)
    total = len(outcomes) + unsent
    rate = outcomes.count("ok") / total if total else None
    return RouteSummary(
        recent_success_rate=rate,
        cooling_down=state.pacer.cool_until > now,
        unsent_failures=unsent,
    )


def queue_position(state: RouteState, pace: Pace, job_id: str, now: float) -> int | None:
    """The job's place in the route's queue now (1 = next), None when it is not queued."""
    pacer = pacing.tidy(state.pacer, pace, now)
    order = [waiter.job_id for waiter in pacing.ordered(pacer.queue)]
    return order.index(job_id) + 1 if job_id in order else None


# --- health -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p95: float

    def to_json(self) -> dict[str, float]:
        return {"p50": round(self.p50, 3), "p95": round(self.p95, 3)}


@dataclass(frozen=True)
class ClassHealth:
    """One shape class of a route: how its sent attempts went, and its clocks in seconds."""

    shape: str
    sent: int
    saved: int
    success_rate: float | None
    errors: Mapping[str, int]
    recent_success_rate: float | None
    first_byte_s: Percentiles | None
    first_partial_s: Percentiles | None
    total_s: Percentiles | None
    samples: int

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "sent": self.sent,
            "saved": self.saved,
            "successRate": self.success_rate,
            "recentSuccessRate": self.recent_success_rate,
            "errors": dict(self.errors),
            "firstByteS": self.first_byte_s.to_json() if self.first_byte_s else None,
            "firstPartialImageS": self.first_partial_s.to_json() if self.first_partial_s else None,
            "totalS": self.total_s.to_json() if self.total_s else None,
            "samples": self.samples,
        }


@dataclass(frozen=True)
class RouteHealth:
    """The figures ``GET /api/routes`` shows for one route."""

    route: str
    sent: int
    saved: int
    success_rate: float | None
    errors: Mapping[str, int]
    limits: pacing.Limits
    sends_last_window: int
    next_send_at: float | None
    cool_down_until: float | None
    cool_down_reason: str | None
    queued: Mapping[str, int]
    running: int
    expired_slots: int
    classes: tuple[ClassHealth, ...]
    slots_taken: int = 0

    def to_json(self, iso: Any) -> dict[str, Any]:
        """camelCase, times through ``iso`` (epoch s -> ISO 8601 text)."""
        return {
            "route": self.route,
            "sent": self.sent,
            "saved": self.saved,
            "successRate": self.success_rate,
            "errors": dict(self.errors),
            "pace": {
                "requestsPerMinute": self.limits.requests_per_minute,
                "imagesPerMinute": self.limits.images_per_minute,
                "concurrency": self.limits.concurrency,
                "burst": self.limits.burst,
                "spacingS": None
                if self.limits.spacing_s is None
                else round(self.limits.spacing_s, 3),
                "sendsLastWindow": self.sends_last_window,
                "nextSendAt": None if self.next_send_at is None else iso(self.next_send_at),
                "coolDownUntil": (
                    None if self.cool_down_until is None else iso(self.cool_down_until)
                ),
                "coolDownReason": self.cool_down_reason,
            },
            "queued": dict(self.queued),
            "running": self.running,
            "expiredSlots": self.expired_slots,
            "slotsTaken": self.slots_taken,
            "shapes": [shape.to_json() for shape in self.classes],
        }


def _rate(saved: int, sent: int) -> float | None:
    return round(saved / sent, 4) if sent else None


def _percentiles(values: tuple[float, ...]) -> Percentiles | None:
    if not values:
        return None
    return Percentiles(percentile(values, 0.5), percentile(values, 0.95))


def health(name: str, state: RouteState, pace: Pace, now: float) -> RouteHealth:
    pacer = pacing.tidy(state.pacer, pace, now)
    current = pacing.limits(pace, pacer.hint)
    in_window = [s for s in pacer.sends if s.at > now - pace.window_s]
    probe = _probe(now)
    next_at = None
    if pace.limited or pacer.hint is not None:
        times = pacing.schedule(replace(pacer, queue=(*pacer.queue, probe)), pace, now)
        next_at = times[probe.job_id]
    classes = tuple(
        ClassHealth(
            shape=shape,
            sent=stats.sent,
            saved=stats.saved,
            success_rate=_rate(stats.saved, stats.sent),
            recent_success_rate=_rate(stats.outcomes.count("ok"), len(stats.outcomes)),
            errors=dict(sorted(stats.failures.items())),
            first_byte_s=_percentiles(stats.first_byte),
            first_partial_s=_percentiles(stats.first_partial),
            total_s=_percentiles(stats.total),
            samples=len(stats.total),
        )
        for shape, stats in sorted(state.classes.items())
    )
    errors: dict[str, int] = {}
    for stats in state.classes.values():
        for kind, count in stats.failures.items():
            errors[kind] = errors.get(kind, 0) + count
    sent = sum(stats.sent for stats in state.classes.values())
    saved = sum(stats.saved for stats in state.classes.values())
    queued = {priority.value: 0 for priority in Priority}
    for waiter in pacer.queue:
        queued[waiter.priority.value] += 1
    return RouteHealth(
        route=name,
        sent=sent,
        saved=saved,
        success_rate=_rate(saved, sent),
        errors=dict(sorted(errors.items())),
        limits=current,
        sends_last_window=len(in_window),
        next_send_at=next_at,
        cool_down_until=pacer.cool_until if pacer.cool_until > now else None,
        cool_down_reason=pacer.cool_reason if pacer.cool_until > now else None,
        queued=queued,
        running=len(pacer.slots),
        expired_slots=pacer.expired_slots,
        classes=classes,
        slots_taken=pacer.taken,
    )


def _probe(now: float) -> pacing.Waiter:
    """A batch attempt asking now, placed last: when would the route admit one more?"""
    return pacing.Waiter(
        job_id="\x00probe",
        attempt=0,
        priority=Priority.BATCH,
        images=1,
        queued_since=now + 1e9,
        back_at=now,
        expected_s=0.0,
    )
