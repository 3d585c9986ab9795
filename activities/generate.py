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
from rules.timing import Clocks
from storage.protocol import (
    CONTENT_TYPES,
    ImageStore,
    cancel_name,
    image_name,
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
            try:
                await self._blobs.put(self._progress_blob, data, _JSON)
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


async def run_attempt(job: AttemptInput, settings: AppSettings, seams: Seams) -> AttemptResult:
    route = settings.route(job.request.route)
    request = job.request
    blobs = _Blobs(seams.store)
    clocks = Clocks(started_at_iso=_iso(seams.now()), started=seams.monotonic())
    previews: list[dict[str, Any]] = []
    sent_as: dict[str, Any] = {
        "stream": job.stream,
        "partial_images": job.partial_images if job.stream else None,
        "notes": job.send_notes,
    }
    progress: dict[str, Any] = {
        "attempt": job.attempt,
        "previews": previews,
        "final_received": False,
        "started_at": clocks.started_at_iso,
        "sent": False,
        "done": False,
    }

    writes = _BestEffortWrites(blobs, progress_name(job.job_id))

    async def cancel_requested() -> bool:
        try:
            return await blobs.get(cancel_name(job.job_id)) is not None
        except Exception:  # storage down: keep going rather than guess a cancel
            return False

    def result_of(
        failure: Failure | None, call: CallResult | None, images: list[dict[str, Any]]
    ) -> AttemptResult:
        timings = clocks.record()
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
            attempt=job.attempt,
            ok=failure is None,
            timings=timings,
            failure=failure,
            images=images,
            previews=previews,
            usage=call.usage if call else None,
            cost_usd=cost_usd(route.model, call.usage) if call else None,
            request_sent_as=sent_as,
        )

    async def finish(
        failure: Failure | None, call: CallResult | None, images: list[dict[str, Any]]
    ) -> AttemptResult:
        progress["done"] = True
        writes.progress(progress)
        await writes.drain(DRAIN_S)
        return result_of(failure, call, images)

    earlier = await _earlier_run(blobs, job)
    if earlier is not None:
        failure, earlier_previews = earlier
        # The earlier run's previews are this attempt's: listed, so none is left unaccounted.
        previews.extend(earlier_previews)
        await writes.drain(0)
        return result_of(failure, None, [])
    if await cancel_requested():
        return await finish(upstream_errors.cancelled(sent=False), None, [])

    arrivals = itertools.count()

    async def on_partial(index: int, data: bytes) -> None:
        # Named by arrival, not by partial_image_index: with n > 1 every image has its own
        # partial 0, 1, ... and they must not overwrite each other.
        sequence = next(arrivals)
        name = preview_name(job.job_id, request.output_format, job.attempt, sequence)

        def stored() -> None:
            previews.append(
                {"index": sequence, "partial_image_index": index, "blob": name, "bytes": len(data)}
            )
            writes.progress(progress)

        writes.preview(name, data, CONTENT_TYPES[request.output_format], stored)

    async def on_final() -> None:
        progress["final_received"] = True
        writes.progress(progress)

    call = build_call(
        route, request, stream=job.stream, partial_images=job.partial_images, auth=seams.auth()
    )
    # Written, and waited for, before the send: if this worker dies from here on, a re-run knows
    # the route may already be generating this attempt. If storage is down now, the image
    # matters more: send anyway, and say that the mark is missing.
    progress["sent"] = True
    progress["sent_at"] = _iso(seams.now())
    try:
        await blobs.put(progress_name(job.job_id), json.dumps(progress).encode(), _JSON)
    except Exception:
        sent_as["sent_mark_missing"] = True
    result = await call_route(
        seams.client,
        call,
        timeouts=settings.timeouts,
        clocks=clocks,
        on_partial=on_partial,
        on_final=on_final,
        stop_requested=cancel_requested,
        stop_poll_s=seams.cancel_poll_s,
        gateway_retry_header=route.gateway_retry_header,
        monotonic=seams.monotonic,
    )
    if result.failure is not None:
        return await finish(result.failure, result, [])

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
            return await finish(failure, result, [])
        checked.append((data, verdict[0], verdict[1]))

    clocks.upload_started = seams.monotonic()
    images: list[dict[str, Any]] = []
    for index, (data, width, height) in enumerate(checked):
        name = image_name(job.job_id, request.output_format, index, len(checked))
        content_type = CONTENT_TYPES[request.output_format]
        error = await _upload_with_retries(
            blobs, name, data, content_type, budget_s=settings.timeouts.upload_s, seams=seams
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
            return await finish(failure, result, [])
        images.append(
            {
                "blob": name,
                "contentType": content_type,
                "bytes": len(data),
                "width": width,
                "height": height,
            }
        )
    clocks.upload_done = seams.monotonic()
    return await finish(None, result, images)


async def _earlier_run(
    blobs: _Blobs, job: AttemptInput
) -> tuple[Failure, list[dict[str, Any]]] | None:
    """A post-send failure (and the previews it stored) when an earlier run of this very attempt
    sent it and never finished."""
    try:
        raw = await blobs.get(progress_name(job.job_id))
    except Exception:  # cannot tell: proceed as a first run
        return None
    if not raw:
        return None
    earlier = json.loads(raw)
    if earlier.get("attempt") != job.attempt or not earlier.get("sent") or earlier.get("done"):
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
    return failure, list(earlier.get("previews") or [])


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


_JSON = "application/json"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
