"""The status answer: what a poller sees of a job, derived from the durable status and the
current attempt's progress record, never stored twice.

``read_job`` reads the durable status, then the current attempt's progress record only where
the custom status says one can exist (not while the job waits for its route's admission).
``status_answer`` is pure: typed records and a link maker in, the answer's JSON out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from http_api.answers import camel_keys
from http_api.durable_jobs import DurableJobs, JobInstance
from http_api.errors import JobNotFound, blob_call
from rules.job_records import (
    REQUEST_SCHEMA_VERSION,
    TERMINAL_STATES,
    CustomStatus,
    JobState,
    Outcome,
    Phase,
    ProgressRecord,
)
from rules.outcome import Preview, StoredImage, Timings, status_error
from rules.records import as_object, checked_version, reading, required
from rules.status import derive_state, state_text
from rules.timing import TIMING_FIELDS
from storage.protocol import AsyncImageStore, metadata_name, progress_name

# The longest Retry-After a running job's poller is told (seconds): an estimate may be wrong.
MAX_RETRY_AFTER_S = 30


@dataclass(frozen=True)
class JobView:
    instance: JobInstance
    progress: ProgressRecord | None


async def read_job(
    jobs: DurableJobs, store: AsyncImageStore, job_id: str, caller_digest: str
) -> JobView:
    """The job and its current progress. Raises JobNotFound for an unknown id or another
    caller's job (the same answer, so ids cannot be probed), StoreUnavailable."""
    instance = await jobs.look(job_id)
    if instance is None or instance.job.caller != caller_digest:
        raise JobNotFound(job_id)
    return JobView(instance, await _current_progress(store, instance))


async def _current_progress(store: AsyncImageStore, instance: JobInstance) -> ProgressRecord | None:
    """The current attempt's progress record, read only when the job is where one can exist.

    A job the orchestrator has not yet started, or one waiting for its route's admission, has
    no record for its attempt (the attempt writes it only once admitted), and most polls of a
    busy route are of such jobs: they cost one durable look and no Blob read.
    """
    custom = instance.custom_status
    if instance.output is not None or custom is None or custom.phase is Phase.QUEUED:
        return None
    progress = await read_progress(store, instance.instance_id, custom.attempt)
    # A record an earlier job under this id left behind is not this job's progress.
    if progress is not None and progress.job_created_at != instance.job.created_at:
        return None
    return progress


async def read_progress(store: AsyncImageStore, job_id: str, attempt: int) -> ProgressRecord | None:
    """The attempt's progress record; None when absent; StoreUnavailable, RecordUnreadable."""
    with blob_call(job_id=job_id):
        raw = await store.get(name=progress_name(job_id, attempt))
    if raw is None:
        return None
    # Blob writes land whole: a record that does not read is a newer version or a bug, and
    # RecordUnreadable (a 503) says so rather than guessing from the durable status alone.
    return ProgressRecord.from_json(raw)


async def current_state(store: AsyncImageStore, instance: JobInstance) -> JobState:
    """The job's state as a poll would see it, for answers that show only the state (the list,
    a replayed start, a cancel): the durable status with the current attempt's progress."""
    return job_state(JobView(instance, await _current_progress(store, instance)))


def job_state(view: JobView) -> JobState:
    instance = view.instance
    return derive_state(
        instance.runtime_status, instance.custom_status, view.progress, instance.output
    )


def status_answer(
    view: JobView, link: Callable[[str], str], *, include_prompt: bool
) -> dict[str, Any]:
    """The status JSON. ``link(blob)`` makes a read-only, expiring URL for a blob."""
    instance, progress = view.instance, view.progress
    result, custom = instance.output, instance.custom_status
    state = job_state(view)
    if instance.runtime_status == "Failed":
        failure: str | None = "internal_error"  # the orchestration itself failed: a fault of ours
    elif result is not None:
        failure = result.failure
    else:
        failure = custom.failure if custom else None
    request = instance.job.request
    shape = request.shape()
    if include_prompt:
        shape["prompt"] = request.prompt
    previews: tuple[Preview, ...] | list[Preview] = (
        result.previews if result else (progress.previews if progress else ())
    )
    images = _image_links(result.images if result else (), link)
    if result is not None:
        timings = result.timings
    else:
        timings = Timings(request_started_at=progress.started_at if progress else None)
    answer: dict[str, Any] = {
        "id": instance.instance_id,
        "state": state.value,
        "stateText": state_text(state, failure, custom.ending if custom else None),
        "failure": failure if state is JobState.FAILED else None,
        "attempt": (result.attempt if result else None) or (custom.attempt if custom else 0),
        "route": request.route,
        "request": camel_keys(shape),
        "sentAs": list(instance.job.send.notes),
        "timings": camel_keys(timings.to_json()),
        "previews": [{"index": p.index, "url": link(p.blob)} for p in previews if p.stored],
        "image": images[0] if images else None,
        "images": images,
        # None when metadata.json could not be written: the job's outcome stands without it.
        "metadataUrl": link(result.metadata_blob) if result and result.metadata_blob else None,
        "error": status_error(result.error) if result and result.error else None,
        "retryCount": result.retry_count if result else None,
        "costUsd": result.cost_usd if result else None,
        "costEstimated": result.cost_estimated if result else None,
        "createdAt": instance.created_iso,
        "updatedAt": instance.updated_iso,
    }
    if state is JobState.WAITING_TO_RETRY and custom is not None:
        answer["retry"] = {"at": custom.retry_at, "reason": custom.reason}
    running = state not in TERMINAL_STATES
    answer["queuePosition"] = (
        custom.queue_position if custom and custom.phase is Phase.QUEUED else None
    )
    answer["queueReason"] = queue_reason(state, custom)
    answer["eta"] = custom.eta if custom and running else None
    return answer


# Why a queued job waits, where its route's governor has not said (its own reason is kept).
NOT_STARTED = "waiting for the orchestration to start"
WAITING_FOR_WORKER = "admitted by its route, waiting for a worker to send the attempt"


def queue_reason(state: JobState, custom: CustomStatus | None) -> str | None:
    """Why a ``queued`` job waits (None in any other state): its route's reason while the
    governor holds it; else not started yet, or admitted and waiting for a worker."""
    if state is not JobState.QUEUED:
        return None
    if custom is None:
        return NOT_STARTED
    if custom.phase is Phase.QUEUED:
        return custom.reason
    return WAITING_FOR_WORKER


# States in which the attempt's request has left: only then can the image be near.
SENT_STATES = frozenset({JobState.GENERATING, JobState.PREVIEW_AVAILABLE, JobState.FINALIZING})
# A poll this close to the earliest moment the image may be stored is held rather than told to
# come back in a second (Retry-After's smallest whole number): seconds.
HOLD_AHEAD_S = 2.0


def may_end_now(view: JobView, now: datetime) -> bool:
    """Whether the job is running and within ``HOLD_AHEAD_S`` of (or past) the earliest moment
    its image may be stored: a poll then is held for a change (``changed``) instead of
    answered at once."""
    custom = view.instance.custom_status
    if view.instance.output is not None or custom is None or custom.eta_early is None:
        return False
    if job_state(view) not in SENT_STATES:
        return False  # not sent yet (queued for a worker or at the route): nothing is imminent
    try:
        early = datetime.fromisoformat(custom.eta_early)
    except ValueError:
        return False
    return (early - now).total_seconds() <= HOLD_AHEAD_S


# States a held poll holds through: the image has arrived (or the outcome is decided) and is
# being stored, a fraction of a second before the job ends. Answered there, a client that
# honours Retry-After would sleep a whole second past the end.
HELD_THROUGH = frozenset({JobState.FINALIZING})


def changed(before: JobView, after: JobView) -> bool:
    """Whether a poller would see something new worth answering for: the job ended or moved to
    another state (``finalizing`` aside: the end follows at once), another attempt, another
    stored preview."""

    def seen(view: JobView) -> tuple[object, ...]:
        custom = view.instance.custom_status
        previews = view.progress.previews if view.progress else ()
        state = job_state(view)
        return (
            None if state in HELD_THROUGH else state,
            custom.attempt if custom else None,
            sum(1 for preview in previews if preview.stored),
        )

    if job_state(after) in TERMINAL_STATES:
        return True
    return seen(before) != seen(after) and job_state(after) not in HELD_THROUGH


def retry_after_s(view: JobView, now: datetime, *, default_s: int) -> int:
    """Seconds a poller should wait before it asks again (whole seconds, as Retry-After takes
    them): until the earliest the image may be stored, 1 to ``MAX_RETRY_AFTER_S``; the
    ``default_s`` setting when the job has no estimate yet."""
    custom = view.instance.custom_status
    if custom is None or custom.eta_early is None:
        return default_s
    try:
        early = datetime.fromisoformat(custom.eta_early)
    except ValueError:
        return default_s
    wait = (early - now).total_seconds()
    return int(min(MAX_RETRY_AFTER_S, max(1, math.floor(wait))))


def _image_links(images: Sequence[StoredImage], link: Callable[[str], str]) -> list[dict[str, Any]]:
    return [
        {**{k: v for k, v in image.to_json().items() if k != "blob"}, "url": link(image.blob)}
        for image in images
    ]


@dataclass(frozen=True)
class EndedJob:
    """A finished job as its metadata.json tells it: what still answers its caller, and only
    its caller, once the durable history is purged (a key's record may still name it)."""

    job_id: str
    caller: str | None
    outcome: Outcome
    request_shape: dict[str, Any]
    send_notes: tuple[str, ...]
    finished_at: str

    @classmethod
    @reading("metadata")
    def from_metadata(cls, value: object) -> EndedJob:
        data = as_object(value, "metadata")
        checked_version(data, "metadata", REQUEST_SCHEMA_VERSION)
        job_id = required(data, "id", "metadata")
        attempts = required(data, "attempts", "metadata")
        # metadata.json keeps the outcome's fields flat, with the error as the answer shows it:
        # the outcome's version-0 layout reads exactly that.
        outcome = Outcome.from_json(
            {
                "state": required(data, "state", "metadata"),
                "attempt": attempts[-1]["attempt"] if attempts else 0,
                "failure": data.get("failure"),
                "error": data.get("error"),
                "retry_count": data.get("retry_count", 0),
                "images": data.get("images") or [],
                "previews": data.get("previews") or [],
                "timings": {k: data.get(k) for k in TIMING_FIELDS},
                "cost_usd": data.get("cost_usd"),
                "cost_estimated": data.get("cost_estimated", False),
                "metadata_blob": metadata_name(job_id),
            }
        )
        return cls(
            job_id=job_id,
            caller=data.get("caller"),
            outcome=outcome,
            request_shape=dict(required(data, "request", "metadata")),
            send_notes=tuple(data.get("send_notes") or ()),
            finished_at=required(data, "finished_at", "metadata"),
        )


async def read_ended(store: AsyncImageStore, job_id: str, caller_digest: str) -> EndedJob:
    """The caller's finished job from its metadata.json, when the durable history has none.
    Raises JobNotFound (no record, or another caller's), StoreUnavailable, RecordUnreadable."""
    with blob_call(job_id=job_id):
        raw = await store.get(name=metadata_name(job_id))
    if raw is None:
        raise JobNotFound(job_id)
    ended = EndedJob.from_metadata(raw)
    if ended.caller is None or ended.caller != caller_digest:
        raise JobNotFound(job_id)
    return ended


def ended_answer(ended: EndedJob, link: Callable[[str], str]) -> dict[str, Any]:
    """The status JSON of a job known only by its metadata.json (``historyPurged``)."""
    outcome = ended.outcome
    images = _image_links(outcome.images, link)
    return {
        "id": ended.job_id,
        "state": outcome.state.value,
        "stateText": state_text(outcome.state, outcome.failure),
        "failure": outcome.failure if outcome.state is JobState.FAILED else None,
        "attempt": outcome.attempt,
        "route": ended.request_shape.get("route"),
        "request": camel_keys(ended.request_shape),
        "sentAs": list(ended.send_notes),
        "timings": camel_keys(outcome.timings.to_json()),
        "previews": [{"index": p.index, "url": link(p.blob)} for p in outcome.previews if p.stored],
        "image": images[0] if images else None,
        "images": images,
        "metadataUrl": link(metadata_name(ended.job_id)),
        "error": status_error(outcome.error) if outcome.error else None,
        "retryCount": outcome.retry_count,
        "costUsd": outcome.cost_usd,
        "costEstimated": outcome.cost_estimated,
        "createdAt": None,
        "updatedAt": ended.finished_at,
        # As for any ended job: the same fields as a live answer (docs/job-contract.md).
        "queuePosition": None,
        "queueReason": None,
        "eta": None,
        "historyPurged": True,
    }
