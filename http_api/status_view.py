"""The status answer: what a poller sees of a job, derived from the durable status and the
current attempt's progress record, never stored twice.

``read_job`` reads both concurrently: the progress record of attempt 1 is read beside the
durable status (most jobs have one attempt), and a later attempt's only when the status names
it. ``status_answer`` is pure: typed records and a link maker in, the answer's JSON out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from http_api.answers import camel_keys
from http_api.durable_jobs import DurableJobs, JobInstance
from http_api.errors import JobNotFound, StoreUnavailable
from rules.job_records import JobState, ProgressRecord
from rules.outcome import Preview, Timings, status_error
from rules.status import derive_state, state_text
from storage.protocol import AsyncImageStore, progress_name


@dataclass(frozen=True)
class JobView:
    instance: JobInstance
    progress: ProgressRecord | None


async def read_job(
    jobs: DurableJobs, store: AsyncImageStore, job_id: str, caller_digest: str
) -> JobView:
    """The job and its current progress. Raises JobNotFound for an unknown id or another
    caller's job (the same answer, so ids cannot be probed), StoreUnavailable."""
    instance, first_progress = await asyncio.gather(
        jobs.look(job_id), read_progress(store, job_id, 1)
    )
    if instance is None or instance.job.caller != caller_digest:
        raise JobNotFound(job_id)
    custom = instance.custom_status
    progress: ProgressRecord | None = None
    if instance.output is None and custom is not None:
        if custom.attempt == 1:
            progress = first_progress
        else:
            progress = await read_progress(store, job_id, custom.attempt)
    # A record an earlier job under this id left behind is not this job's progress.
    if progress is not None and progress.job_created_at != instance.job.created_at:
        progress = None
    return JobView(instance, progress)


async def read_progress(store: AsyncImageStore, job_id: str, attempt: int) -> ProgressRecord | None:
    """The attempt's progress record; None when absent; StoreUnavailable, RecordUnreadable."""
    try:
        raw = await store.get(name=progress_name(job_id, attempt))
    except Exception as exc:
        raise StoreUnavailable(f"Blob failed: {type(exc).__name__}", job_id=job_id) from exc
    if raw is None:
        return None
    # Blob writes land whole: a record that does not read is a newer version or a bug, and
    # RecordUnreadable (a 503) says so rather than guessing from the durable status alone.
    return ProgressRecord.from_json(raw)


async def current_state(store: AsyncImageStore, instance: JobInstance) -> JobState:
    """The job's state as a poll would see it, for answers that show only the state (the list,
    a replayed start, a cancel): the durable status with the current attempt's progress."""
    custom = instance.custom_status
    progress = None
    if instance.output is None and custom is not None:
        progress = await read_progress(store, instance.instance_id, custom.attempt)
        if progress is not None and progress.job_created_at != instance.job.created_at:
            progress = None
    return job_state(JobView(instance, progress))


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
    images = [
        {**{k: v for k, v in image.to_json().items() if k != "blob"}, "url": link(image.blob)}
        for image in (result.images if result else ())
    ]
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
    return answer
