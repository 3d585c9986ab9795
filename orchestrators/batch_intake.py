"""The batch timer: every manifest dropped under ``incoming/`` in the batches container becomes
one batch, exactly once, across timer runs, restarts and several workers.

Each manifest's batch id is an HMAC of its blob name and ETag, so every run that sees the same
upload computes the same id. A claim is: unless a batch of that id exists (running or ended),
copy the manifest to ``claimed/{id}.jsonl`` and start the batch orchestration under that id (a
start of an id that is running is refused: the durable store settles a race between two
timers); then delete the upload. A crash between any two steps leaves the upload in place, and
the next run repeats the steps to the same end; a new upload under the same name has a new
ETag, so it is a new batch, and the delete is conditional on the ETag listed (If-Match): an
upload replaced between the list and the delete is kept for the next run, never lost. An
upload that cannot be claimed now (its delete refused, say) stays for the next run and holds up
no other.

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
from rules.batch_records import BatchDecided, BatchInput
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
    await claim_all(store, DurableJobs(client), settings)


async def claim_all(store: BatchStore, jobs: DurableJobs, settings: AppSettings) -> list[str]:
    """Claim the uploads under ``incoming/`` (up to PER_RUN); the ids of the batches claimed."""
    found = await asyncio.to_thread(store.list_names, prefix=INCOMING_PREFIX, limit=PER_RUN)
    claimed = []
    for name, etag in found:
        try:
            batch_id = await claim(name, etag, store, jobs, settings)
        except Exception:
            # One upload that cannot be claimed now (its delete refused, a read that failed)
            # must not hold up the others: the next run tries it again.
            log.exception("claiming %s failed; the next run tries again", name)
            continue
        if batch_id is not None:
            log.info("batch %s claimed from %s", batch_id, name)
            claimed.append(batch_id)
    return claimed


async def claim(
    name: str, etag: str, store: BatchStore, jobs: DurableJobs, settings: AppSettings
) -> str | None:
    """Claim one upload; its batch id, or None when it is gone (another run took it)."""
    caller = settings.batches.caller
    batch_id = batch_id_for(settings.job_id_secret, caller, f"blob:{name}:{etag}", b"")
    # Looked up first: a start of an id that exists is refused only while that instance runs;
    # one that has ended is replaced (the Durable extension's default, and devhost's), which
    # would run a batch again that an earlier run claimed and that finished before its upload
    # could be deleted.
    if await jobs.look_batch(batch_id) is None:
        # The bytes of the upload listed, never a newer one under the same name (that one has
        # another ETag, so another batch id: the next run claims it).
        data = await asyncio.to_thread(store.get_if_unchanged, name=name, etag=etag)
        if data is None:
            return None
        await _start(batch_id, data, store, jobs, settings)
    # Started, or started by an earlier run: the upload has done its part either way. Deleted
    # only while it is still the upload listed (If-Match on its ETag): one uploaded again under
    # the same name since is a new batch, left for the next run.
    if await jobs.look_batch(batch_id) is not None:
        deleted = await asyncio.to_thread(store.delete_if_unchanged, name=name, etag=etag)
        if not deleted:
            log.info("%s was uploaded again since it was listed; the next run claims it", name)
    return batch_id


async def _start(
    batch_id: str, data: bytes, store: BatchStore, jobs: DurableJobs, settings: AppSettings
) -> None:
    """Keep the manifest under the batch's id and start the batch (refused when a concurrent
    run started it first)."""
    now = datetime.now(UTC)
    try:
        plan = planned(parse_manifest(data, settings), settings, now)
    except RequestInvalid as exc:  # the whole manifest: the batch reports it as a line error
        plan = BatchPlan(BatchMode.REALTIME, str(exc), 0, 1, 0.0, 0.0, None, None)
    claimed = manifest_name(batch_id)
    await asyncio.to_thread(store.put, name=claimed, data=data, content_type="application/jsonl")
    batch = BatchInput(
        batch_id=batch_id,
        caller=caller_digest(settings.job_id_secret, settings.batches.caller),
        created_at=iso_utc(now),
        manifest=claimed,
        plan=plan,
        decided=BatchDecided.from_settings(settings),
    )
    await jobs.start_batch(BATCH_ORCHESTRATOR, batch_id, batch.to_json())
