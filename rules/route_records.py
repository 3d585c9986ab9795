"""The records that cross the route entity's boundary: an attempt asking to be sent, the answer,
the attempt's report afterwards, and the route's word on its limits. Converted to and from JSON
here only; times are seconds since the epoch (floats), durations seconds of the route's time.

    orchestrator ──AdmitRequest──▶ route entity ──Admission──▶ orchestrator
    orchestrator ──AttemptReport (signal)──▶ route entity
    status endpoint, GET /api/routes ◀── entity state (rules.route_model.RouteState)
    attempt that got a 429 ──CoolDown (Blob)──▶ every attempt of the route, before its send
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rules.records import (
    as_object,
    checked_version,
    optional_int,
    optional_seconds,
    optional_text,
    reading,
    required,
)


def _headers(value: Any) -> Mapping[str, str] | None:
    if not value:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"headers were expected, not {type(value).__name__}")
    return {str(name): str(text) for name, text in value.items()}


class Priority(StrEnum):
    """Who waits for the image: a person (interactive, the default) or nobody right now (batch).
    Interactive attempts are admitted ahead of every queued batch attempt."""

    INTERACTIVE = "interactive"
    BATCH = "batch"

    @property
    def rank(self) -> int:
        return 0 if self is Priority.INTERACTIVE else 1


@dataclass(frozen=True)
class RateLimitHint:
    """The route's own word on its limits, from an answer's headers (rules.rate_headers):
    at most ``remaining`` more sends after ``observed_at`` until ``until``; the limits it
    reported per minute (None: not said)."""

    observed_at: float
    until: float
    remaining: int | None
    limit_requests: int | None = None
    limit_images: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "observed_at": round(self.observed_at, 3),
            "until": round(self.until, 3),
            "remaining": self.remaining,
            "limit_requests": self.limit_requests,
            "limit_images": self.limit_images,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RateLimitHint:
        return cls(
            observed_at=float(data["observed_at"]),
            until=float(data["until"]),
            remaining=optional_int(data.get("remaining")),
            limit_requests=optional_int(data.get("limit_requests")),
            limit_images=optional_int(data.get("limit_images")),
        )


@dataclass(frozen=True)
class Expectation:
    """How long an attempt of one shape class is expected to take, in route seconds from its
    send: to the first byte, the first partial image (None: no partials) and the stored image
    (``total_s`` the median, ``early_s`` and ``late_s`` the 10th and 90th percentiles).
    ``samples`` is how many attempts it was learned from; 0: the calibration's guess."""

    first_byte_s: float | None
    first_partial_s: float | None
    total_s: float
    early_s: float
    late_s: float
    samples: int

    def to_json(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "first_byte_s": rounded(self.first_byte_s),
            "first_partial_s": rounded(self.first_partial_s),
            "total_s": rounded(self.total_s),
            "early_s": rounded(self.early_s),
            "late_s": rounded(self.late_s),
            "samples": self.samples,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Expectation:
        return cls(
            first_byte_s=optional_seconds(data.get("first_byte_s")),
            first_partial_s=optional_seconds(data.get("first_partial_s")),
            total_s=float(data["total_s"]),
            early_s=float(data["early_s"]),
            late_s=float(data["late_s"]),
            samples=int(data["samples"]),
        )


@dataclass(frozen=True)
class AdmitRequest:
    """One attempt asking to be sent. ``shape`` is its shape class (rules.route_stats), and
    ``calibrated`` the calibration's guess at its clocks, used until the route has learned the
    class. ``queued_since`` keeps its place across asks."""

    job_id: str
    attempt: int
    priority: Priority
    images: int
    shape: str
    calibrated: Expectation
    queued_since: float
    # The batch the job is an item of (a cancelled batch's items are refused).
    batch_id: str | None = None
    # Slots this attempt was given and lost to their holder's earlier claim (SlotClaim): after
    # one, it is given no other (rules.pacing.TAKE_AHEAD_S).
    lost_slots: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "priority": self.priority.value,
            "images": self.images,
            "shape": self.shape,
            "calibrated": self.calibrated.to_json(),
            "queued_since": round(self.queued_since, 3),
            "batch_id": self.batch_id,
            "lost_slots": self.lost_slots,
        }

    @classmethod
    @reading("admit request")
    def from_json(cls, value: object) -> AdmitRequest:
        data = as_object(value, "admit request")
        return cls(
            job_id=required(data, "job_id", "admit request"),
            attempt=int(required(data, "attempt", "admit request")),
            priority=Priority(data.get("priority", Priority.INTERACTIVE.value)),
            images=int(data.get("images", 1)),
            shape=required(data, "shape", "admit request"),
            calibrated=Expectation.from_json(required(data, "calibrated", "admit request")),
            queued_since=float(required(data, "queued_since", "admit request")),
            batch_id=optional_text(data.get("batch_id")),
            lost_slots=int(data.get("lost_slots") or 0),
        )


@dataclass(frozen=True)
class SlotClaim:
    """The admitted send's slot on the route, claimed in Blob by the one attempt that sends in
    it (storage.protocol.route_slot_name: created only if absent, so exactly one claim of a slot
    succeeds). A batch attempt's slot may be given to an interactive attempt until the batch
    attempt claims it, just before its send (``first`` False); the interactive attempt it was
    given to claims it as soon as it starts (``first`` True). Whoever finds the slot claimed by
    the other does not send and asks the governor again (FailureKind.SLOT_TAKEN). ``key`` names
    the slot: its first holder's job id and attempt and its send time in ms."""

    key: str
    first: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "first": self.first}

    @classmethod
    @reading("slot claim")
    def from_json(cls, value: object) -> SlotClaim:
        data = as_object(value, "slot claim")
        return cls(key=required(data, "key", "slot claim"), first=data.get("first") is True)


@dataclass(frozen=True)
class Admission:
    """The answer to an AdmitRequest. Admitted: send at ``start_at`` (at most a second ahead).
    Queued: ``position`` (1 = next), expected admission at ``start_at``, ask again at
    ``ask_again_at``, and why it waits. ``expected`` is what the route has learned of the
    attempt's shape class, for the ETA and the send plan. ``cancelled``: the attempt's batch was
    cancelled; it is not sent. ``claim``: the slot to claim before the send (None: a slot
    nobody else may be given)."""

    admitted: bool
    position: int
    start_at: float
    ask_again_at: float | None
    reason: str | None
    expected: Expectation | None = None
    cancelled: bool = False
    claim: SlotClaim | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "cancelled": self.cancelled,
            "admitted": self.admitted,
            "position": self.position,
            "start_at": round(self.start_at, 3),
            "ask_again_at": None if self.ask_again_at is None else round(self.ask_again_at, 3),
            "reason": self.reason,
            "expected": self.expected.to_json() if self.expected else None,
            "claim": self.claim.to_json() if self.claim else None,
        }

    @classmethod
    @reading("admission")
    def from_json(cls, value: object) -> Admission:
        data = as_object(value, "admission")
        expected = data.get("expected")
        ask_again = data.get("ask_again_at")
        return cls(
            admitted=bool(required(data, "admitted", "admission")),
            position=int(required(data, "position", "admission")),
            start_at=float(required(data, "start_at", "admission")),
            ask_again_at=optional_seconds(ask_again),
            reason=optional_text(data.get("reason")),
            expected=Expectation.from_json(expected) if expected else None,
            cancelled=data.get("cancelled") is True,
            claim=SlotClaim.from_json(data["claim"]) if data.get("claim") else None,
        )


# Version 1 of AttemptReport added ``refused``: whether a failure before the send was the
# route's. A version 0 report (no ``v``) is read without it, and counted as it always was.
ATTEMPT_REPORT_VERSION = 1


@dataclass(frozen=True)
class AttemptReport:
    """What an attempt came to, for the route to learn from: its outcome (``failure_kind``
    None: saved), when its request really left (``sent_at``; None: never sent), its clocks in
    route seconds from the send, the route's wait on a 429, and its rate-limit headers with the
    moment they were seen."""

    job_id: str
    attempt: int
    shape: str
    failure_kind: str | None
    sent_at: float | None
    first_byte_s: float | None = None
    first_partial_s: float | None = None
    total_s: float | None = None
    retry_after_s: float | None = None
    rate_limit: Mapping[str, str] | None = None
    headers_at: float | None = None
    ended_at: float | None = None
    # Whether the attempt failed on the route's side before its request was sent (refused or
    # lost before the send, a connect timeout, DNS, 401/403 before the send:
    # rules.route_stats.refused_by_route); a failure of ours (a worker that crashed, storage) is
    # not. None: a report of version 0, which did not say (rules.route_stats.unsent_after reads
    # it as before).
    refused: bool | None = None

    @property
    def ok(self) -> bool:
        return self.failure_kind is None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "shape": self.shape,
            "failure_kind": self.failure_kind,
            "sent_at": self.sent_at,
            "first_byte_s": self.first_byte_s,
            "first_partial_s": self.first_partial_s,
            "total_s": self.total_s,
            "retry_after_s": self.retry_after_s,
            "rate_limit": dict(self.rate_limit) if self.rate_limit else None,
            "headers_at": self.headers_at,
            "ended_at": self.ended_at,
        }
        if self.refused is not None:  # without it, written exactly as version 0
            data.update(v=ATTEMPT_REPORT_VERSION, refused=self.refused)
        return data

    @classmethod
    @reading("attempt report")
    def from_json(cls, value: object) -> AttemptReport:
        """Version 0 (no ``v``) has no ``refused``: None."""
        data = as_object(value, "attempt report")
        version = checked_version(data, "attempt report", ATTEMPT_REPORT_VERSION)
        return cls(
            job_id=required(data, "job_id", "attempt report"),
            attempt=int(required(data, "attempt", "attempt report")),
            shape=required(data, "shape", "attempt report"),
            failure_kind=optional_text(data.get("failure_kind")),
            sent_at=optional_seconds(data.get("sent_at")),
            first_byte_s=optional_seconds(data.get("first_byte_s")),
            first_partial_s=optional_seconds(data.get("first_partial_s")),
            total_s=optional_seconds(data.get("total_s")),
            retry_after_s=optional_seconds(data.get("retry_after_s")),
            rate_limit=_headers(data.get("rate_limit")),
            headers_at=optional_seconds(data.get("headers_at")),
            ended_at=optional_seconds(data.get("ended_at")),
            refused=bool(data["refused"]) if version >= 1 else None,
        )


@dataclass(frozen=True)
class RouteSummary:
    """A route's health in brief, for a failover decision: its recent success rate (None:
    nothing sent nor refused yet) over its sent attempts and its recent failures before a send
    (``unsent_failures``: refused, DNS, 401/403 before the send), each such failure counted as
    a failure; and whether it is cooling down after a 429."""

    recent_success_rate: float | None
    cooling_down: bool
    unsent_failures: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "recent_success_rate": self.recent_success_rate,
            "cooling_down": self.cooling_down,
            "unsent_failures": self.unsent_failures,
        }

    @classmethod
    @reading("route summary")
    def from_json(cls, value: object) -> RouteSummary:
        data = as_object(value, "route summary")
        rate = data.get("recent_success_rate")
        return cls(
            recent_success_rate=None if rate is None else float(rate),
            cooling_down=bool(data.get("cooling_down", False)),
            unsent_failures=int(data.get("unsent_failures", 0)),
        )


COOL_DOWN_VERSION = 1


@dataclass(frozen=True)
class CoolDown:
    """``routes/{route}/cool-down.json``: a 429's pause, left by the attempt that got it. The
    governor learns of the 429 only from that attempt's report, after it may have admitted
    other attempts (up to ``rules.pacing.LEAD_S`` ahead of their send); each of them reads this
    before its send and does not send into the pause. ``until``: epoch seconds."""

    route: str
    until: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "v": COOL_DOWN_VERSION,
            "route": self.route,
            "until": round(self.until, 3),
            "reason": self.reason,
        }

    @classmethod
    @reading("route cool-down")
    def from_json(cls, value: object) -> CoolDown:
        data = as_object(value, "route cool-down")
        checked_version(data, "route cool-down", COOL_DOWN_VERSION)
        return cls(
            route=required(data, "route", "route cool-down"),
            until=float(required(data, "until", "route cool-down")),
            reason=required(data, "reason", "route cool-down"),
        )
