"""One attempt at a job: call the route, store previews as they come, check and store the image.

``run_attempt`` does the work with every outside world handed in (an httpx client, an
ImageStore, the clocks), so tests run it against the simulator and an in-memory store. It never
raises for an upstream or storage problem: it returns an AttemptResult whose ``failure`` says what
went wrong, for the orchestrator's retry policy.

Three promises it keeps:
- an image that arrived is never generated again because its upload failed: the upload is
  retried here, with backoff, within the upload budget;
- a job the caller cancelled never reaches the route if the cancel came first (the cancel marker
  is checked before the send), and a running stream is closed when the marker appears;
- an attempt whose worker died after the send (Azure runs activities at least once) is not
  silently sent again: the progress record says it was sent, so the re-run reports a post-send
  failure and the retry policy decides, and records, whether to resend.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from activities import upstream_errors
from activities.image_check import check_image
from activities.route_client import CallResult, build_call, call_route
from rules.cost import cost_usd
from rules.outcome import AttemptResult, Failure, FailureKind, Layer
from rules.request import ImageJobRequest
from rules.settings import AppSettings
from rules.timing import Clocks, iso_utc
from storage.protocol import (
    CONTENT_TYPES,
    JSON,
    ImageStore,
    cancel_name,
    image_name,
    kept_image_name,
    preview_name,
    progress_name,
)

log = logging.getLogger("imagejobs.generate")

UPLOAD_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# How long the end of an attempt waits for best-effort writes (previews, progress) to land.
DRAIN_S = 10.0


@dataclass
class AttemptInput:
    job_id: str
    attempt: int
    request: ImageJobRequest
    # What the starter decided to send, which may differ from the request (e.g. one partial
    # image instead of none behind a gateway that kills silent streams).
    stream: bool = True
    partial_images: int = 1
    send_notes: list[str] = field(default_factory=list)
    # The job's own created_at, which its records carry: a record in the folder without it is
    # left over from an earlier job under the same id (its history purged) and is ignored.
    job_created_at: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttemptInput:
        request = ImageJobRequest.from_json(data["request"])
        return cls(
            job_id=data["job_id"],
            attempt=data["attempt"],
            request=request,
            stream=data.get("stream", True),
            partial_images=data.get("partial_images", request.partial_images),
            send_notes=list(data.get("send_notes", [])),
            job_created_at=data.get("job_created_at"),
        )


@dataclass
class Seams:
    client: httpx.AsyncClient
    store: ImageStore
    auth: Callable[[], tuple[str, str] | None]
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    cancel_poll_s: float = 0.5


class _Blobs:
    """The store, called from the event loop without blocking it."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store

    async def put(self, name: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self.store.put, name=name, data=data, content_type=content_type)

    async def get(self, name: str) -> bytes | None:
        return await asyncio.to_thread(self.store.get, name=name)


class _BestEffortWrites:
    """Progress and previews go to Blob in the background, so a slow or absent store never
    holds up the stream (the route would wait on us, and our read limits would run). Progress
    is latest-wins, written by one task in order; a preview is listed once it is stored."""

    def __init__(self, blobs: _Blobs, progress_blob: str) -> None:
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

    def progress(self, snapshot: dict[str, Any]) -> None:
        self._latest = json.dumps(snapshot).encode()
        self._version += 1
        self._dirty.set()

    def preview(
        self, name: str, data: bytes, content_type: str, stored: Callable[[], None]
    ) -> None:
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
            await asyncio.wait({self._inflight}, timeout=max(0.1, deadline - loop.time()))


async def run_attempt(job: AttemptInput, settings: AppSettings, seams: Seams) -> AttemptResult:
    """One attempt; never raises for what can go wrong on the way (see the module docstring)."""
    attempt = _Attempt(job, settings, seams)  # a bad setting raises here: the activity fails
    try:
        return await attempt.run()
    except Exception as exc:
        # A fault of our own (a bug, an auth library failing): still an attempt result, so the
        # orchestrator decides and records, and nothing of the request leaks into its text.
        log.exception("attempt %s of job %s failed inside the activity", job.attempt, job.job_id)
        if attempt.stored_images is not None:
            # Every image is stored: the fault came after, and must not cost a new generation.
            return AttemptResult(
                attempt=job.attempt,
                ok=True,
                timings=attempt.clocks.record(),
                images=attempt.stored_images,
                previews=[dict(p) for p in attempt.previews],
                request_sent_as=attempt.sent_as,
            )
        failure = Failure(
            kind=FailureKind.INTERNAL_ERROR,
            layer=Layer.WORKER,
            message=f"the activity failed: {type(exc).__name__}",
            sent=attempt.progress["sent"],
        )
        return await attempt.finish(failure, None, [])


class _Attempt:
    """The state of one attempt and its exits; every exit goes through ``finish``."""

    def __init__(self, job: AttemptInput, settings: AppSettings, seams: Seams) -> None:
        self.job = job
        self.settings = settings
        self.seams = seams
        self.route = settings.route(job.request.route)
        self.blobs = _Blobs(seams.store)
        self.clocks = Clocks(started_at_iso=iso_utc(seams.now()), started=seams.monotonic())
        # Every preview is listed from the moment its upload starts (``stored`` says whether it
        # landed), so no blob of this attempt is ever unaccounted for.
        self.previews: list[dict[str, Any]] = []
        self.sent_as: dict[str, Any] = {
            "stream": job.stream,
            "partial_images": job.partial_images if job.stream else None,
            "notes": job.send_notes,
        }
        # Set once every image is stored: from then on the attempt has succeeded, whatever else.
        self.stored_images: list[dict[str, Any]] | None = None
        self.kept_images: list[dict[str, Any]] = []
        self.progress: dict[str, Any] = {
            "job_created_at": job.job_created_at,
            "attempt": job.attempt,
            "previews": self.previews,
            "final_received": False,
            "started_at": self.clocks.started_at_iso,
            "sent": False,
            "done": False,
        }
        self.progress_blob = progress_name(job.job_id, job.attempt)
        self.writes = _BestEffortWrites(self.blobs, self.progress_blob)
        self.arrivals = itertools.count()

    async def run(self) -> AttemptResult:
        job, request = self.job, self.job.request
        earlier = await _earlier_run(self.blobs, self.progress_blob, job)
        if earlier is not None:
            await self.writes.drain(0)
            return earlier
        if await self.cancel_requested():
            return await self.finish(upstream_errors.cancelled(sent=False), None, [])

        auth = await asyncio.to_thread(self.seams.auth)  # an Entra token fetch blocks
        call = build_call(
            self.route, request, stream=job.stream, partial_images=job.partial_images, auth=auth
        )
        # Written, and waited for, before the send: if this worker dies from here on, a re-run
        # knows the route may already be generating this attempt. Without the mark, no send.
        self.progress["sent"] = True
        self.progress["sent_at"] = iso_utc(self.seams.now())
        try:
            await self.blobs.put(self.progress_blob, json.dumps(self.progress).encode(), JSON)
        except Exception as exc:
            self.progress["sent"] = False
            failure = Failure(
                kind=FailureKind.STORAGE_FAILED,
                layer=Layer.STORAGE,
                message=f"could not record the attempt before sending it: {type(exc).__name__}",
                sent=False,
            )
            return await self.finish(failure, None, [])
        result = await call_route(
            self.seams.client,
            call,
            timeouts=self.settings.timeouts,
            clocks=self.clocks,
            on_partial=self.on_partial,
            on_final=self.on_final,
            stop_requested=self.cancel_requested,
            stop_poll_s=self.seams.cancel_poll_s,
            gateway_retry_header=self.route.gateway_retry_header,
            images_expected=request.n,
            monotonic=self.seams.monotonic,
        )
        if result.failure is not None:
            if result.images:
                await self.keep_images(result)
            return await self.finish(result.failure, result, [])

        checked: list[tuple[bytes, int, int]] = []
        for data in result.images:
            verdict = check_image(data, output_format=request.output_format, size=request.size)
            if isinstance(verdict, str):
                failure = Failure(
                    kind=FailureKind.IMAGE_INVALID,
                    layer=Layer.IMAGE_CHECK,
                    message=verdict,
                    sent=True,
                    http_status=result.http_status,
                    request_id=result.request_id,
                )
                return await self.finish(failure, result, [])
            checked.append((data, verdict[0], verdict[1]))
        return await self.store_images(checked, result)

    async def store_images(
        self, checked: list[tuple[bytes, int, int]], result: CallResult
    ) -> AttemptResult:
        request = self.job.request
        content_type = CONTENT_TYPES[request.output_format]
        self.clocks.upload_started = self.seams.monotonic()
        images: list[dict[str, Any]] = []
        for index, (data, width, height) in enumerate(checked):
            name = image_name(self.job.job_id, request.output_format, index, len(checked))
            error = await _upload_with_retries(
                self.blobs,
                name,
                data,
                content_type,
                budget_s=self.settings.timeouts.upload_s,
                seams=self.seams,
            )
            if error is not None:
                failure = Failure(
                    kind=FailureKind.STORAGE_FAILED,
                    layer=Layer.STORAGE,
                    message=f"storing {name} failed: {error}",
                    sent=True,
                    http_status=result.http_status,
                    request_id=result.request_id,
                )
                return await self.finish(failure, result, images)
            images.append(
                {
                    "blob": name,
                    "contentType": content_type,
                    "bytes": len(data),
                    "width": width,
                    "height": height,
                }
            )
        self.clocks.upload_done = self.seams.monotonic()
        self.stored_images = images
        # Recorded at once: a re-run of this attempt after a crash from here on returns these
        # images instead of sending the request again.
        self.progress["images"] = images
        self.writes.progress(self.progress)
        return await self.finish(None, result, images)

    async def keep_images(self, result: CallResult) -> None:
        """Store the images a failed attempt did receive, so none that was paid for is lost."""
        request = self.job.request
        content_type = CONTENT_TYPES[request.output_format]
        for index, data in enumerate(result.images):
            verdict = check_image(data, output_format=request.output_format, size=request.size)
            if isinstance(verdict, str):
                continue
            name = kept_image_name(self.job.job_id, request.output_format, self.job.attempt, index)
            error = await _upload_with_retries(
                self.blobs,
                name,
                data,
                content_type,
                budget_s=self.settings.timeouts.upload_s,
                seams=self.seams,
            )
            self.kept_images.append(
                {"blob": name, "contentType": content_type, "bytes": len(data), "stored": not error}
            )

    async def cancel_requested(self) -> bool:
        try:
            raw = await self.blobs.get(cancel_name(self.job.job_id))
        except Exception:  # storage down: keep going rather than guess a cancel
            return False
        if raw is None:
            return False
        return _same_job(json.loads(raw), self.job)

    async def on_partial(self, index: int, data: bytes) -> None:
        # Named by arrival, not by partial_image_index: with n > 1 every image has its own
        # partial 0, 1, ... and they must not overwrite each other.
        sequence = next(self.arrivals)
        request = self.job.request
        name = preview_name(self.job.job_id, request.output_format, self.job.attempt, sequence)
        preview = {
            "index": sequence,
            "partial_image_index": index,
            "blob": name,
            "bytes": len(data),
            "stored": False,
        }
        self.previews.append(preview)

        def stored() -> None:
            preview["stored"] = True
            self.writes.progress(self.progress)

        self.writes.preview(name, data, CONTENT_TYPES[request.output_format], stored)

    async def on_final(self) -> None:
        self.progress["final_received"] = True
        self.writes.progress(self.progress)

    def result_of(
        self, failure: Failure | None, call: CallResult | None, images: list[dict[str, Any]]
    ) -> AttemptResult:
        timings = self.clocks.record()
        if call is not None:
            timings.update(
                http_status=call.http_status,
                request_id=call.request_id,
                rate_limit=call.rate_limit,
                connection_reused=call.connection_reused,
                partials_received=call.partials,
                gateway_retries=call.gateway_retries,
            )
        return AttemptResult(
            attempt=self.job.attempt,
            ok=failure is None,
            timings=timings,
            failure=failure,
            images=images,
            previews=[dict(p) for p in self.previews],
            usage=call.usage if call else None,
            cost_usd=cost_usd(self.route.model, call.usage) if call else None,
            request_sent_as=self.sent_as,
            kept_images=list(self.kept_images),
        )

    async def finish(
        self, failure: Failure | None, call: CallResult | None, images: list[dict[str, Any]]
    ) -> AttemptResult:
        await self.writes.drain(DRAIN_S)
        result = self.result_of(failure, call, images)
        # The result is kept with the progress: a re-run of this attempt (Azure runs activities
        # at least once) returns it instead of sending the request again.
        self.progress["done"] = True
        self.progress["result"] = result.to_json()
        try:
            await self.blobs.put(self.progress_blob, json.dumps(self.progress).encode(), JSON)
        except Exception as exc:  # a re-run would then report a post-send failure: recorded
            log.info("final progress not stored (%s)", type(exc).__name__)
        return result


async def _earlier_run(
    blobs: _Blobs, progress_blob: str, job: AttemptInput
) -> AttemptResult | None:
    """What an earlier run of this very attempt came to, if one ran (activities run at least
    once): its recorded result when it finished; a post-send failure at the worker layer when it
    sent the request and never finished; None when there was no earlier run, or it never sent."""
    try:
        raw = await blobs.get(progress_blob)
    except Exception as exc:
        # Cannot tell whether an earlier run sent it: say so, and let the policy decide.
        return AttemptResult(
            attempt=job.attempt,
            ok=False,
            timings={},
            failure=Failure(
                kind=FailureKind.INTERNAL_ERROR,
                layer=Layer.STORAGE,
                message=f"could not read the attempt's record ({type(exc).__name__}); it may "
                "have been sent by an earlier run",
                sent=True,
            ),
        )
    if not raw:
        return None
    earlier = json.loads(raw)
    if not _same_job(earlier, job):
        return None  # an earlier job's, under the same id (its history purged)
    if earlier.get("done") and earlier.get("result"):
        return AttemptResult.from_json(earlier["result"])
    if earlier.get("images"):
        # It stored every image, then stopped before its final record.
        return AttemptResult(
            attempt=job.attempt,
            ok=True,
            timings={"request_started_at": earlier.get("started_at")},
            images=list(earlier["images"]),
            previews=list(earlier.get("previews") or []),
            request_sent_as={"stream": job.stream, "partial_images": job.partial_images},
        )
    if not earlier.get("sent"):
        return None
    failure = Failure(
        kind=FailureKind.CONNECTION_LOST,
        layer=Layer.WORKER,
        message=(
            f"the worker running attempt {job.attempt} stopped after sending it "
            f"(at {earlier.get('sent_at')}); the route may have generated it"
        ),
        sent=True,
    )
    # The earlier run's previews are this attempt's: listed, so none is left unaccounted.
    return AttemptResult(
        attempt=job.attempt,
        ok=False,
        timings={"request_started_at": earlier.get("started_at")},
        failure=failure,
        previews=list(earlier.get("previews") or []),
        request_sent_as={"stream": job.stream, "partial_images": job.partial_images},
    )


def _same_job(record: dict[str, Any], job: AttemptInput) -> bool:
    """Whether a record in the job's folder was written for this job, not for an earlier one
    under the same id: both carry the job's own ``created_at`` (equality, not order, so clocks
    that differ between hosts do not matter)."""
    return job.job_created_at is None or record.get("job_created_at") == job.job_created_at


async def _upload_with_retries(
    blobs: _Blobs, name: str, data: bytes, content_type: str, *, budget_s: float, seams: Seams
) -> str | None:
    """None once stored; else the last error's type, after the budget is spent."""
    deadline = seams.monotonic() + budget_s
    last = ""
    for wait in (0.0, *UPLOAD_BACKOFF_S):
        if wait:
            if seams.monotonic() + wait > deadline:
                break
            await seams.sleep(wait)
        try:
            await blobs.put(name, data, content_type)
        except Exception as exc:  # every storage error is retried the same way
            last = type(exc).__name__
            continue
        return None
    return last or "upload budget spent"
