"""Which job a start request gets: a new one, or the one it duplicates.

Ids are deterministic (rules.dedup): ``img-<HMAC of caller and key or body>-<generation>``.
The durable store settles races between concurrent submits: only one start can create an
instance, and the loser finds it and returns it. Generations count the jobs made under one id
base: a finished job stays where it is, the next distinct job takes the next generation, so no
finished job's status or images are ever overwritten.

A new id costs one status look (with the folder check beside it, concurrently) plus the start.
A keyed submit also reads the key's record (``keys/{id base}.json``, beside the first look) and
writes it after a new start: the key's answer outlives a purge of the durable history.
An id base with history is searched by doubling then bisecting: ≤ ~2·log2(n) looks, each
generation looked at once at most.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from http_api.durable_jobs import DurableJobs, JobInstance
from http_api.errors import JobNotFound, KeyConflict, NoFreeJobId, StoreUnavailable, blob_call
from http_api.status_view import current_state, read_ended
from rules.job_records import JobInput, JobState, KeyRecord
from rules.status import RUNNING_STATUSES
from rules.timing import epoch_ms
from storage.protocol import (
    JSON,
    AsyncImageStore,
    caller_index_name,
    key_record_name,
    metadata_name,
)

log = logging.getLogger("imagejobs.http")

# How many ids past the latest generation the starter tries (purged records in the way).
MAX_GENERATIONS = 100


@dataclass(frozen=True)
class Allocation:
    job_id: str
    state: JobState
    # True when the request duplicates a job that already existed (the answer is a replay).
    replayed: bool


@dataclass(frozen=True)
class _Look:
    instance: JobInstance | None
    # Whether a finished job's record (metadata.json) holds the id's folder: its durable
    # history is gone (purged), and the id is never used again.
    folder_taken: bool

    @property
    def free(self) -> bool:
        return self.instance is None and not self.folder_taken


class JobIds:
    """One start request's view of its id base; looks are cached, so none is made twice."""

    def __init__(
        self,
        jobs: DurableJobs,
        store: AsyncImageStore,
        candidate: Callable[[int], str],
        *,
        idempotency_window_s: float | None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._jobs = jobs
        self._store = store
        self._candidate = candidate
        # None: no Idempotency-Key, so a finished job never answers a new submit.
        self._window_s = idempotency_window_s
        self._now = now
        self._looks: dict[int, _Look] = {}

    async def allocate(self, orchestrator: str, job: JobInput) -> Allocation:
        """Start ``job`` under a free id, or return the job it duplicates.

        Raises KeyConflict (the key's job has another body), StoreUnavailable, NoFreeJobId.
        """
        if self._window_s is not None:
            # A keyed submit: the key's own record first (beside the first look), since the
            # durable history of the job it answered may have been purged.
            record, _ = await asyncio.gather(self._read_key_record(), self._look(1))
            if record is not None and self._within(record.created_at):
                answered = await self._answered(record, job)
                if answered is not None:
                    return answered
        return await self._allocate(orchestrator, job)

    async def _write_index(self, job_id: str, job: JobInput) -> None:
        """The job's entry in its caller's list, written beside its start: a start that loses a
        race leaves an entry the list skips (its created_at is not the job's). Best effort: the
        job stands without it, so a failure is logged, never answered."""
        index = caller_index_name(job.caller, epoch_ms(job.created_at), job_id)
        try:
            await self._store.put(name=index, data=b"", content_type=JSON)
        except Exception as exc:
            log.warning("job %s: list entry not written (%s)", job_id, type(exc).__name__)

    async def _write_key_record(self, job_id: str, job: JobInput) -> None:
        """The key's record, once the job's start is confirmed: created if absent, or replacing
        a record whose window has passed; never replacing a live one (a concurrent submit with
        the same key). Best effort, as the list entry."""
        record = KeyRecord(job_id=job_id, fingerprint=job.fingerprint, created_at=job.created_at)
        data = json.dumps(record.to_json()).encode()
        try:
            if await self._store.put_new(name=self._key_blob(), data=data, content_type=JSON):
                return
            existing = await self._read_key_record()
            if existing is None or not self._within(existing.created_at):
                await self._store.put(name=self._key_blob(), data=data, content_type=JSON)
        except Exception as exc:
            log.warning("job %s: key record not written (%s)", job_id, type(exc).__name__)

    async def _answered(self, record: KeyRecord, job: JobInput) -> Allocation | None:
        """The job the key's record names, as a replay; None when that job left no trace (it
        never finished and its history is gone): the key then starts a job as if new."""
        if record.fingerprint != job.fingerprint:
            raise KeyConflict(record.job_id)
        instance = await self._jobs.look(record.job_id)
        if instance is not None and instance.job.fingerprint != job.fingerprint:
            raise KeyConflict(record.job_id)  # the record and its job disagree: never guess
        if instance is not None:
            state = await current_state(self._store, instance)
            return Allocation(record.job_id, state, replayed=True)
        try:  # its history purged: its own record, read as a poll reads it
            ended = await read_ended(self._store, record.job_id, job.caller)
        except JobNotFound:
            return None
        return Allocation(record.job_id, ended.outcome.state, replayed=True)

    async def _allocate(self, orchestrator: str, job: JobInput) -> Allocation:
        first = max(1, await self._latest_generation())
        for generation in range(first, first + MAX_GENERATIONS):
            instance_id = self._candidate(generation)
            look = await self._look(generation)
            instance = look.instance
            if instance is None and look.folder_taken:
                continue
            if instance is None:
                # The job's records go beside its start, not after it: a start that loses a
                # race leaves an entry that the list skips (its created_at is not the job's).
                started, _ = await asyncio.gather(
                    self._jobs.start(orchestrator, instance_id, job),
                    self._write_index(instance_id, job),
                )
                if started and self._window_s is None:
                    return Allocation(instance_id, JobState.QUEUED, replayed=False)
                if started:
                    # Keyed: on Azure's backend two concurrent starts of one id can both
                    # report success while one runs; the job's own created_at tells whose.
                    instance = await self._jobs.look(instance_id)
                    if instance is not None and instance.job.created_at == job.created_at:
                        await self._write_key_record(instance_id, job)
                        return Allocation(instance_id, JobState.QUEUED, replayed=False)
                # Someone started it between our look and our start: it is theirs and ours.
                instance = instance or await self._jobs.look(instance_id)
                if instance is None:
                    raise StoreUnavailable("the start was refused", job_id=instance_id)
            if instance.runtime_status in RUNNING_STATUSES or self._within_window(instance):
                if instance.job.fingerprint != job.fingerprint:
                    raise KeyConflict(instance_id)
                state = await current_state(self._store, instance)
                return Allocation(instance_id, state, replayed=True)
        raise NoFreeJobId(self._candidate(first), MAX_GENERATIONS)

    async def _look(self, generation: int) -> _Look:
        if generation not in self._looks:
            instance_id = self._candidate(generation)
            instance, folder = await asyncio.gather(
                self._jobs.look(instance_id), self._folder_taken(instance_id)
            )
            self._looks[generation] = _Look(instance, folder)
        return self._looks[generation]

    async def _folder_taken(self, instance_id: str) -> bool:
        """Nothing is deleted: a concurrent submit may have started the job a moment ago and be
        writing there; what an unfinished earlier job left behind is older than the new job's
        ``created_at`` and ignored by its activity."""
        with blob_call(job_id=instance_id):
            return await self._store.get(name=metadata_name(instance_id)) is not None

    async def _latest_generation(self) -> int:
        """The highest generation in use (0 if none), by doubling then bisecting."""

        async def used(generation: int) -> bool:
            return not (await self._look(generation)).free

        if not await used(1):
            return 0
        low, high = 1, 2
        while await used(high):
            low, high = high, high * 2
        while high - low > 1:  # used(low) and not used(high)
            middle = (low + high) // 2
            if await used(middle):
                low = middle
            else:
                high = middle
        return low

    def _within_window(self, instance: JobInstance) -> bool:
        """A finished job answers a keyed submit within the idempotency window."""
        if self._window_s is None or instance.created_at is None:
            return False
        return (self._now() - instance.created_at).total_seconds() <= self._window_s

    def _within(self, created_at: str) -> bool:
        if self._window_s is None:
            return False
        created = datetime.fromisoformat(created_at)
        return (self._now() - created).total_seconds() <= self._window_s

    def _key_blob(self) -> str:
        return key_record_name(self._candidate(1).rsplit("-", 1)[0])

    async def _read_key_record(self) -> KeyRecord | None:
        with blob_call():
            raw = await self._store.get(name=self._key_blob())
        # An unreadable record is refused (RecordUnreadable: a 503), never taken for absent.
        return KeyRecord.from_json(raw) if raw is not None else None
