"""The batch endpoints: start a batch from a manifest (or only quote it), read its progress, and
cancel it. A batch is one durable orchestration (orchestrators.image_batch) whose items are
normal image jobs.

    POST /api/batches[?dryRun=true&deadline=...&route=...]   body: JSONL, or {"items": [...]}
    GET  /api/batches/{id}
    POST /api/batches/{id}/cancel

The batch id is an HMAC of the caller and the Idempotency-Key (or the manifest's digest), so the
same manifest posted twice by one caller is one batch, and an id tells nothing of the manifest.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import azure.functions as func

import wiring
from http_api.answers import json_answer
from http_api.caller import caller_of
from http_api.durable_jobs import DurableJobs
from http_api.errors import BatchNotFound, StoreUnavailable, UnsupportedMediaType, blob_call
from http_api.request_reading import bool_param, check_query, declared_type
from orchestrators.image_batch import BATCH_ORCHESTRATOR, CANCEL_EVENT
from rules.batch_records import TERMINAL_BATCH_STATES, BatchDecided, BatchInput, BatchState
from rules.batches import (
    OPTIONS,
    BatchMode,
    BatchOptions,
    BatchPlan,
    Manifest,
    ManifestInvalid,
    batch_id_for,
    check_deadline_ahead,
    parse_deadline,
    parse_manifest,
    parse_route,
    planned,
)
from rules.dedup import caller_digest, check_key
from rules.errors import RequestInvalid
from rules.json_text import JsonRefused, strict_json
from rules.settings import AppSettings
from rules.timing import iso_utc
from storage.protocol import JSON, AsyncImageStore, batch_cancel_name, manifest_name

BATCH_ID = re.compile(r"bat-[0-9a-f]{24}")
JSONL_TYPES = ("application/jsonl", "application/x-ndjson", "application/json-seq", "text/plain")
# What POST /api/batches takes, as its 415 names it.
BATCH_TYPES = (JSON, *JSONL_TYPES)
# The query parameters of POST /api/batches.
START_PARAMETERS = ("dryRun", "deadline", "route")
# Line errors shown in an answer (the report has every one).
SHOWN_ERRORS = 20
READ_S = 10.0


def manifest_body(req: func.HttpRequest) -> bytes:
    """The manifest from the body: JSON Lines as they are, or a JSON object's ``items`` (each
    a line's object) written as JSON Lines."""
    declared = declared_type(req)
    body = req.get_body()
    if declared in JSONL_TYPES:
        return body
    if declared and declared != JSON:
        raise UnsupportedMediaType(declared, accepts=BATCH_TYPES)
    try:
        value = strict_json(body)
    except JsonRefused as exc:
        raise RequestInvalid("body", "invalid_json", f"the body must be JSON: {exc}") from None
    except (ValueError, RecursionError):
        raise RequestInvalid(
            "body", "invalid_json", "the body must be JSON or JSON Lines"
        ) from None
    if not isinstance(value, dict) or not isinstance(value.get("items"), list):
        raise RequestInvalid("items", "invalid_type", "a JSON body holds the lines as items")
    # A misspelt option (``deadlne``) would otherwise be dropped, and the batch run without it.
    unknown = sorted(set(value) - {"items", *OPTIONS})
    if unknown:
        raise RequestInvalid(unknown[0], "unknown_field", f"unknown field {unknown[0]!r}")
    lines = []
    options = {k: value[k] for k in OPTIONS if k in value}
    if options:
        lines.append(json.dumps({"batch": options}))
    lines += [json.dumps(item) for item in value["items"]]
    return ("\n".join(lines) + "\n").encode()


def _options(req: func.HttpRequest, settings: AppSettings) -> BatchOptions:
    return BatchOptions(
        deadline=parse_deadline(req.params.get("deadline")),
        route=parse_route(req.params.get("route"), settings),
    )


def batch_url(req: func.HttpRequest, batch_id: str, public_base_url: str | None) -> str:
    if public_base_url:
        base = f"{public_base_url.rstrip('/')}/batches"
    else:
        path = str(req.url).split("?", 1)[0].rstrip("/")
        base = path[: path.rindex("/batches") + len("/batches")] if "/batches" in path else path
    url = f"{base}/{batch_id}"
    code = req.params.get("code")
    # Encoded as status_url encodes it: the URL goes out in the Location header too.
    return f"{url}?{urlencode({'code': code})}" if code else url


def _plan_answer(plan: BatchPlan, manifest: Manifest | None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "mode": plan.mode.value,
        "reason": plan.reason,
        "items": plan.items,
        "invalid": plan.invalid,
        "quote": {
            "realtimeUsd": plan.realtime_usd,
            "batchApiUsd": plan.batch_api_usd,
            "chosenUsd": plan.batch_api_usd
            if plan.mode is BatchMode.BATCH_API
            else plan.realtime_usd,
            "realtimeS": plan.realtime_s,
        },
        "deadline": iso_utc(plan.deadline) if plan.deadline else None,
    }
    if manifest is not None:
        answer["lineErrors"] = [
            {
                "line": error.line,
                "customId": error.custom_id,
                "field": error.field,
                "code": error.code,
                "message": error.message,
            }
            for error in manifest.errors[:SHOWN_ERRORS]
        ]
    return answer


async def start_batch(
    req: func.HttpRequest,
    jobs: DurableJobs,
    settings: AppSettings,
    store: AsyncImageStore,
) -> func.HttpResponse:
    """POST /api/batches: 202 with the batch's id and plan; ``?dryRun=true``: 200 with the plan
    and both quotes, nothing started. A bad line is reported, the rest runs."""
    # The query first: a misspelt or unclear dryRun must never start a real, billed batch.
    check_query(req, *START_PARAMETERS)
    dry_run = bool_param(req, "dryRun")
    data = manifest_body(req)
    manifest = parse_manifest(data, settings, options=_options(req, settings))
    if not manifest.items:
        raise ManifestInvalid("manifest", "no_valid_line", "no line of the manifest is valid")
    now = datetime.now(UTC)
    check_deadline_ahead(manifest.options.deadline, now)
    plan = planned(manifest, settings, now)
    if dry_run:
        return json_answer({"dryRun": True, **_plan_answer(plan, manifest)}, 200)
    raw_key = req.headers.get("idempotency-key")
    key = check_key(raw_key) if raw_key is not None else None
    caller = caller_of(req, settings)
    batch_id = batch_id_for(settings.job_id_secret, caller, key, data)
    batch = BatchInput(
        batch_id=batch_id,
        caller=caller_digest(settings.job_id_secret, caller),
        created_at=iso_utc(now),
        manifest=manifest_name(batch_id),
        plan=plan,
        decided=BatchDecided.from_settings(settings),
    )
    async with asyncio.timeout(READ_S):
        existing = await jobs.look_batch(batch_id)
        replayed = existing is not None
        if existing is None:
            with blob_call():
                batches = await asyncio.to_thread(wiring.batch_store)
                await asyncio.to_thread(
                    batches.put, name=batch.manifest, data=data, content_type="application/jsonl"
                )
            started = await jobs.start_batch(BATCH_ORCHESTRATOR, batch_id, batch.to_json())
            if not started and await jobs.look_batch(batch_id) is None:
                # Refused, yet not there: the host failed, not a race with another start.
                raise StoreUnavailable("the batch could not be started")
            replayed = not started
    url = batch_url(req, batch_id, settings.public_base_url)
    headers = {"Location": url, "Retry-After": "5"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    answer = {"id": batch_id, "statusUrl": url, **_plan_answer(plan, manifest)}
    return json_answer(answer, 202, headers=headers)


def _path_batch_id(req: func.HttpRequest) -> str:
    batch_id = str(req.route_params.get("id", ""))
    if not BATCH_ID.fullmatch(batch_id):
        raise BatchNotFound(batch_id)
    return batch_id


async def get_batch(
    req: func.HttpRequest,
    jobs: DurableJobs,
    settings: AppSettings,
    store: AsyncImageStore,
) -> func.HttpResponse:
    """GET /api/batches/{id}: counts per state, progress, ETA, cost so far and quoted; once it
    ended, links to its report (JSONL and CSV)."""
    check_query(req)
    batch_id = _path_batch_id(req)
    caller = caller_digest(settings.job_id_secret, caller_of(req, settings))
    async with asyncio.timeout(READ_S):
        found = await jobs.look_batch(batch_id)
    if found is None or found.batch.caller != caller:
        raise BatchNotFound(batch_id)
    plan = found.batch.plan
    status = found.status
    outcome = found.outcome
    if outcome is not None:
        state, counts = outcome.state, outcome.counts
    elif found.runtime_status in ("Failed", "Terminated"):
        state, counts = BatchState.FAILED, status.counts if status else found.batch.counts
    else:
        state = status.state if status else BatchState.SPLITTING
        counts = status.counts if status else found.batch.counts
    answer: dict[str, Any] = {
        "id": batch_id,
        "state": state.value,
        "mode": plan.mode.value,
        "reason": plan.reason,
        "counts": counts.by_state(),
        "progress": round(counts.done / counts.items, 4) if counts.items else None,
        "eta": status.eta if status and state not in TERMINAL_BATCH_STATES else None,
        "costUsd": round(counts.cost_usd, 6),
        "quotedUsd": plan.batch_api_usd if plan.mode is BatchMode.BATCH_API else plan.realtime_usd,
        "quote": _plan_answer(plan, None)["quote"],
        "upstreamStatus": status.upstream_status if status else None,
        "failureReason": outcome.reason if outcome is not None else None,
        "createdAt": found.batch.created_at,
        "report": None,
    }
    if outcome is not None and outcome.report_jsonl and outcome.report_csv:
        batches = await asyncio.to_thread(wiring.batch_store)
        ttl = settings.storage.link_ttl_s
        answer["report"] = {
            "jsonl": batches.read_link(name=outcome.report_jsonl, ttl_s=ttl),
            "csv": batches.read_link(name=outcome.report_csv, ttl_s=ttl),
        }
    ended = state in TERMINAL_BATCH_STATES
    headers = {} if ended else {"Retry-After": "5"}
    return json_answer(answer, 200 if ended else 202, headers=headers)


async def cancel_batch(
    req: func.HttpRequest,
    jobs: DurableJobs,
    settings: AppSettings,
    store: AsyncImageStore,
) -> func.HttpResponse:
    """POST /api/batches/{id}/cancel: items not yet started never reach the route; running
    ones stop. 202 while it winds down, 200 with its final state for a batch that had ended."""
    check_query(req)
    batch_id = _path_batch_id(req)
    caller = caller_digest(settings.job_id_secret, caller_of(req, settings))
    async with asyncio.timeout(READ_S):
        found = await jobs.look_batch(batch_id)
        if found is None or found.batch.caller != caller:
            raise BatchNotFound(batch_id)
        if found.outcome is not None:
            return json_answer({"id": batch_id, "state": found.outcome.state.value}, 200)
        if found.runtime_status in ("Failed", "Terminated"):
            # As GET answers it: an orchestration that ended without its outcome failed.
            return json_answer({"id": batch_id, "state": BatchState.FAILED.value}, 200)
        marker = json.dumps({"batch_id": batch_id, "at": iso_utc(datetime.now(UTC))}).encode()
        with blob_call():
            # Written first: a running item's attempt sees it and stops its stream.
            await store.put(name=batch_cancel_name(batch_id), data=marker, content_type=JSON)
        await jobs.raise_event(batch_id, CANCEL_EVENT)
    url = batch_url(req, batch_id, settings.public_base_url)
    return json_answer({"id": batch_id, "state": "cancelling", "statusUrl": url}, 202)
