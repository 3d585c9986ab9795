"""The job contract: every record that crosses a boundary between the starter, the orchestrator,
the activities, Blob and the status endpoint, typed, and converted to and from JSON here only.

    starter ──JobInput──▶ orchestrator ──AttemptInput──▶ generate activity
                              │  ◀──AttemptResult──┘        │ ProgressRecord, CancelMarker (Blob)
                              │ CustomStatus (phase)         ▼
                              ├──FinishInput──▶ finish activity ──▶ metadata.json (Blob)
                              └──Outcome (orchestration output)
    status endpoint ◀── durable status (JobInput, CustomStatus, Outcome) + ProgressRecord

Records that outlive a deployment carry a schema version (``"v"``) and are read by the rule in
rules.records: the current version as it is, version 0 (written before versions existed) by
the conversions below, a newer one refused with RecordUnreadable. The custom status is not
versioned: it is replaced at every step and holds nothing a reader could not do without.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rules.outcome import AttemptResult, Failure, Preview, StoredImage, Timings
from rules.records import RecordUnreadable, as_object, checked_version, reading, required
from rules.request import ImageJobRequest
from rules.retry import Decision, RetryPolicy
from rules.route_records import Priority, SlotClaim
from rules.send_plan import PlanBasis, SendPlan
from rules.settings import Timeouts
from rules.webhooks import WebhookTarget

SCHEMA_VERSION = 1
# Version 2 of the records that carry the request (JobInput, AttemptInput, FinishInput) added an
# edit's input images. A record whose request has none is still written as version 1, which the
# previous deployment reads as before; an edit's is version 2, which that deployment refuses
# (RecordUnreadable) instead of running the edit as a generation without its images.
REQUEST_SCHEMA_VERSION = 2


# Version 3 of JobInput added the job's webhook (rules.webhooks): only a job with one is written
# as version 3, which the previous deployment refuses instead of running the job without telling
# the receiver that waits for it.
JOB_INPUT_SCHEMA_VERSION = 3


# Version 4 of JobInput added ``decided`` (JobDecided): what the orchestration decides by,
# frozen when the job starts, the basis of its send plan included (RouteDecided.plan_basis): a
# version 4 job never reads the settings. A version 3 (or older) input has none: the
# orchestrator falls back to the settings for it, as it always did.
JOB_INPUT_DECIDED_VERSION = 4


def request_version(request: ImageJobRequest) -> int:
    """The schema version a record carrying ``request`` is written with."""
    return REQUEST_SCHEMA_VERSION if request.is_edit else SCHEMA_VERSION


class JobState(StrEnum):
    """The honest states of the status language (rules.status says what each means)."""

    QUEUED = "queued"
    GENERATING = "generating"
    PREVIEW_AVAILABLE = "preview_available"
    FINALIZING = "finalizing"
    WAITING_TO_RETRY = "waiting_to_retry"
    CANCELLING = "cancelling"
    SAVED = "saved"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({JobState.SAVED, JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True)
class RouteDecided:
    """What a job decides by of one route, taken from the settings when the job starts: its
    name, model (the calibration and the shape class), the spacing of its sends (the window
    over its requests per minute: a late worker's grace), the time scale, and what its send
    plan is made from (rules.send_plan.PlanBasis: the route's gateway idle limit, our read-idle
    and whole-request limits, the silent-stream fix), so that the plan made again on the
    route's measured clocks is the same on every replay, whatever the settings are by then.

    The plan's fields were added while version 4 was unreleased: every version 4 input has
    them (the defaults are the settings' own, for records built in code)."""

    name: str
    model: str
    spacing_s: float
    time_scale: float
    gateway_idle_timeout_s: float | None = None
    gateway_idle_non_streamed: bool = False
    read_idle_s: float = Timeouts().read_idle_s
    request_s: float = Timeouts().request_s
    silent_stream_fix: str = "partial_images"

    @property
    def plan_basis(self) -> PlanBasis:
        return PlanBasis(
            model=self.model,
            gateway_idle_timeout_s=self.gateway_idle_timeout_s,
            gateway_idle_non_streamed=self.gateway_idle_non_streamed,
            read_idle_s=self.read_idle_s,
            request_s=self.request_s,
            silent_stream_fix=self.silent_stream_fix,
            time_scale=self.time_scale,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "spacing_s": self.spacing_s,
            "time_scale": self.time_scale,
            "gateway_idle_timeout_s": self.gateway_idle_timeout_s,
            "gateway_idle_non_streamed": self.gateway_idle_non_streamed,
            "read_idle_s": self.read_idle_s,
            "request_s": self.request_s,
            "silent_stream_fix": self.silent_stream_fix,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RouteDecided:
        idle = data["gateway_idle_timeout_s"]
        return cls(
            name=str(data["name"]),
            model=str(data["model"]),
            spacing_s=float(data["spacing_s"]),
            time_scale=float(data["time_scale"]),
            gateway_idle_timeout_s=None if idle is None else float(idle),
            gateway_idle_non_streamed=bool(data["gateway_idle_non_streamed"]),
            read_idle_s=float(data["read_idle_s"]),
            request_s=float(data["request_s"]),
            silent_stream_fix=str(data["silent_stream_fix"]),
        )


@dataclass(frozen=True)
class FailoverDecided:
    """The partner a job may move to after a failure before its send (rules.failover), as the
    settings named it when the job started, and the job's send plans there."""

    route: RouteDecided
    send: SendPlan
    send_after_gateway_kill: SendPlan | None
    send_after_read_idle: SendPlan | None

    def to_json(self) -> dict[str, Any]:
        gateway, read_idle = self.send_after_gateway_kill, self.send_after_read_idle
        return {
            "route": self.route.to_json(),
            "send": self.send.to_json(),
            "send_after_gateway_kill": gateway.to_json() if gateway else None,
            "send_after_read_idle": read_idle.to_json() if read_idle else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FailoverDecided:
        gateway, read_idle = data.get("send_after_gateway_kill"), data.get("send_after_read_idle")
        return cls(
            route=RouteDecided.from_json(data["route"]),
            send=SendPlan.from_json(data["send"]),
            send_after_gateway_kill=SendPlan.from_json(gateway) if gateway else None,
            send_after_read_idle=SendPlan.from_json(read_idle) if read_idle else None,
        )


@dataclass(frozen=True)
class JobDecided:
    """What the image job orchestration decides by, frozen into its input when the job starts
    (rules.failover.decided_for): its route's figures and its failover partner (None: none,
    or one that cannot take the request). A settings change, or a route removed, never replays
    a running job differently nor fails it without its end."""

    route: RouteDecided
    failover: FailoverDecided | None

    def to_json(self) -> dict[str, Any]:
        return {
            "route": self.route.to_json(),
            "failover": self.failover.to_json() if self.failover else None,
        }

    @classmethod
    @reading("job decided")
    def from_json(cls, value: object) -> JobDecided:
        data = as_object(value, "job decided")
        failover = data.get("failover")
        return cls(
            route=RouteDecided.from_json(data["route"]),
            failover=FailoverDecided.from_json(failover) if failover else None,
        )


@dataclass(frozen=True)
class JobInput:
    """The orchestration input, made once by the starter.

    ``caller`` is a digest of the caller (rules.dedup.caller_digest), ``fingerprint`` a digest of
    the request, ``created_at`` the job's own moment (ISO 8601 UTC): every record the job writes
    carries it, so records an earlier job left under the same id are told apart by equality.
    The prompt is inside ``request``: the activity needs it.
    """

    request: ImageJobRequest
    send: SendPlan
    policy: RetryPolicy
    caller: str
    fingerprint: str
    created_at: str
    # The shapes of a resend after a gateway gave up on silence, and after our read-idle limit
    # did (rules.send_plan.Plans); None: nothing else fits, so no resend.
    send_after_gateway_kill: SendPlan | None = None
    send_after_read_idle: SendPlan | None = None
    # Who waits: interactive attempts go ahead of batch work at the route's governor.
    priority: Priority = Priority.INTERACTIVE
    # Whether an attempt that failed before its send may move to the route's failover partner
    # (IMAGE_ROUTE_<R>_FAILOVER_TO; rules.failover).
    failover: bool = True
    # The batch the job is an item of (rules.batches), None for a job of its own: a cancel of
    # the batch reaches it through the batch's cancel marker and its route's governor.
    batch_id: str | None = None
    # Where the job's end is posted (rules.webhooks), None for no webhook.
    webhook: WebhookTarget | None = None
    # What the orchestration decides by, frozen at the start; None: an input of version 3 or
    # older (the settings decide, as they did).
    decided: JobDecided | None = None

    def to_json(self) -> dict[str, Any]:
        gateway, read_idle = self.send_after_gateway_kill, self.send_after_read_idle
        data: dict[str, Any] = {
            "priority": self.priority.value,
            "failover": self.failover,
            "batch_id": self.batch_id,
            "v": request_version(self.request),
            "request": self.request.to_json(),
            "send": self.send.to_json(),
            "send_after_gateway_kill": gateway.to_json() if gateway else None,
            "send_after_read_idle": read_idle.to_json() if read_idle else None,
            "policy": self.policy.to_json(),
            "caller": self.caller,
            "fingerprint": self.fingerprint,
            "created_at": self.created_at,
        }
        if self.webhook is not None:  # without one, written exactly as before
            data.update(v=JOB_INPUT_SCHEMA_VERSION, webhook=self.webhook.to_json())
        if self.decided is not None:  # without it, written exactly as before
            data.update(v=JOB_INPUT_DECIDED_VERSION, decided=self.decided.to_json())
        return data

    @classmethod
    @reading("job input")
    def from_json(cls, value: object) -> JobInput:
        """Version 0 had the same fields without ``v`` and the resend shapes; versions before
        4 have no ``decided`` (None)."""
        data = as_object(value, "job input")
        checked_version(data, "job input", JOB_INPUT_DECIDED_VERSION)
        gateway, read_idle = data.get("send_after_gateway_kill"), data.get("send_after_read_idle")
        webhook, decided = data.get("webhook"), data.get("decided")
        return cls(
            request=ImageJobRequest.from_json(required(data, "request", "job input")),
            send=SendPlan.from_json(required(data, "send", "job input")),
            policy=RetryPolicy.from_json(required(data, "policy", "job input")),
            caller=required(data, "caller", "job input"),
            fingerprint=required(data, "fingerprint", "job input"),
            created_at=required(data, "created_at", "job input"),
            send_after_gateway_kill=SendPlan.from_json(gateway) if gateway else None,
            send_after_read_idle=SendPlan.from_json(read_idle) if read_idle else None,
            priority=Priority(data.get("priority", Priority.INTERACTIVE.value)),
            failover=bool(data.get("failover", True)),
            batch_id=data.get("batch_id"),
            webhook=WebhookTarget.from_json(webhook) if webhook else None,
            decided=JobDecided.from_json(decided) if decided else None,
        )


class Phase(StrEnum):
    """Where the orchestrator is; no custom status at all means it has not started (queued)."""

    QUEUED = "queued"  # the route's governor has not admitted the attempt yet
    GENERATING = "generating"  # an attempt's activity is scheduled or running
    WAITING_TO_RETRY = "waiting_to_retry"  # a durable timer runs before the next attempt
    CANCELLING = "cancelling"  # cancel arrived; the running attempt is stopping
    FINISHING = "finishing"  # the outcome is decided; metadata.json is being written


@dataclass(frozen=True)
class CustomStatus:
    """The orchestrator's custom status: its phase and, per phase, what a poller may show.

    It never holds the prompt or anything else of the request (the portal shows it to
    operators).
    """

    phase: Phase
    attempt: int
    retry_at: str | None = None  # WAITING_TO_RETRY: when the timer fires (ISO 8601 UTC)
    reason: str | None = None  # WAITING_TO_RETRY: why it retries
    ending: JobState | None = None  # FINISHING: the decided state (saved, failed, cancelled)
    failure: str | None = None  # FINISHING a failed job: its failure category
    # QUEUED: the place in the route's queue (1 = next) and why it waits.
    queue_position: int | None = None
    # QUEUED and GENERATING: when the image is expected to be stored (ISO 8601 UTC), and the
    # earliest it may be (a poller is told to come back then, not later).
    eta: str | None = None
    eta_early: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"phase": self.phase.value, "attempt": self.attempt}
        if self.phase is Phase.QUEUED:
            data.update(queuePosition=self.queue_position, reason=self.reason)
        if self.phase in (Phase.QUEUED, Phase.GENERATING) and self.eta is not None:
            data.update(eta=self.eta, etaEarly=self.eta_early)
        if self.phase is Phase.WAITING_TO_RETRY:
            data.update(retryAt=self.retry_at, reason=self.reason)
        if self.phase is Phase.FINISHING:
            data.update(state=self.ending.value if self.ending else None, failure=self.failure)
        return data

    @classmethod
    @reading("custom status")
    def from_json(cls, value: object) -> CustomStatus | None:
        """None when the orchestrator has set none yet (the host hands over null or "")."""
        if value is None or value == "":
            return None
        data = as_object(value, "custom status")
        ending = data.get("state")
        phase = required(data, "phase", "custom status")
        if phase not in Phase.__members__.values():
            raise RecordUnreadable("custom status", f"unknown phase {phase!r}")
        return cls(
            phase=Phase(phase),
            attempt=required(data, "attempt", "custom status"),
            retry_at=data.get("retryAt"),
            reason=data.get("reason"),
            ending=JobState(ending) if ending else None,
            failure=data.get("failure"),
            queue_position=data.get("queuePosition"),
            eta=data.get("eta"),
            eta_early=data.get("etaEarly"),
        )


@dataclass(frozen=True)
class AttemptInput:
    """The generate activity's input: one attempt of one job, sent as ``send`` says."""

    job_id: str
    attempt: int
    request: ImageJobRequest
    send: SendPlan
    job_created_at: str
    # The route's governor admitted the send for ``send_at`` (epoch s): the activity waits for
    # it, and does not send after ``send_by`` (a worker that came too late, e.g. after a
    # restart, asks the governor again instead of bursting past the route's pace). None: no
    # governor's word (records of earlier deployments), send at once.
    send_at: float | None = None
    send_by: float | None = None
    # The batch the job is an item of: its cancel marker stops the attempt too.
    batch_id: str | None = None
    # The route's slot to claim before the send (rules.route_records.SlotClaim); None: the
    # slot is this attempt's alone.
    claim: SlotClaim | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": request_version(self.request),
            "send_at": self.send_at,
            "send_by": self.send_by,
            "claim": self.claim.to_json() if self.claim else None,
            "batch_id": self.batch_id,
            "job_id": self.job_id,
            "attempt": self.attempt,
            "request": self.request.to_json(),
            "send": self.send.to_json(),
            "job_created_at": self.job_created_at,
        }

    @classmethod
    @reading("attempt input")
    def from_json(cls, value: object) -> AttemptInput:
        """Version 0 had the send plan's fields flat beside the others."""
        data = as_object(value, "attempt input")
        version = checked_version(data, "attempt input", REQUEST_SCHEMA_VERSION)
        send = data if version == 0 else required(data, "send", "attempt input")
        return cls(
            job_id=required(data, "job_id", "attempt input"),
            attempt=required(data, "attempt", "attempt input"),
            request=ImageJobRequest.from_json(required(data, "request", "attempt input")),
            send=SendPlan.from_json(send),
            job_created_at=required(data, "job_created_at", "attempt input"),
            send_at=data.get("send_at"),
            send_by=data.get("send_by"),
            batch_id=data.get("batch_id"),
            claim=SlotClaim.from_json(data["claim"]) if data.get("claim") else None,
        )


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt as the job remembers it: what it came to and, when it failed, what the retry
    policy decided (None for the attempt that ended the job by success or cancel)."""

    result: AttemptResult
    decision: Decision | None = None

    def to_json(self) -> dict[str, Any]:
        decision = self.decision.to_json() if self.decision else None
        return {**self.result.to_json(), "decision": decision}

    @classmethod
    @reading("attempt record")
    def from_json(cls, data: Mapping[str, Any]) -> AttemptRecord:
        decision = data.get("decision")
        return cls(
            result=AttemptResult.from_json(data),
            decision=Decision.from_json(decision) if decision else None,
        )


@dataclass(frozen=True)
class Outcome:
    """The orchestration's output: what the status endpoint shows once the job has ended.

    ``failure`` is the category of a failed job (returned_error, local_timeout,
    internal_error); ``error`` the failure that ended it. ``metadata_blob`` is None when
    metadata.json could not be written (the outcome stands without it; ``metadata_error`` says
    so). Cost is the sum over every attempt that may have been billed, in USD (None when none
    may have been), ``cost_estimated`` when any part of it is an estimate from the shape.
    """

    state: JobState
    attempt: int
    failure: str | None = None
    error: Failure | None = None
    retry_count: int = 0
    retry_reason: str | None = None
    images: tuple[StoredImage, ...] = ()
    previews: tuple[Preview, ...] = ()
    timings: Timings = field(default_factory=Timings)
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    # True when any attempt's cost is an estimate (rules.cost.attempt_cost).
    cost_estimated: bool = False
    metadata_blob: str | None = None
    metadata_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "state": self.state.value,
            "attempt": self.attempt,
            "failure": self.failure,
            "error": self.error.to_json() if self.error else None,
            "retry_count": self.retry_count,
            "retry_reason": self.retry_reason,
            "images": [image.to_json() for image in self.images],
            "previews": [preview.to_json() for preview in self.previews],
            "timings": self.timings.to_json(),
            "usage": self.usage,
            "cost_usd": self.cost_usd,
            "cost_estimated": self.cost_estimated,
            "metadata_blob": self.metadata_blob,
            "metadata_error": self.metadata_error,
        }

    @classmethod
    @reading("outcome")
    def from_json(cls, value: object) -> Outcome:
        """Version 0 kept ``error`` as the status answer's object (camelCase, no ``sent``)."""
        data = as_object(value, "outcome")
        version = checked_version(data, "outcome", SCHEMA_VERSION)
        error = data.get("error")
        return cls(
            state=JobState(required(data, "state", "outcome")),
            attempt=required(data, "attempt", "outcome"),
            failure=data.get("failure"),
            error=(_error_v0(error) if version == 0 else Failure.from_json(error))
            if error
            else None,
            retry_count=data.get("retry_count", 0),
            retry_reason=data.get("retry_reason"),
            images=tuple(StoredImage.from_json(i) for i in data.get("images") or ()),
            previews=tuple(Preview.from_json(p) for p in data.get("previews") or ()),
            timings=Timings.from_json(data.get("timings")),
            usage=data.get("usage"),
            cost_usd=data.get("cost_usd"),
            cost_estimated=data.get("cost_estimated", False),
            metadata_blob=data.get("metadata_blob"),
            metadata_error=data.get("metadata_error"),
        )


def _error_v0(error: Mapping[str, Any]) -> Failure:
    return Failure.from_json(
        {
            "kind": error["kind"],
            "layer": error["layer"],
            "message": error.get("message") or "",
            "sent": True,  # not recorded in version 0; the cautious reading
            "http_status": error.get("httpStatus"),
            "error_type": error.get("type"),
            "code": error.get("code"),
            "param": error.get("param"),
            "request_id": error.get("requestId"),
            "timeout": error.get("timeout"),
        }
    )


@dataclass(frozen=True)
class FinishInput:
    """The finish activity's input: the ended job, for metadata.json and the log event."""

    job_id: str
    request: ImageJobRequest
    outcome: Outcome
    attempts: tuple[AttemptRecord, ...]
    # The caller's digest (rules.dedup.caller_digest), kept in metadata.json so that the job
    # still answers its caller, and only its caller, once its durable history is purged.
    caller: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": request_version(self.request),
            "job_id": self.job_id,
            "request": self.request.to_json(),
            "outcome": self.outcome.to_json(),
            "attempts": [attempt.to_json() for attempt in self.attempts],
            "caller": self.caller,
        }

    @classmethod
    @reading("finish input")
    def from_json(cls, value: object) -> FinishInput:
        data = as_object(value, "finish input")
        checked_version(data, "finish input", REQUEST_SCHEMA_VERSION)
        return cls(
            job_id=required(data, "job_id", "finish input"),
            request=ImageJobRequest.from_json(required(data, "request", "finish input")),
            outcome=Outcome.from_json(required(data, "outcome", "finish input")),
            attempts=tuple(
                AttemptRecord.from_json(a) for a in required(data, "attempts", "finish input")
            ),
            caller=data.get("caller"),
        )


@dataclass
class ProgressRecord:
    """``{id}/progress-{attempt}.json``: what one attempt has done so far, for pollers and for a
    re-run of the same attempt (Azure runs activities at least once).

    Written with ``sent`` True, and waited for, before the request leaves: a re-run that finds
    it knows the route may be generating. ``images`` is set once every image is stored (a re-run
    returns them); ``result`` once the attempt has finished (a re-run returns it). Mutable: the
    attempt updates it as it goes and writes the latest state.
    """

    job_created_at: str | None
    attempt: int
    started_at: str | None
    previews: list[Preview] = field(default_factory=list)
    final_received: bool = False
    sent: bool = False
    sent_at: str | None = None
    done: bool = False
    images: tuple[StoredImage, ...] | None = None
    result: AttemptResult | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "job_created_at": self.job_created_at,
            "attempt": self.attempt,
            "started_at": self.started_at,
            "previews": [preview.to_json() for preview in self.previews],
            "final_received": self.final_received,
            "sent": self.sent,
            "sent_at": self.sent_at,
            "done": self.done,
            "images": [i.to_json() for i in self.images] if self.images is not None else None,
            "result": self.result.to_json() if self.result else None,
        }

    @classmethod
    @reading("progress")
    def from_json(cls, value: object) -> ProgressRecord:
        """Version 0 had the same fields without ``v``; a missing ``sent`` reads as sent."""
        data = as_object(value, "progress")
        checked_version(data, "progress", SCHEMA_VERSION)
        images = data.get("images")
        result = data.get("result")
        return cls(
            job_created_at=data.get("job_created_at"),
            attempt=required(data, "attempt", "progress"),
            started_at=data.get("started_at"),
            previews=[Preview.from_json(p) for p in data.get("previews") or ()],
            final_received=data.get("final_received", False),
            sent=data.get("sent", True),
            sent_at=data.get("sent_at"),
            done=data.get("done", False),
            images=tuple(StoredImage.from_json(i) for i in images) if images else None,
            result=AttemptResult.from_json(result) if result else None,
        )


@dataclass(frozen=True)
class CancelMarker:
    """``{id}/cancel.json``: the caller asked to cancel; the running attempt watches for it.
    ``job_created_at`` is the cancelled job's own, so a later job under the id ignores it."""

    requested_at: str
    job_created_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "requested_at": self.requested_at,
            "job_created_at": self.job_created_at,
        }

    @classmethod
    @reading("cancel marker")
    def from_json(cls, value: object) -> CancelMarker:
        data = as_object(value, "cancel marker")
        checked_version(data, "cancel marker", SCHEMA_VERSION)
        return cls(
            requested_at=required(data, "requested_at", "cancel marker"),
            job_created_at=data.get("job_created_at"),
        )


@dataclass(frozen=True)
class KeyRecord:
    """``keys/{id base}.json``: the job an Idempotency-Key answered, kept in Blob so that a
    purge of the durable history cannot turn a repeated key into a second, billable job within
    the idempotency window. ``fingerprint`` tells a repeat from a reuse with another body."""

    job_id: str
    fingerprint: str
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "job_id": self.job_id,
            "fingerprint": self.fingerprint,
            "created_at": self.created_at,
        }

    @classmethod
    @reading("key record")
    def from_json(cls, value: object) -> KeyRecord:
        data = as_object(value, "key record")
        checked_version(data, "key record", SCHEMA_VERSION)
        return cls(
            job_id=required(data, "job_id", "key record"),
            fingerprint=required(data, "fingerprint", "key record"),
            created_at=required(data, "created_at", "key record"),
        )
