"""GET /api/images/{id}/evidence: the job's escalation packet (rules.evidence builds it).

Caller-checked as the status is: another caller's job, or an unknown id, is the same 404. The
packet is made from the durable status and, once the job ended, its metadata.json; a job whose
durable history was purged answers from metadata.json alone (which keeps its caller's digest).
What the host is made of (App Service's environment variables, whether devhost runs the app)
is read here, at the edge; the packet itself is a pure function of records.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
from collections.abc import Mapping

import azure.functions as func

from http_api.answers import json_answer
from http_api.caller import caller_of
from http_api.durable_jobs import DurableJobs, JobInstance
from http_api.errors import JobNotFound, blob_call
from http_api.request_reading import Clock, check_query, path_job_id, utc_now
from http_api.status_view import current_state
from rules.dedup import caller_digest
from rules.evidence import JobFacts, JobMetadata, build_evidence, infrastructure
from rules.job_records import JobState
from rules.outcome import SentAs
from rules.redaction import Secrets
from rules.settings import AppSettings, RouteSettings
from rules.timing import iso_utc
from storage.protocol import AsyncImageStore, metadata_name

# As a status poll: storage that does not answer within this is a 503, not a hang (seconds).
EVIDENCE_READ_S = 5.0


async def get_evidence(
    req: func.HttpRequest,
    jobs: DurableJobs,
    settings: AppSettings,
    store: AsyncImageStore,
    now: Clock = utc_now,
    env: Mapping[str, str] = os.environ,
) -> func.HttpResponse:
    """200 with the packet (``complete`` false while the job runs); 404 for an unknown id or
    another caller's job; 503 while the job store or Blob fails."""
    check_query(req)
    job_id = path_job_id(req)
    caller = caller_digest(settings.job_id_secret, caller_of(req, settings))
    async with asyncio.timeout(EVIDENCE_READ_S):
        instance = await jobs.look(job_id)
        if instance is not None and instance.job.caller == caller:
            facts = await _facts(store, instance)
            metadata = None
            blob = instance.output.metadata_blob if instance.output else None
            if blob is not None:
                metadata = await _metadata(store, job_id, blob)
            prompt: str | None = instance.job.request.prompt
        else:
            # Purged history (or another caller's job, which its record then refuses too).
            metadata = await _metadata(store, job_id, metadata_name(job_id))
            if metadata is None or metadata.caller is None or metadata.caller != caller:
                raise JobNotFound(job_id)
            facts, prompt = JobFacts.from_metadata(metadata), None
    route = settings.routes.get(facts.route)
    packet = build_evidence(
        facts,
        metadata,
        route=route,
        infrastructure=infrastructure(
            settings,
            route,
            env=env,
            devhost="devhost" in sys.modules,
            python=platform.python_version(),
        ),
        secrets=Secrets.of(_auth(route, env), prompt),
        generated_at=iso_utc(now()),
    )
    return json_answer(packet.to_json(), 200, headers={"Cache-Control": "no-store"})


async def _facts(store: AsyncImageStore, instance: JobInstance) -> JobFacts:
    job = instance.job
    state = await current_state(store, instance)
    output = instance.output
    if instance.runtime_status == "Failed":
        failure: str | None = "internal_error"
    elif output is not None:
        failure = output.failure
    else:
        custom = instance.custom_status
        failure = custom.failure if custom else None
    return JobFacts(
        job_id=instance.instance_id,
        state=state,
        failure=failure if state is JobState.FAILED else None,
        created_at=instance.created_iso,
        updated_at=instance.updated_iso,
        request=job.request.shape(),
        route=job.request.route,
        endpoint="edits" if job.request.is_edit else "generations",
        sent_as=SentAs(
            stream=job.send.stream,
            partial_images=job.send.partial_images,
            notes=tuple(job.send.notes),
        ),
        priority=job.priority.value,
        outcome=output,
    )


async def _metadata(store: AsyncImageStore, job_id: str, name: str) -> JobMetadata | None:
    with blob_call(job_id=job_id):
        raw = await store.get(name=name)
    return None if raw is None else JobMetadata.from_json(raw)


def _auth(route: RouteSettings | None, env: Mapping[str, str]) -> tuple[str, str] | None:
    """The route's key as the attempt sent it, so that an echo of it is taken out here too;
    None for Entra ID (a token is never fetched for this) or a route without auth."""
    if route is None or route.auth != "key" or not route.key_setting:
        return None
    key = env.get(route.key_setting, "")
    return ("api-key", key) if key else None
