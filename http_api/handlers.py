"""The three handlers of the image job API, as plain async functions of their outside worlds
(the request, the durable job store, settings, Blob), so tests call them with hand-written fakes.

They raise; http_api.errors.answer_for turns every failure into an answer (http_api.blueprint
wires both). Validation comes first and costs nothing: a request the model would refuse is a
400 naming the field before any look at the store, and a path id that is not a job id is a 404
before any look.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import azure.functions as func

from http_api.answers import json_answer, status_url
from http_api.caller import caller_of
from http_api.durable_jobs import DurableJobs, JobInstance
from http_api.errors import JobNotFound, StoreUnavailable
from http_api.job_ids import JobIds
from http_api.status_view import JobView, job_state, read_job, status_answer
from orchestrators.image_job import CANCEL_EVENT, ORCHESTRATOR
from rules.dedup import caller_digest, check_key, fingerprint, is_job_id, job_id_for
from rules.errors import RequestInvalid
from rules.job_records import TERMINAL_STATES, CancelMarker, JobInput, JobState
from rules.request import parse_job_request
from rules.send_plan import plans
from rules.settings import AppSettings
from rules.status import RUNNING_STATUSES
from rules.timing import iso_utc
from storage.protocol import JSON, ImageStore, cancel_name

log = logging.getLogger("imagejobs.http")

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def start_job(
    req: func.HttpRequest,
    jobs: DurableJobs,
    settings: AppSettings,
    store: ImageStore,
    now: Clock = _utc_now,
) -> func.HttpResponse:
    """POST /api/images: 202 with the job's id, Location and Retry-After; a duplicate submit
    gets the existing job (``Idempotent-Replayed: true``)."""
    request = parse_job_request(_json_body(req), settings)
    raw_key = req.headers.get("idempotency-key")
    key = check_key(raw_key) if raw_key is not None else None
    caller = caller_of(req, settings)
    request_fingerprint = fingerprint(request)
    send, send_after_silence = plans(request, settings)
    job = JobInput(
        request=request,
        send=send,
        send_after_silence=send_after_silence,
        policy=settings.retry,
        caller=caller_digest(settings.job_id_secret, caller),
        fingerprint=request_fingerprint,
        created_at=iso_utc(now()),
    )
    ids = JobIds(
        jobs,
        store,
        lambda generation: job_id_for(
            settings.job_id_secret, caller, key, request_fingerprint, generation
        ),
        idempotency_window_s=settings.idempotency_window_s if key is not None else None,
        now=now,
    )
    async with asyncio.timeout(settings.timeouts.http_starter_s):
        allocation = await ids.allocate(ORCHESTRATOR, job)
    if allocation.replayed:
        log.info("image job %s returned again for a duplicate submit", allocation.job_id)
    else:
        log.info("image job %s started on route %s", allocation.job_id, request.route)
    url = status_url(req, allocation.job_id)
    headers = {"Location": url, "Retry-After": str(settings.status_retry_after_s)}
    if allocation.replayed:
        headers["Idempotent-Replayed"] = "true"
    answer: dict[str, object] = {
        "id": allocation.job_id,
        "state": allocation.state.value,
        "statusUrl": url,
    }
    if job.send.notes:
        answer["notes"] = list(job.send.notes)
    return json_answer(answer, 202, headers=headers)


async def get_job(
    req: func.HttpRequest, jobs: DurableJobs, settings: AppSettings, store: ImageStore
) -> func.HttpResponse:
    """GET /api/images/{id}: 202 with Retry-After while the job runs, 200 once it has ended."""
    job_id = _path_job_id(req)
    view = await read_job(
        jobs, store, job_id, caller_digest(settings.job_id_secret, caller_of(req, settings))
    )
    include_prompt = req.params.get("includePrompt", "").lower() == "true"

    def link(blob: str) -> str:
        return store.read_link(name=blob, ttl_s=settings.storage.link_ttl_s)

    # Links may need a user-delegation key (a network call): off the event loop.
    answer = await asyncio.to_thread(status_answer, view, link, include_prompt=include_prompt)
    running = JobState(answer["state"]) not in TERMINAL_STATES
    headers = {"Retry-After": str(settings.status_retry_after_s)} if running else {}
    return json_answer(answer, 202 if running else 200, headers=headers)


async def cancel_job(
    req: func.HttpRequest,
    jobs: DurableJobs,
    settings: AppSettings,
    store: ImageStore,
    now: Clock = _utc_now,
) -> func.HttpResponse:
    """POST /api/images/{id}/cancel: 202 (``cancelling``) or 200 with the job's final state."""
    job_id = _path_job_id(req)
    caller = caller_digest(settings.job_id_secret, caller_of(req, settings))
    instance = await jobs.look(job_id)
    if instance is None or instance.job.caller != caller:
        raise JobNotFound(job_id)
    if instance.runtime_status in RUNNING_STATUSES:
        instance = await _request_cancel(jobs, store, instance, now)
    state = job_state(JobView(instance, None))
    if instance.runtime_status in RUNNING_STATUSES and state not in (
        *TERMINAL_STATES,
        JobState.FINALIZING,
    ):
        state = JobState.CANCELLING
    url = status_url(req, job_id)
    answer = {"id": job_id, "state": state.value, "statusUrl": url}
    if state in TERMINAL_STATES:
        return json_answer(answer, 200)
    return json_answer(answer, 202, headers={"Location": url})


async def _request_cancel(
    jobs: DurableJobs, store: ImageStore, instance: JobInstance, now: Clock
) -> JobInstance:
    """The marker first: the running attempt watches it and closes its stream; then the event,
    which wakes the orchestrator wherever it waits (queued, generating, waiting to retry).
    Returns the instance as it is after the event."""
    job_id = instance.instance_id
    marker = CancelMarker(requested_at=iso_utc(now()), job_created_at=instance.job.created_at)
    data = json.dumps(marker.to_json()).encode()
    try:
        await asyncio.to_thread(store.put, name=cancel_name(job_id), data=data, content_type=JSON)
    except Exception as exc:
        raise StoreUnavailable(f"Blob failed: {type(exc).__name__}", job_id=job_id) from exc
    if await jobs.raise_event(job_id, CANCEL_EVENT):
        return instance
    # Fine only if it ended between our look and the event: its own end stands.
    after = await jobs.look(job_id)
    if after is None or after.runtime_status in RUNNING_STATUSES:
        raise StoreUnavailable("the cancel event was refused", job_id=job_id)
    return after


def _json_body(req: func.HttpRequest) -> object:
    try:
        return req.get_json()
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past any sense
        raise RequestInvalid("body", "invalid_json", "the body must be JSON") from None


def _path_job_id(req: func.HttpRequest) -> str:
    job_id = str(req.route_params.get("id", ""))
    if not is_job_id(job_id):
        raise JobNotFound(job_id)
    return job_id
