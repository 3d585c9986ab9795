"""One attempt at a job: call the route, store previews as they come, check and store the image.

``run_attempt`` does the work with every outside world handed in (an httpx client, an
ImageStore, the clocks), so tests run it against the simulator and an in-memory store. It never
raises for an upstream or storage problem: it returns an AttemptResult whose ``failure`` says what
went wrong, for the orchestrator's retry policy.

Three promises it keeps:
- an image that arrived is never generated again because its upload failed: the upload is
  retried here, with backoff, within the upload budget (activities.blob_io);
- a job the caller cancelled never reaches the route if the cancel came first (the cancel marker
  is checked before the send), and a running stream is closed when the marker appears;
- an attempt whose worker died after the send is not silently sent again (activities.rerun): the
  progress record says it was sent before the request leaves, and without that mark, no send.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from activities import upstream_errors
from activities.background_writes import BackgroundWrites
from activities.blob_io import AsyncBlobs, upload_within_budget, within_budget
from activities.image_check import check_image
from activities.image_stream import ImageBuffer
from activities.inputs import InputFile, InputsUnavailable, read_inputs
from activities.rerun import earlier_run, same_job
from activities.route_client import CallResult, build_call, call_route
from rules.cost import AttemptCost, attempt_cost
from rules.job_records import AttemptInput, CancelMarker, ProgressRecord
from rules.outcome import (
    AttemptResult,
    Failure,
    FailureKind,
    KeptImage,
    Layer,
    Preview,
    SentAs,
    StoredImage,
)
from rules.records import RecordUnreadable
from rules.redaction import Secrets
from rules.route_model import cool_down_s
from rules.route_records import CoolDown, SlotClaim
from rules.settings import AppSettings
from rules.timing import Clocks, iso_utc
from storage.protocol import (
    CONTENT_TYPES,
    JSON,
    ImageStore,
    batch_cancel_name,
    cancel_name,
    image_name,
    kept_image_name,
    preview_name,
    progress_name,
    route_cool_down_name,
    route_slot_name,
)

log = logging.getLogger("imagejobs.generate")

# How long the end of an attempt waits for best-effort writes (previews, progress) to land.
DRAIN_S = 10.0
# The longest an attempt waits for its admitted send time (the governor admits a second ahead).
MAX_SLOT_WAIT_S = 2.0


@dataclass
class Seams:
    """The attempt's outside worlds: the route's HTTP client, Blob, the route's auth header
    (called once per attempt, off the loop: an Entra token fetch blocks) and the clocks."""

    client: httpx.AsyncClient
    store: ImageStore
    auth: Callable[[], tuple[str, str] | None]
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    cancel_poll_s: float = 0.5


async def run_attempt(job: AttemptInput, settings: AppSettings, seams: Seams) -> AttemptResult:
    """One attempt; never raises for what can go wrong on the way (see the module docstring).

    Raises SettingsInvalid for a bad setting (the activity fails: nothing was sent).
    """
    attempt = _Attempt(job, settings, seams)
    try:
        return await attempt.run()
    except Exception as exc:
        # A fault of our own (a bug, an auth library failing): still an attempt result, so the
        # orchestrator decides and records, and nothing of the request leaks into its text.
        log.exception("attempt %s of job %s failed inside the activity", job.attempt, job.job_id)
        if attempt.progress.images is not None:
            # Every image is stored: the fault came after, and must not cost a new generation.
            try:  # the usage is not at hand here: estimated, and said to be
                cost = attempt.cost(None, None)
            except Exception:  # the fault may be in pricing itself
                cost = AttemptCost(None)
            return AttemptResult(
                attempt=job.attempt,
                ok=True,
                timings=attempt.clocks.record(),
                images=attempt.progress.images,
                previews=attempt.previews(),
                request_sent_as=attempt.sent_as,
                cost_usd=cost.usd,
                cost_estimated=cost.estimated,
            )
        failure = Failure(
            kind=FailureKind.INTERNAL_ERROR,
            layer=Layer.WORKER,
            message=f"the activity failed: {type(exc).__name__}",
            sent=attempt.progress.sent,
        )
        return await attempt.finish(failure, None, ())


class _Attempt:
    """The state of one attempt and its exits; every exit goes through ``finish``."""

    def __init__(self, job: AttemptInput, settings: AppSettings, seams: Seams) -> None:
        self.job = job
        self.settings = settings
        self.seams = seams
        self.route = settings.route(job.request.route)
        self.blobs = AsyncBlobs(seams.store)
        self.clocks = Clocks(started_at_iso=iso_utc(seams.now()), started=seams.monotonic())
        self.sent_as = SentAs(
            stream=job.send.stream,
            partial_images=job.send.partial_images if job.send.stream else None,
            notes=job.send.notes,
        )
        self.kept_images: list[KeptImage] = []
        self.upload_deadline: float | None = None
        # The one record of how far the attempt came: pollers read it, a re-run trusts it.
        self.progress = ProgressRecord(
            job_created_at=job.job_created_at,
            attempt=job.attempt,
            started_at=self.clocks.started_at_iso,
        )
        self.progress_blob = progress_name(job.job_id, job.attempt)
        self.writes = BackgroundWrites(self.blobs, self.progress_blob)
        self.arrivals = itertools.count()

    def previews(self) -> tuple[Preview, ...]:
        """The previews so far, as they are now (each one's ``stored`` may still change)."""
        return tuple(replace(p) for p in self.progress.previews)

    async def run(self) -> AttemptResult:
        job, request = self.job, self.job.request
        # Storage gets the activity's spare time (activity - request - upload limits), shared by
        # every wait before the send, to come back: an outage here delays the attempt, never
        # turns it into a possible send, and never eats into the request's or upload's time.
        pre_send_deadline = self.seams.monotonic() + self.settings.timeouts.pre_send_storage_s

        def storage_budget_s() -> float:
            return max(0.0, pre_send_deadline - self.seams.monotonic())

        earlier = await earlier_run(
            self.blobs,
            self.progress_blob,
            job,
            cost=self.cost,
            budget_s=storage_budget_s(),
            sleep=self.seams.sleep,
            monotonic=self.seams.monotonic,
        )
        if earlier is not None:
            await self.writes.drain(0)
            return earlier
        claim = job.claim
        if claim is not None and claim.first:
            # Given another attempt's slot: claimed first thing once no earlier run of this
            # attempt is found, so that its holder, who claims it just before its send, finds
            # it taken (rules.route_records.SlotClaim); but not by a worker too late to send,
            # nor for a job already cancelled (the slot would be lost to both).
            held = self.expired()
            if held is None and await self.cancel_requested():
                return await self.not_sent(upstream_errors.cancelled(sent=False))
            held = held or await self.claim_slot(claim, storage_budget_s())
            if held is not None:
                return await self.held_back(held)

        inputs: list[InputFile] = []
        if request.is_edit:  # its images, by hash from Blob: without them, no send
            try:
                inputs = await read_inputs(
                    self.blobs,
                    request,
                    clocks=self.clocks,
                    budget_s=storage_budget_s(),
                    sleep=self.seams.sleep,
                    monotonic=self.seams.monotonic,
                )
            except InputsUnavailable as exc:
                failure = Failure(FailureKind.STORAGE_FAILED, Layer.STORAGE, str(exc), sent=False)
                return await self.not_sent(failure)
        auth = await asyncio.to_thread(self.seams.auth)  # an Entra token fetch blocks
        call = build_call(
            self.route,
            request,
            stream=job.send.stream,
            partial_images=job.send.partial_images,
            auth=auth,
            inputs=inputs,
        )
        # The route's governor admitted this send for ``send_at``: wait for it (a second at
        # most), and never send long after it (a worker that came too late asks again), nor
        # into a 429's pause that the governor had not heard of when it admitted this send.
        held = await self.wait_for_slot()
        if held is None and claim is not None and not claim.first:
            # A batch attempt's slot is its own once claimed, the last moment before the send:
            # until then an interactive attempt may have been given it.
            held = await self.claim_slot(claim, storage_budget_s())
        held = held or await self.route_paused()
        if held is not None:
            return await self.held_back(held)
        # Written, and waited for, before the send: if this worker dies from here on, a re-run
        # knows the route may already be generating this attempt. Without the mark, no send.
        self.progress.sent = True
        self.progress.sent_at = iso_utc(self.seams.now())
        mark = _encode(self.progress)
        try:
            await within_budget(
                lambda: self.blobs.put(self.progress_blob, mark, JSON),
                budget_s=storage_budget_s(),
                sleep=self.seams.sleep,
                monotonic=self.seams.monotonic,
            )
        except Exception as exc:
            return await self.not_sent(
                Failure(
                    kind=FailureKind.STORAGE_FAILED,
                    layer=Layer.STORAGE,
                    message=f"could not record the attempt before sending it: {type(exc).__name__}",
                    sent=False,
                )
            )
        # Checked last thing before the send, so a cancel that came while the attempt waited
        # for a worker (queued) never reaches the route.
        if await self.cancel_requested():
            return await self.not_sent(upstream_errors.cancelled(sent=False))
        timeouts = self.settings.timeouts
        if job.send.read_idle_s is not None:  # the plan raised it for a long silence
            timeouts = replace(timeouts, read_idle_s=job.send.read_idle_s)
        # The clocks start at the send: the waits before it are not the request's time, and
        # the whole-request limit counts from here.
        read = self.clocks  # an edit's inputs were read on these clocks, before the send
        self.clocks = Clocks(
            started_at_iso=iso_utc(self.seams.now()), started=self.seams.monotonic()
        )
        self.progress.started_at = self.clocks.started_at_iso
        # The read of an edit's inputs is kept, apart from the send's clocks.
        self.clocks.inputs_read_started = read.inputs_read_started
        self.clocks.inputs_read_done = read.inputs_read_done
        result = await call_route(
            self.seams.client,
            call,
            timeouts=timeouts,
            clocks=self.clocks,
            on_partial=self.on_partial,
            on_final=self.on_final,
            stop_requested=self.cancel_requested,
            stop_poll_s=self.seams.cancel_poll_s,
            gateway_retry_header=self.route.gateway_retry_header,
            images_expected=request.n,
            monotonic=self.seams.monotonic,
        )
        # Before anything of the answer is stored, shown or logged: no key, no prompt in it.
        result.redact(Secrets.of(auth, request.prompt))
        if result.failure is not None and result.failure.kind is FailureKind.RATE_LIMITED:
            await self.pause_route(result.failure)
        if result.failure is not None:
            if result.images:
                await self.keep_images(result)
            return await self.finish(result.failure, result, ())

        checked: list[tuple[ImageBuffer, int, int]] = []
        for data in result.images:
            # Checking a 4K image's CRCs and inflating its pixel data takes a while (tens of ms):
            # off the event loop, which streams and polls share.
            verdict = await asyncio.to_thread(
                check_image, data.view(), output_format=request.output_format, size=request.size
            )
            if isinstance(verdict, str):
                failure = Failure(
                    kind=FailureKind.IMAGE_INVALID,
                    layer=Layer.IMAGE_CHECK,
                    message=verdict,
                    sent=True,
                    http_status=result.http_status,
                    request_id=result.request_id,
                )
                return await self.finish(failure, result, ())
            checked.append((data, verdict[0], verdict[1]))
        return await self.store_images(checked, result)

    async def wait_for_slot(self) -> Failure | None:
        """Wait until the admitted send time; a Failure (not sent) when the send-by time has
        passed. Waits at most ``MAX_SLOT_WAIT_S``, whatever the record says."""
        job = self.job
        expired = self.expired()
        if expired is not None:
            return expired
        now = self.seams.now().timestamp()
        if job.send_at is not None and job.send_at > now:
            await self.seams.sleep(min(job.send_at - now, MAX_SLOT_WAIT_S))
        return None

    async def claim_slot(self, claim: SlotClaim, budget_s: float) -> Failure | None:
        """Claim the route's slot for this attempt (rules.route_records.SlotClaim). None: the
        slot is this attempt's (claimed now, or by an earlier run of the same attempt).
        SLOT_TAKEN: another attempt claimed it first. STORAGE_FAILED: no claim could be made
        within ``budget_s``, and without one there is no send (the other attempt may hold it)."""
        job = self.job
        name = route_slot_name(job.request.route, claim.key)
        mine = {"job_id": job.job_id, "attempt": job.attempt}
        try:
            created = await within_budget(
                lambda: self.blobs.put_new(name, json.dumps(mine).encode(), JSON),
                budget_s=budget_s,
                sleep=self.seams.sleep,
                monotonic=self.seams.monotonic,
            )
            raw = None if created else await self.blobs.get(name)
        except Exception as exc:
            return Failure(
                kind=FailureKind.STORAGE_FAILED,
                layer=Layer.STORAGE,
                message=f"could not claim the route's slot before sending: {type(exc).__name__}",
                sent=False,
            )
        if created or _claimed_by(raw) == mine:
            return None
        return Failure(
            kind=FailureKind.SLOT_TAKEN,
            layer=Layer.WORKER,
            message="another attempt claimed this attempt's slot on the route first (an "
            "interactive job may be given a batch job's slot until that one claims it); not "
            "sent, the route's governor is asked again",
            sent=False,
        )

    async def held_back(self, failure: Failure) -> AttemptResult:
        """End the attempt before its send: asked again (readmit) when the route's governor
        is to decide anew, recorded as never sent when storage failed."""
        if failure.kind is FailureKind.STORAGE_FAILED:
            return await self.not_sent(failure)
        return await self.readmit(failure)

    def expired(self) -> Failure | None:
        """A Failure (not sent) when the admission's send-by time has passed."""
        job = self.job
        now = self.seams.now().timestamp()
        if job.send_by is None or now <= job.send_by:
            return None
        return Failure(
            kind=FailureKind.ADMISSION_EXPIRED,
            layer=Layer.WORKER,
            message=f"the attempt started {now - job.send_by:.1f}s after its admission's "
            "send-by time; not sent, the route's governor is asked again",
            sent=False,
        )

    async def route_paused(self) -> Failure | None:
        """A Failure (not sent) while a 429's pause that another attempt of the route left
        (rules.route_records.CoolDown) still runs. Storage down, or a marker that cannot be
        read: the governor's admission stands."""
        name = route_cool_down_name(self.job.request.route)
        try:
            raw = await self.blobs.get(name)
            pause = CoolDown.from_json(raw) if raw is not None else None
        except Exception:
            return None
        left = pause.until - self.seams.now().timestamp() if pause is not None else 0.0
        if left <= 0:
            return None
        return Failure(
            kind=FailureKind.ADMISSION_EXPIRED,
            layer=Layer.WORKER,
            message=f"the route asked for a pause (429) that ends in {left:.1f}s; not sent, "
            "the route's governor is asked again",
            sent=False,
        )

    async def pause_route(self, failure: Failure) -> None:
        """Leave the 429's pause where every attempt of the route reads it before its send:
        the governor hears of it only from this attempt's report, after it may have admitted
        others. Best effort (the governor's cool-down follows anyway); a later end is kept."""
        route = self.job.request.route
        wait = cool_down_s(self.settings.pace(route), failure.retry_after_s)
        pause = CoolDown(
            route=route,
            until=self.seams.now().timestamp() + wait,
            reason=f"the route answered 429: every send waits {wait:.1f}s",
        )
        name = route_cool_down_name(route)
        try:
            raw = await self.blobs.get(name)
            held = CoolDown.from_json(raw) if raw is not None else None
            if held is None or held.until < pause.until:
                await self.blobs.put(name, json.dumps(pause.to_json()).encode(), JSON)
        except Exception as exc:
            log.info("the route's 429 pause not stored (%s)", type(exc).__name__)

    async def readmit(self, failure: Failure) -> AttemptResult:
        """End the attempt before its send, leaving no final record: the orchestrator asks the
        governor again and runs this same attempt anew, and a final record would hand that run
        this result again (activities.rerun), forever. Nothing of this run is in Blob yet."""
        await self.writes.drain(DRAIN_S)
        return self.result_of(failure, None, ())

    async def not_sent(self, failure: Failure) -> AttemptResult:
        """End the attempt before its send: its record says it was never sent."""
        self.progress.sent = False
        self.progress.sent_at = None
        return await self.finish(failure, None, ())

    async def upload(self, name: str, data: ImageBuffer, content_type: str) -> str | None:
        """Store one image within the attempt's one upload budget, shared by all its images
        (kept ones too), so that n images never take n times IMAGE_UPLOAD_TIMEOUT_S."""
        if self.upload_deadline is None:
            self.upload_deadline = self.seams.monotonic() + self.settings.timeouts.upload_s
        return await upload_within_budget(
            self.blobs,
            name,
            data.view(),  # written from the buffer the image was decoded into, not a copy
            content_type,
            budget_s=max(0.0, self.upload_deadline - self.seams.monotonic()),
            sleep=self.seams.sleep,
            monotonic=self.seams.monotonic,
        )

    async def store_images(
        self, checked: list[tuple[ImageBuffer, int, int]], result: CallResult
    ) -> AttemptResult:
        request = self.job.request
        content_type = CONTENT_TYPES[request.output_format]
        self.clocks.upload_started = self.seams.monotonic()
        images: list[StoredImage] = []
        for index, (data, width, height) in enumerate(checked):
            name = image_name(self.job.job_id, request.output_format, index, len(checked))
            error = await self.upload(name, data, content_type)
            if error is not None:
                failure = Failure(
                    kind=FailureKind.STORAGE_FAILED,
                    layer=Layer.STORAGE,
                    message=f"storing {name} failed: {error}",
                    sent=True,
                    http_status=result.http_status,
                    request_id=result.request_id,
                )
                return await self.finish(failure, result, tuple(images))
            images.append(StoredImage(name, content_type, len(data), width, height))
        self.clocks.upload_done = self.seams.monotonic()
        # Recorded at once: a re-run of this attempt after a crash from here on returns these
        # images instead of sending the request again.
        self.progress.images = tuple(images)
        self.writes.progress(self.progress)
        return await self.finish(None, result, self.progress.images)

    async def keep_images(self, result: CallResult) -> None:
        """Store the images a failed attempt did receive, so none that was paid for is lost."""
        request = self.job.request
        content_type = CONTENT_TYPES[request.output_format]
        for index, data in enumerate(result.images):
            # Off the event loop, as above.
            verdict = await asyncio.to_thread(
                check_image, data.view(), output_format=request.output_format, size=request.size
            )
            if isinstance(verdict, str):
                continue
            name = kept_image_name(self.job.job_id, request.output_format, self.job.attempt, index)
            error = await self.upload(name, data, content_type)
            self.kept_images.append(KeptImage(name, content_type, len(data), stored=not error))

    async def cancel_requested(self) -> bool:
        """Whether the job, or the batch it is an item of, was cancelled."""
        batch = self.job.batch_id
        try:
            raw, batch_marker = await asyncio.gather(
                self.blobs.get(cancel_name(self.job.job_id)),
                self.blobs.get(batch_cancel_name(batch)) if batch else _nothing(),
            )
        except Exception:  # storage down: keep going rather than guess a cancel
            return False
        if batch_marker is not None:
            return True
        if raw is None:
            return False
        try:
            marker = CancelMarker.from_json(raw)
        except RecordUnreadable:
            # Only the cancel endpoint writes there: a marker we cannot read still asks to
            # cancel, and stopping is the reading that spends nothing.
            return True
        return same_job(marker.job_created_at, self.job)

    async def on_partial(self, index: int, data: ImageBuffer) -> None:
        # Named by arrival, not by partial_image_index: with n > 1 every image has its own
        # partial 0, 1, ... and they must not overwrite each other.
        sequence = next(self.arrivals)
        request = self.job.request
        name = preview_name(self.job.job_id, request.output_format, self.job.attempt, sequence)
        preview = Preview(index=sequence, partial_image_index=index, blob=name, bytes=len(data))
        self.progress.previews.append(preview)

        def stored() -> None:
            preview.stored = True
            self.writes.progress(self.progress)

        self.writes.preview(name, data.view(), CONTENT_TYPES[request.output_format], stored)

    async def on_final(self) -> None:
        self.progress.final_received = True
        self.writes.progress(self.progress)

    def cost(self, failure: Failure | None, usage: dict[str, Any] | None) -> AttemptCost:
        return attempt_cost(
            self.route.model,
            self.job.request,
            stream=self.job.send.stream,
            partial_images=self.job.send.partial_images,
            failure=failure,
            usage=usage,
        )

    def result_of(
        self, failure: Failure | None, call: CallResult | None, images: tuple[StoredImage, ...]
    ) -> AttemptResult:
        timings = self.clocks.record()
        if call is not None:
            timings = replace(
                timings,
                http_status=call.http_status,
                request_id=call.request_id,
                rate_limit=call.rate_limit,
                connection_reused=call.connection_reused,
                partials_received=call.partials,
                gateway_retries=call.gateway_retries,
            )
        usage = call.usage if call else None
        cost = self.cost(failure, usage)
        return AttemptResult(
            attempt=self.job.attempt,
            ok=failure is None,
            timings=timings,
            failure=failure,
            images=images,
            previews=self.previews(),
            usage=usage,
            cost_usd=cost.usd,
            cost_estimated=cost.estimated,
            request_sent_as=self.sent_as,
            kept_images=tuple(self.kept_images),
        )

    async def finish(
        self, failure: Failure | None, call: CallResult | None, images: tuple[StoredImage, ...]
    ) -> AttemptResult:
        await self.writes.drain(DRAIN_S)
        result = self.result_of(failure, call, images)
        # The result is kept with the progress: a re-run of this attempt (Azure runs activities
        # at least once) returns it instead of sending the request again.
        self.progress.done = True
        self.progress.result = result
        try:
            await self.blobs.put(self.progress_blob, _encode(self.progress), JSON)
        except Exception as exc:  # a re-run would then report a post-send failure: recorded
            log.info("final progress not stored (%s)", type(exc).__name__)
        return result


def _encode(progress: ProgressRecord) -> bytes:
    return json.dumps(progress.to_json()).encode()


async def _nothing() -> bytes | None:
    return None


def _claimed_by(raw: bytes | None) -> object:
    """Who a slot's claim names (``{"job_id", "attempt"}``); None when it cannot be read (a
    claim that is not this attempt's)."""
    try:
        return json.loads(raw) if raw is not None else None
    except ValueError:
        return None
