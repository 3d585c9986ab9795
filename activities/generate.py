"""One attempt at a job: call the route, store previews as they come, check and store the image.

``run_attempt`` does the work with every outside world handed in (an httpx client, an
ImageStore, the clocks), so tests run it against the simulator and an in-memory store. It never
raises for an upstream or storage problem: it returns an AttemptResult whose ``failure`` says what
went wrong, for the orchestrator's retry policy. An image that arrived is never regenerated
because its upload failed: the upload is retried here, with backoff, within the upload budget.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from activities.image_check import check_image
from activities.route_client import build_call, call_route
from rules.cost import cost_usd
from rules.outcome import AttemptResult, Failure, FailureKind, Layer
from rules.request import ImageJobRequest
from rules.settings import AppSettings
from rules.timing import Clocks
from storage.protocol import (
    CONTENT_TYPES,
    ImageStore,
    image_name,
    preview_name,
    progress_name,
)

UPLOAD_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


@dataclass
class AttemptInput:
    job_id: str
    attempt: int
    request: ImageJobRequest
    # What the orchestrator decided to send, which may differ from the request (e.g. one
    # partial image instead of none behind a gateway that kills silent streams).
    stream: bool = True
    partial_images: int = 1
    send_notes: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttemptInput:
        return cls(
            job_id=data["job_id"],
            attempt=data["attempt"],
            request=ImageJobRequest.from_json(data["request"]),
            stream=data.get("stream", True),
            partial_images=data.get("partial_images", 1),
            send_notes=list(data.get("send_notes", [])),
        )


@dataclass
class Seams:
    client: httpx.Client
    store: ImageStore
    auth: Callable[[], tuple[str, str] | None]
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


def run_attempt(job: AttemptInput, settings: AppSettings, seams: Seams) -> AttemptResult:
    route = settings.route(job.request.route)
    request = job.request
    started = seams.now()
    clocks = Clocks(started_at_iso=_iso(started), started=seams.monotonic())
    progress: dict[str, Any] = {
        "attempt": job.attempt,
        "previews": [],
        "final_received": False,
        "started_at": clocks.started_at_iso,
    }
    previews: list[dict[str, Any]] = []
    store = seams.store

    def write_progress() -> None:
        # Best effort: progress is for pollers; a failed write must not fail the generation.
        try:
            store.put(
                name=progress_name(job.job_id),
                data=json.dumps(progress).encode(),
                content_type="application/json",
            )
        except Exception:  # any storage error; the image path retries on its own
            progress["write_failed"] = True

    def on_partial(index: int, data: bytes) -> None:
        name = preview_name(job.job_id, request.output_format, job.attempt, index)
        try:
            store.put(name=name, data=data, content_type=CONTENT_TYPES[request.output_format])
        except Exception:  # a lost preview is not a lost image
            return
        preview = {"index": index, "blob": name, "bytes": len(data)}
        previews.append(preview)
        progress["previews"] = previews
        write_progress()

    def on_final() -> None:
        progress["final_received"] = True
        write_progress()

    write_progress()
    auth = seams.auth()
    call = build_call(
        route, request, stream=job.stream, partial_images=job.partial_images, auth=auth
    )
    result = call_route(
        seams.client,
        call,
        timeouts=settings.timeouts,
        clocks=clocks,
        on_partial=on_partial,
        on_final=on_final,
        monotonic=seams.monotonic,
    )
    sent_as = {
        "stream": job.stream,
        "partial_images": job.partial_images if job.stream else None,
        "notes": job.send_notes,
    }

    def finish(failure: Failure | None, images: list[dict[str, Any]]) -> AttemptResult:
        timings = clocks.record()
        timings.update(
            http_status=result.http_status,
            request_id=result.request_id,
            rate_limit=result.rate_limit,
            connection_reused=result.connection_reused,
            partials_received=result.partials,
        )
        return AttemptResult(
            attempt=job.attempt,
            ok=failure is None,
            timings=timings,
            failure=failure,
            images=images,
            previews=previews,
            usage=result.usage,
            cost_usd=cost_usd(route.model, result.usage),
            request_sent_as=sent_as,
        )

    if result.failure is not None:
        return finish(result.failure, [])

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
            return finish(failure, [])
        checked.append((data, verdict[0], verdict[1]))

    clocks.upload_started = seams.monotonic()
    images: list[dict[str, Any]] = []
    for index, (data, width, height) in enumerate(checked):
        name = image_name(job.job_id, request.output_format, index, len(checked))
        error = _upload_with_retries(
            store,
            name,
            data,
            CONTENT_TYPES[request.output_format],
            budget_s=settings.timeouts.upload_s,
            seams=seams,
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
            return finish(failure, [])
        images.append(
            {
                "blob": name,
                "contentType": CONTENT_TYPES[request.output_format],
                "bytes": len(data),
                "width": width,
                "height": height,
            }
        )
    clocks.upload_done = seams.monotonic()
    return finish(None, images)


def _upload_with_retries(
    store: ImageStore, name: str, data: bytes, content_type: str, *, budget_s: float, seams: Seams
) -> str | None:
    """None once stored; else the last error's type, after the budget is spent."""
    deadline = seams.monotonic() + budget_s
    last = ""
    for wait in (0.0, *UPLOAD_BACKOFF_S):
        if wait:
            if seams.monotonic() + wait > deadline:
                break
            seams.sleep(wait)
        try:
            store.put(name=name, data=data, content_type=content_type)
        except Exception as exc:  # every storage error is retried the same way
            last = type(exc).__name__
            continue
        return None
    return last or "upload budget spent"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
