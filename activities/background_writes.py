"""Progress and previews go to Blob in the background, so a slow or absent store never holds up
the stream (the route would wait on us, and our read limits would run).

Progress is latest-wins, written by one task in order, so an older snapshot never lands after a
newer one; a preview is listed from the moment its upload starts and marked stored once it lands.
``drain`` waits, within a bound, for both at the end of an attempt.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from activities.blob_io import AsyncBlobs
from rules.job_records import ProgressRecord
from storage.protocol import JSON, BlobData

log = logging.getLogger("imagejobs.generate")


class BackgroundWrites:
    def __init__(self, blobs: AsyncBlobs, progress_blob: str) -> None:
        self._blobs = blobs
        self._progress_blob = progress_blob
        self._latest: bytes | None = None
        self._version = 0
        self._written = 0
        self._dirty = asyncio.Event()
        self._previews: set[asyncio.Task[None]] = set()
        # The put under way: a thread cannot be cancelled, so drain waits for it rather than
        # let an older snapshot land after whatever is written next.
        self._inflight: asyncio.Future[None] | None = None
        self._writer = asyncio.ensure_future(self._write_progress())

    def progress(self, record: ProgressRecord) -> None:
        """Queue ``record`` as it is now (a snapshot: later changes need another call)."""
        self._latest = json.dumps(record.to_json()).encode()
        self._version += 1
        self._dirty.set()

    def preview(
        self, name: str, data: BlobData, content_type: str, stored: Callable[[], None]
    ) -> None:
        """Store a preview; ``stored`` is called once it has landed (never if it did not)."""

        async def put() -> None:
            try:
                await self._blobs.put(name, data, content_type)
            except Exception:  # a lost preview is not a lost image
                return
            stored()

        task = asyncio.ensure_future(put())
        self._previews.add(task)
        task.add_done_callback(self._previews.discard)

    async def _write_progress(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            version, data = self._version, self._latest
            if data is None:
                continue
            self._inflight = asyncio.ensure_future(self._blobs.put(self._progress_blob, data, JSON))
            try:
                await asyncio.shield(self._inflight)
            except Exception as exc:  # pollers see older progress; the job goes on
                log.info("progress not stored (%s); pollers see older progress", type(exc).__name__)
                continue
            self._written = version

    async def drain(self, timeout_s: float) -> None:
        """Wait, within ``timeout_s``, for previews and the latest progress to be stored."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if self._previews:
            await asyncio.wait(set(self._previews), timeout=timeout_s)
        while self._written < self._version and loop.time() < deadline:
            self._dirty.set()
            await asyncio.sleep(0.05)
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)
        if self._inflight is not None and not self._inflight.done():
            # Waited for to the end (the store's own timeouts bound it): a put in a thread
            # cannot be cancelled, and landing after the attempt's final record it would undo
            # it (a re-run would then take a finished attempt for a possible send).
            await asyncio.wait({self._inflight})
