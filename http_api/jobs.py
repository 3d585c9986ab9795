"""POST /api/images, GET /api/images/{id}, POST /api/images/{id}/cancel.

The starter validates by the model's rules before anything is started (400 naming the field),
starts the orchestration and answers 202 at once with the job id, a Location and Retry-After.
Submitting the same job again returns the existing one (rules.dedup: deterministic ids, the
durable store settles races). The status endpoint derives the state from the durable status, the
orchestrator's custom status and the activity's progress record in Blob, and hands out read-only,
expiring links. A caller (the Easy Auth principal, else a settings default) sees and cancels only
its own jobs: another caller's job is a 404, as if it did not exist.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

import wiring
from orchestrators.image_job import CANCEL_EVENT, ORCHESTRATOR
from rules.dedup import caller_digest, check_key, fingerprint, job_id
from rules.errors import RequestInvalid, SettingsInvalid
from rules.request import ImageJobRequest, parse_job_request
from rules.send_plan import plan_send
from rules.settings import AppSettings
from rules.status import (
    RUNNING_STATUSES,
    TERMINAL_STATES,
    JobState,
    derive_state,
    state_text,
)
from rules.timing import iso_utc
from storage.protocol import ImageStore, cancel_name, metadata_name, progress_name

bp = df.Blueprint()
log = logging.getLogger("imagejobs.http")

_JSON = "application/json"
# How many ids past the latest generation the starter tries (purged records in the way).
MAX_GENERATIONS = 100


class KeyConflict(Exception):
    """The Idempotency-Key was used before with a different request body."""


class StatusUnknown(Exception):
    """The job store answered a status request with an error: absent or not, we cannot tell."""


async def _look(client: df.DurableOrchestrationClient, instance_id: str) -> Any | None:
    """The instance's status, None when it does not exist; StatusUnknown on an error answer.

    The SDK turns a 404 and an error answer alike into a falsy status; only the error's body
    (``Message``) tells them apart, and guessing "absent" on an error could start a second job.
    """
    status = await client.get_status(instance_id, show_input=True)
    if status and status.runtime_status is not None:
        return status
    if getattr(status, "Message", None) or getattr(status, "ExceptionMessage", None):
        raise StatusUnknown(instance_id)
    return None


@bp.route(route="images", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def start_image_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Any:
    try:
        settings = wiring.settings()
    except SettingsInvalid as exc:
        log.error("cannot start a job: %s", exc)
        return _error(500, "settings", "settings_invalid", "the service is misconfigured")
    try:
        body = req.get_json()
    except ValueError:
        return _error(400, "body", "invalid_json", "the body must be JSON")
    try:
        job = parse_job_request(body, settings)
        raw_key = req.headers.get("idempotency-key")
        key = check_key(raw_key) if raw_key is not None else None
    except RequestInvalid as exc:
        return func.HttpResponse(json.dumps(exc.body()), status_code=400, mimetype=_JSON)

    caller = _caller(req, settings)
    request_fingerprint = fingerprint(job)
    plan = plan_send(job, settings.route(job.route), silent_fix=settings.silent_stream_fix)
    job_input = {
        "request": job.to_json(),
        "send": plan.to_json(),
        "policy": asdict(settings.retry),
        "caller": caller_digest(settings.job_id_secret, caller),
        "fingerprint": request_fingerprint,
        "created_at": iso_utc(datetime.now(UTC)),
    }
    try:
        async with asyncio.timeout(settings.timeouts.http_starter_s):
            found, state, replayed = await _start_or_reuse(
                client, caller, key, request_fingerprint, job_input, settings
            )
    except KeyConflict:
        return _error(
            409,
            "Idempotency-Key",
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        )
    except TimeoutError:
        log.error("starting a job took longer than %ss", settings.timeouts.http_starter_s)
        return _error(
            503, "service", "start_timeout", "the job store did not answer in time; try again"
        )
    except StatusUnknown:
        log.error("the job store answered a status request with an error")
        return _error(503, "service", "store_error", "the job store failed; try again")
    status_url = _status_url(req, found)
    if replayed:
        log.info("image job %s returned again for a duplicate submit", found)
    else:
        log.info("image job %s started on route %s", found, job.route)
    headers = {"Location": status_url, "Retry-After": str(settings.status_retry_after_s)}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    answer: dict[str, Any] = {"id": found, "state": state, "statusUrl": status_url}
    if plan.notes:
        answer["notes"] = plan.notes
    return func.HttpResponse(json.dumps(answer), status_code=202, mimetype=_JSON, headers=headers)


async def _start_or_reuse(
    client: df.DurableOrchestrationClient,
    caller: str,
    key: str | None,
    request_fingerprint: str,
    job_input: dict[str, Any],
    settings: AppSettings,
) -> tuple[str, str, bool]:
    """(job id, its state, whether it already existed). Race-free: ids are deterministic and
    only one start can create an instance that is pending or running."""

    def candidate(generation: int) -> str:
        return job_id(settings.job_id_secret, caller, key, request_fingerprint, generation)

    # Generations are made in order and only the latest can still be running: find it in a
    # few looks (doubling, then halving), not one look per job ever made under this id base.
    first = max(1, await _latest_generation(client, candidate))
    for generation in range(first, first + MAX_GENERATIONS):
        instance = candidate(generation)
        status = await _look(client, instance)
        if status is None:
            if not await asyncio.to_thread(_claim_folder, wiring.store(), instance):
                continue  # a finished job's record is there (its history was purged): skip
            try:
                await client.start_new(ORCHESTRATOR, instance, job_input)
            except Exception:
                # Someone started it between our look and our start: it is theirs and ours.
                status = await _look(client, instance)
                if status is None:
                    raise
            else:
                return instance, JobState.QUEUED.value, False
        runtime = status.runtime_status.name
        existing = _as_dict(status.input_)
        state = derive_state(runtime, _as_dict(status.custom_status), None, _output(status))
        if runtime in RUNNING_STATUSES or _within(status.created_time, settings, key):
            if existing.get("fingerprint") != request_fingerprint:
                raise KeyConflict
            return instance, state.value, True
    raise RuntimeError(f"no free job id in {MAX_GENERATIONS} generations")


async def _latest_generation(
    client: df.DurableOrchestrationClient, candidate: Callable[[int], str]
) -> int:
    """The highest generation that exists (0 if none), by doubling then bisecting."""

    async def exists(generation: int) -> bool:
        instance = candidate(generation)
        if await _look(client, instance) is not None:
            return True
        return not await asyncio.to_thread(_claim_folder, wiring.store(), instance)

    if not await exists(1):
        return 0
    low, high = 1, 2
    while await exists(high):
        low, high = high, high * 2
    while high - low > 1:  # exists(low) and not exists(high)
        middle = (low + high) // 2
        if await exists(middle):
            low = middle
        else:
            high = middle
    return low


def _claim_folder(store: ImageStore, candidate: str) -> bool:
    """Whether ``candidate``'s blob folder may be used by a new job. A folder with metadata.json
    belongs to a finished job whose durable history is gone (purged): never reused, never
    overwritten. Nothing is deleted: a concurrent submit may have started the job a moment ago
    and be writing there; what an unfinished earlier job left behind is older than the new
    job's ``created_at`` and ignored by its activity."""
    return store.get(name=metadata_name(candidate)) is None


def _within(created: datetime | None, settings: AppSettings, key: str | None) -> bool:
    """A finished job counts as the answer to a keyed submit within the idempotency window."""
    if key is None or created is None:
        return False
    created_utc = created if created.tzinfo else created.replace(tzinfo=UTC)
    age = (datetime.now(UTC) - created_utc).total_seconds()
    return age <= settings.idempotency_window_s


@bp.route(route="images/{id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_image_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Any:
    job_id_ = req.route_params["id"]
    settings = wiring.settings()
    status = await _own_status(client, job_id_, _caller(req, settings), settings.job_id_secret)
    if status is None:
        return _error(404, "id", "not_found", f"no image job {job_id_}")
    store = wiring.store()
    include_prompt = req.params.get("includePrompt", "").lower() == "true"
    answer = await asyncio.to_thread(
        status_answer,
        job_id_,
        status.runtime_status.name,
        status.custom_status,
        _output(status),
        status.input_,
        store,
        settings.storage.link_ttl_s,
        include_prompt,
    )
    answer["createdAt"] = _iso(status.created_time)
    answer["updatedAt"] = _iso(status.last_updated_time)
    running = JobState(answer["state"]) not in TERMINAL_STATES
    headers = {"Retry-After": str(settings.status_retry_after_s)} if running else {}
    return func.HttpResponse(
        json.dumps(answer), status_code=202 if running else 200, mimetype=_JSON, headers=headers
    )


@bp.route(route="images/{id}/cancel", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def cancel_image_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Any:
    job_id_ = req.route_params["id"]
    settings = wiring.settings()
    status = await _own_status(client, job_id_, _caller(req, settings), settings.job_id_secret)
    if status is None:
        return _error(404, "id", "not_found", f"no image job {job_id_}")
    status_url = _status_url(req, job_id_, cancel=True)
    runtime = status.runtime_status.name
    if runtime in RUNNING_STATUSES:
        # The marker first: the running attempt watches it and closes its stream; the event
        # wakes the orchestrator wherever it waits (queued, generating, waiting to retry).
        marker = json.dumps(
            {
                "requested_at": iso_utc(datetime.now(UTC)),
                # The job's own created_at: an earlier job under this id ignores the marker.
                "job_created_at": _as_dict(status.input_).get("created_at"),
            }
        ).encode()
        store = wiring.store()
        await asyncio.to_thread(
            store.put, name=cancel_name(job_id_), data=marker, content_type=_JSON
        )
        try:
            await client.raise_event(job_id_, CANCEL_EVENT, {})
        except Exception:
            # Fine only if it ended between our look and the event: its own end stands.
            status = await client.get_status(job_id_)
            if not status or status.runtime_status is None:
                raise
            runtime = status.runtime_status.name
            if runtime in RUNNING_STATUSES:
                raise
    state = derive_state(runtime, _as_dict(status.custom_status), None, _output(status))
    if runtime in RUNNING_STATUSES and state not in (*TERMINAL_STATES, JobState.FINALIZING):
        state = JobState.CANCELLING
    answer = {"id": job_id_, "state": state.value, "statusUrl": status_url}
    code = 202 if state not in TERMINAL_STATES else 200
    headers = {"Location": status_url} if code == 202 else {}
    return func.HttpResponse(json.dumps(answer), status_code=code, mimetype=_JSON, headers=headers)


async def _own_status(
    client: df.DurableOrchestrationClient, instance_id: str, caller: str, secret: bytes
) -> Any | None:
    """The job's durable status if it exists and belongs to ``caller``; else None (a 404)."""
    status = await client.get_status(instance_id, show_input=True)
    if not status or status.runtime_status is None:
        return None
    if _as_dict(status.input_).get("caller") != caller_digest(secret, caller):
        return None
    return status


def status_answer(
    job_id: str,
    runtime_status: str,
    custom_status: Any,
    output: dict[str, Any] | None,
    job_input: Any,
    store: ImageStore,
    link_ttl_s: int,
    include_prompt: bool,
) -> dict[str, Any]:
    """The status JSON, from durable's view of the job and what the activity wrote to Blob."""
    custom = _as_dict(custom_status)
    result = output if runtime_status == "Completed" else None
    progress = None
    if result is None and custom.get("attempt"):
        raw = store.get(name=progress_name(job_id, int(custom["attempt"])))
        progress = json.loads(raw) if raw else None
    state = derive_state(runtime_status, custom, progress, result)
    failure = (result or custom).get("failure")
    if runtime_status == "Failed":
        failure = "internal_error"  # the orchestration itself failed: a fault of ours
    job = _as_dict(job_input)
    request = job.get("request") or {}
    shape = ImageJobRequest.from_json(request).shape() if request else {}
    if include_prompt and request:
        shape["prompt"] = request.get("prompt")

    def link(name: str) -> str:
        return store.read_link(name=name, ttl_s=link_ttl_s)

    live_previews = (progress or {}).get("previews") or []
    previews = [p for p in (result or {}).get("previews") or live_previews if p.get("stored", True)]
    images = [
        {**{k: v for k, v in image.items() if k != "blob"}, "url": link(image["blob"])}
        for image in (result or {}).get("images", [])
    ]
    answer: dict[str, Any] = {
        "id": job_id,
        "state": state.value,
        "stateText": state_text(state, failure, custom.get("state")),
        "failure": failure if state is JobState.FAILED else None,
        "attempt": (result or {}).get("attempt") or custom.get("attempt") or 0,
        "route": shape.get("route"),
        "request": shape,
        "sentAs": (job.get("send") or {}).get("send_notes") or [],
        "timings": (result or {}).get("timings") or _progress_timings(progress),
        "previews": [{"index": p["index"], "url": link(p["blob"])} for p in previews],
        "image": images[0] if images else None,
        "images": images,
        # None when metadata.json could not be written: the job's outcome stands without it.
        "metadataUrl": link(result["metadata_blob"])
        if result and result.get("metadata_blob")
        else None,
        "error": (result or {}).get("error"),
        "retryCount": (result or {}).get("retry_count"),
        "costUsd": (result or {}).get("cost_usd"),
    }
    if state is JobState.WAITING_TO_RETRY:
        answer["retry"] = {"at": custom.get("retryAt"), "reason": custom.get("reason")}
    return answer


def _caller(req: func.HttpRequest, settings: AppSettings) -> str:
    # Set by App Service Authentication (Easy Auth), which strips it from client requests; it
    # is trusted only where Easy Auth is on (or a setting says a trusted front end sets it).
    if settings.trust_principal_header:
        return req.headers.get("x-ms-client-principal-id") or settings.default_caller
    return settings.default_caller


def _output(status: Any) -> dict[str, Any] | None:
    if status.runtime_status is None or status.runtime_status.name != "Completed":
        return None
    return _as_dict(status.output)


def _progress_timings(progress: dict[str, Any] | None) -> dict[str, Any]:
    return {"request_started_at": progress.get("started_at")} if progress else {}


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _status_url(req: func.HttpRequest, job_id: str, *, cancel: bool = False) -> str:
    base = str(req.url).split("?", 1)[0].rstrip("/")
    if cancel:
        return base.removesuffix("/cancel")
    if base.endswith(f"/{job_id}"):
        return base
    return f"{base}/{job_id}"


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


def _error(status: int, field: str, code: str, message: str) -> func.HttpResponse:
    body = {"error": {"code": code, "message": message, "field": field}}
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype=_JSON)
