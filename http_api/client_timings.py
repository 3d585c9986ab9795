"""POST /api/images/{id}/client-timings: a client's own download and render times for a job's
final image, kept in the job's metadata.json as its ``client`` section.

The web page (/api/ui) reports them once it has shown the image, so after the job ended and the
finish activity wrote metadata.json. The report is a read-modify-write of that blob under an
ETag condition: a write that meets another in between is refused by Blob, and the report reads
again (``MAX_WRITES`` times), so no field the other writer set is lost. Caller-checked as the
status endpoint is: another caller's job, or an unknown one, is the same 404.
"""

from __future__ import annotations

import asyncio

import azure.functions as func

from http_api.answers import json_answer
from http_api.caller import caller_of
from http_api.durable_jobs import DurableJobs
from http_api.errors import BLOB, JobNotEnded, JobNotFound, StoreUnavailable, blob_call
from http_api.handlers import STATUS_READ_S
from http_api.request_reading import (
    Clock,
    check_json_type,
    check_query,
    json_body,
    path_job_id,
    utc_now,
)
from rules.client_timings import StoredMetadata, parse_client_timings
from rules.dedup import caller_digest
from rules.settings import AppSettings
from rules.timing import iso_utc
from storage.protocol import JSON, AsyncImageStore, metadata_name

# Conditional writes tried before the report gives up with a 503 (try again): more than one
# only when something else rewrites metadata.json at the same moment.
MAX_WRITES = 3


async def report(
    req: func.HttpRequest,
    jobs: DurableJobs,
    settings: AppSettings,
    store: AsyncImageStore,
    now: Clock = utc_now,
) -> func.HttpResponse:
    """200 ``{id, client: {downloadMs, renderMs, reportedAt}}`` once stored; 400 naming the
    field, 404 for an unknown id or another caller's job, 409 ``job_not_ended`` while the job
    has no metadata.json, 503 when Blob fails."""
    check_query(req)
    job_id = path_job_id(req)
    # The body first: a report that breaks a rule costs no look at the store.
    check_json_type(req)
    timings = parse_client_timings(json_body(req), reported_at=iso_utc(now()))
    caller = caller_digest(settings.job_id_secret, caller_of(req, settings))
    name = metadata_name(job_id)
    async with asyncio.timeout(STATUS_READ_S):
        for _ in range(MAX_WRITES):
            with blob_call(job_id=job_id):
                found = await store.get_versioned(name=name)
            if found is None:
                raise await _why_absent(jobs, job_id, caller)
            raw, etag = found
            record = StoredMetadata.from_json(raw)
            if record.caller is None or record.caller != caller or record.job_id != job_id:
                raise JobNotFound(job_id)
            with blob_call(job_id=job_id):
                written = await store.put_if_unchanged(
                    name=name, data=record.with_client(timings), content_type=JSON, etag=etag
                )
            if written:
                return json_answer({"id": job_id, "client": timings.answer()}, 200)
    raise StoreUnavailable(
        "metadata.json kept changing under the report", job_id=job_id, component=BLOB
    )


async def _why_absent(jobs: DurableJobs, job_id: str, caller: str) -> Exception:
    """No metadata.json: the caller's running job (409), or no job of the caller's (404)."""
    instance = await jobs.look(job_id)
    if instance is None or instance.job.caller != caller:
        return JobNotFound(job_id)
    return JobNotEnded(job_id)
