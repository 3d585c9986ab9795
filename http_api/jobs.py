"""POST /api/images and GET /api/images/{id}.

The starter validates by the model's rules before anything is started (400 naming the field),
starts the orchestration and answers 202 at once with the job id, a Location and Retry-After. The
status endpoint derives the state from the durable status, the orchestrator's custom status and
the activity's progress record in Blob, and hands out read-only, expiring links.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import azure.durable_functions as df
import azure.functions as func

import wiring
from orchestrators.image_job import ORCHESTRATOR
from rules.errors import RequestInvalid, SettingsInvalid
from rules.request import ImageJobRequest, parse_job_request
from rules.status import TERMINAL_STATES, JobState, derive_state, state_text
from storage.protocol import ImageStore, progress_name

bp = df.Blueprint()
log = logging.getLogger("imagejobs.http")

_JSON = "application/json"


@bp.route(route="images", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def start_image_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Any:
    try:
        body = req.get_json()
    except ValueError:
        return _error(400, "body", "invalid_json", "the body must be JSON")
    try:
        settings = wiring.settings()
        job = parse_job_request(body, settings)
    except RequestInvalid as exc:
        return func.HttpResponse(json.dumps(exc.body()), status_code=400, mimetype=_JSON)
    except SettingsInvalid as exc:
        log.error("cannot start a job: %s", exc)
        return _error(500, "settings", "settings_invalid", "the service is misconfigured")
    job_id = await client.start_new(ORCHESTRATOR, None, {"request": job.to_json()})
    status_url = _status_url(req, job_id)
    log.info("image job %s started on route %s", job_id, job.route)
    return func.HttpResponse(
        json.dumps({"id": job_id, "state": JobState.QUEUED.value, "statusUrl": status_url}),
        status_code=202,
        mimetype=_JSON,
        headers={"Location": status_url, "Retry-After": str(settings.status_retry_after_s)},
    )


@bp.route(route="images/{id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_image_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Any:
    job_id = req.route_params["id"]
    status = await client.get_status(job_id, show_input=True)
    if not status or status.runtime_status is None:
        return _error(404, "id", "not_found", f"no image job {job_id}")
    settings = wiring.settings()
    store = wiring.store()
    include_prompt = req.params.get("includePrompt", "").lower() == "true"
    answer = await asyncio.to_thread(
        status_answer,
        job_id,
        status.runtime_status.name,
        status.custom_status,
        status.output,
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


def status_answer(
    job_id: str,
    runtime_status: str,
    custom_status: Any,
    output: Any,
    job_input: Any,
    store: ImageStore,
    link_ttl_s: int,
    include_prompt: bool,
) -> dict[str, Any]:
    """The status JSON, from durable's view of the job and what the activity wrote to Blob."""
    custom = _as_dict(custom_status)
    result = _as_dict(output) if runtime_status == "Completed" else None
    progress = None
    if result is None:
        raw = store.get(name=progress_name(job_id))
        progress = json.loads(raw) if raw else None
    state = derive_state(runtime_status, custom, progress, result)
    failure = (result or {}).get("failure")
    if runtime_status == "Failed":
        failure = "returned_error"
    request = _as_dict(job_input).get("request") or {}
    shape = ImageJobRequest.from_json(request).shape() if request else {}
    if include_prompt and request:
        shape["prompt"] = request.get("prompt")

    def link(name: str) -> str:
        return store.read_link(name=name, ttl_s=link_ttl_s)

    previews = (result or {}).get("previews") or (progress or {}).get("previews") or []
    images = [
        {**{k: v for k, v in image.items() if k != "blob"}, "url": link(image["blob"])}
        for image in (result or {}).get("images", [])
    ]
    answer: dict[str, Any] = {
        "id": job_id,
        "state": state.value,
        "stateText": state_text(state, failure),
        "failure": failure if state is JobState.FAILED else None,
        "attempt": (result or {}).get("attempt") or custom.get("attempt") or 0,
        "route": shape.get("route"),
        "request": shape,
        "timings": (result or {}).get("timings") or _progress_timings(progress),
        "previews": [{"index": p["index"], "url": link(p["blob"])} for p in previews],
        "image": images[0] if images else None,
        "images": images,
        "metadataUrl": link(result["metadata_blob"]) if result else None,
        "error": (result or {}).get("error"),
        "retryCount": (result or {}).get("retry_count"),
        "costUsd": (result or {}).get("cost_usd"),
    }
    if state is JobState.WAITING_TO_RETRY:
        answer["retry"] = {"at": custom.get("retryAt"), "reason": custom.get("reason")}
    return answer


def _progress_timings(progress: dict[str, Any] | None) -> dict[str, Any]:
    return {"request_started_at": progress.get("started_at")} if progress else {}


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _status_url(req: func.HttpRequest, job_id: str) -> str:
    base = req.url.split("?", 1)[0].rstrip("/")
    return f"{base}/{job_id}"


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


def _error(status: int, field: str, code: str, message: str) -> func.HttpResponse:
    body = {"error": {"code": code, "message": message, "field": field}}
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype=_JSON)
