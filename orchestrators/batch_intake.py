"""The batch timer: every manifest dropped under ``incoming/`` in the batches container becomes
one batch, exactly once, across timer runs, restarts and several workers.

Each manifest's batch id is an HMAC of its blob name and ETag, so every run that sees the same
upload computes the same id. A claim is: copy the manifest to ``claimed/{id}.jsonl``, start the
batch orchestration under that id (a start of an id that exists is refused: the durable store
settles a race between two timers), then delete the upload. A crash between any two steps
leaves the upload in place, and the next run repeats the steps to the same end; a new upload
under the same name has a new ETag, so it is a new batch.

The schedule is the IMAGE_BATCH_SCHEDULE setting (six-field NCRONTAB, UTC; default every
minute), read when the app is indexed.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func

import wiring
from http_api.durable_jobs import DurableJobs
from orchestrators.image_batch import BATCH_ORCHESTRATOR
from rules.batch_records import BatchInput
from rules.batches import BatchMode, BatchPlan, batch_id_for, parse_manifest, planned
from rules.dedup import caller_digest
from rules.errors import RequestInvalid
from rules.settings import AppSettings
from rules.timing import iso_utc
from storage.protocol import INCOMING_PREFIX, BatchStore, manifest_name

bp = df.Blueprint()
log = logging.getLogger("imagejobs.batches")

# Manifests claimed per run (the next run takes the rest).
PER_RUN = 100


@bp.timer_trigger(
    schedule=wiring.settings().batches.schedule, arg_name="timer", run_on_startup=False
)
@bp.durable_client_input(client_name="client")
async def claim_batches(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    settings, store = wiring.settings(), await asyncio.to_thread(wiring.batch_store)
    found = await asyncio.to_thread(store.list_names, prefix=INCOMING_PREFIX, limit=PER_RUN)
    for name, etag in found:
        batch_id = await claim(name, etag, store, DurableJobs(client), settings)
        if batch_id is not None:
            log.info("batch %s claimed from %s", batch_id, name)


async def claim(
    name: str, etag: str, store: BatchStore, jobs: DurableJobs, settings: AppSettings
) -> str | None:
    """Claim one upload; its batch id, or None when it is gone (another run took it)."""
    caller = settings.batches.caller
    batch_id = batch_id_for(settings.job_id_secret, caller, f"blob:{name}:{etag}", b"")
    data = await asyncio.to_thread(store.get, name=name)
    if data is None:
        return None
    now = datetime.now(UTC)
    try:
        plan = planned(parse_manifest(data, settings), settings, now)
    except RequestInvalid as exc:  # the whole manifest: the batch reports it as a line error
        plan = BatchPlan(BatchMode.REALTIME, str(exc), 0, 1, 0.0, 0.0, None, None)
    claimed = manifest_name(batch_id)
    await asyncio.to_thread(store.put, name=claimed, data=data, content_type="application/jsonl")
    batch = BatchInput(
        batch_id=batch_id,
        caller=caller_digest(settings.job_id_secret, caller),
        created_at=iso_utc(now),
        manifest=claimed,
        plan=plan,
    )
    await jobs.start_batch(BATCH_ORCHESTRATOR, batch_id, batch.to_json())
    # Started, or started by an earlier run: the upload has done its part either way.
    if await jobs.look_batch(batch_id) is not None:
        await asyncio.to_thread(store.delete, name=name)
    return batch_id
