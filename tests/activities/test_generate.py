"""One attempt, against httpx.MockTransport and the in-memory store: previews, clocks, checks."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from PIL import Image

from activities.attempt import Seams, run_attempt
from rules.job_records import AttemptInput
from rules.outcome import AttemptResult, FailureKind, Layer, StoredImage
from rules.request import ImageJobRequest
from rules.send_plan import SendPlan
from rules.settings import AppSettings
from tests.fakes import InMemoryStore
from tests.rules.conftest import ENV

SETTINGS = AppSettings.from_env(ENV)
# The job's own created_at: every record it writes carries it.
CREATED = "2026-05-07T13:46:12.000Z"


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def job(**request: Any) -> AttemptInput:
    values: dict[str, Any] = {
        "prompt": "a red apple",
        "size": "1024x1024",
        "quality": "low",
        "output_format": "png",
        "background": "auto",
        "moderation": "auto",
        "n": 1,
        "partial_images": 2,
        "route": "azure",
    }
    values.update(request)
    return AttemptInput(
        job_id="job-1",
        attempt=1,
        request=ImageJobRequest(**values),
        send=SendPlan(stream=True, partial_images=2),
        job_created_at=CREATED,
    )


def sse(*events: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events
    )


def stream_of(final: bytes, partials: int = 2) -> bytes:
    b64 = base64.b64encode(final).decode()
    events = [
        (
            "image_generation.partial_image",
            {"type": "image_generation.partial_image", "b64_json": b64, "partial_image_index": i},
        )
        for i in range(partials)
    ]
    events.append(
        (
            "image_generation.completed",
            {
                "type": "image_generation.completed",
                "b64_json": b64,
                "size": "1024x1024",
                "usage": {"input_tokens": 10, "output_tokens": 272, "total_tokens": 282},
            },
        )
    )
    return sse(*events)


def serving(content: bytes) -> Callable[[httpx.Request], httpx.Response]:
    """A route that answers every request with this event stream."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=content)

    return handler


async def _no_sleep(seconds: float) -> None:
    return None


class SkippingClock:
    """Real monotonic time plus every sleep, which returns at once: budgets of minutes pass in
    no time, while timings stay real."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return time.monotonic() + sum(self.slept)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def seams_for(handler: Any, store: InMemoryStore, clock: SkippingClock | None = None) -> Seams:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    clock = clock or SkippingClock()
    return Seams(
        client=client,
        store=store,
        auth=lambda: ("api-key", "k"),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        cancel_poll_s=0.01,
    )


def attempt(
    job_input: AttemptInput,
    store: InMemoryStore,
    handler: Any,
    clock: SkippingClock | None = None,
) -> AttemptResult:
    return asyncio.run(run_attempt(job_input, SETTINGS, seams_for(handler, store, clock)))


def test_a_streamed_attempt_stores_previews_then_the_checked_image():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream", "apim-request-id": "apim-1"},
            content=stream_of(png(1024, 1024)),
        )

    store = InMemoryStore()
    result = attempt(job(), store, handler)

    assert result.ok, result.failure
    [request] = seen
    assert request.url.path == "/openai/deployments/gpt-image-2/images/generations"
    assert request.url.params["api-version"] == "2025-04-01-preview"
    assert request.headers["api-key"] == "k"
    sent = json.loads(request.content)
    assert sent["stream"] is True
    assert sent["partial_images"] == 2
    assert "model" not in sent  # the deployment names the model on Azure
    assert store.get(name="job-1/image.png") == png(1024, 1024)
    assert [p.blob for p in result.previews] == [
        "job-1/preview-1-0.png",
        "job-1/preview-1-1.png",
    ]
    assert result.images[0] == StoredImage(
        blob="job-1/image.png",
        content_type="image/png",
        bytes=len(png(1024, 1024)),
        width=1024,
        height=1024,
    )
    progress = json.loads(store.get(name="job-1/progress-1.json") or b"{}")
    assert progress["final_received"] is True
    assert len(progress["previews"]) == 2
    timings = result.timings.to_json()
    for key in ("first_byte_ms", "first_partial_image_ms", "final_image_ms", "upload_ms"):
        assert timings[key] is not None, key
    assert timings["request_id"] == "apim-1"
    assert result.usage is not None
    assert result.cost_usd is not None


def test_an_image_of_the_wrong_size_is_not_stored():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=stream_of(png(512, 512), partials=0),
        )

    store = InMemoryStore()
    result = attempt(job(), store, handler)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.IMAGE_INVALID
    assert "1024x1024" in result.failure.message
    assert store.get(name="job-1/image.png") is None


def test_a_failed_upload_is_retried_without_generating_again():
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=stream_of(png(1024, 1024), partials=0),
        )

    store = InMemoryStore()
    store.fail("image.png", times=3)
    result = attempt(job(), store, handler)
    assert result.ok, result.failure
    assert calls == 1
    assert store.put_calls.count("job-1/image.png") == 4
    assert store.get(name="job-1/image.png") is not None


def test_an_error_response_becomes_a_failure_record_not_an_exception():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429,
            headers={"retry-after-ms": "2000", "x-request-id": "req-9"},
            json={"error": {"type": "requests", "code": "rate_limit_exceeded", "message": "x"}},
        )

    result = attempt(job(), InMemoryStore(), handler)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.RATE_LIMITED
    assert result.failure.retry_after_s == 2.0
    assert result.timings.http_status == 429
    assert result.timings.request_id == "req-9"


def test_a_stream_without_completed_is_incomplete():
    def handler(request: httpx.Request) -> httpx.Response:
        b64 = base64.b64encode(png(1024, 1024)).decode()
        content = sse(
            ("image_generation.partial_image", {"b64_json": b64, "partial_image_index": 0})
        )
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=content)

    result = attempt(job(), InMemoryStore(), handler)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.STREAM_INCOMPLETE
    assert len(result.previews) == 1


def test_storage_down_past_the_upload_budget_is_a_storage_failure():
    handler = serving(stream_of(png(1024, 1024), partials=0))

    store = InMemoryStore()
    store.fail("image.png", times=100_000)
    clock = SkippingClock()
    result = attempt(job(), store, handler, clock)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.STORAGE_FAILED
    assert "ConnectionError" in result.failure.message
    # Tried until the upload budget was spent, not for a number of tries.
    budget = SETTINGS.timeouts.upload_s
    assert sum(clock.slept) == pytest.approx(budget, abs=1.0)
    assert store.put_calls.count("job-1/image.png") > 8


def test_storage_down_for_minutes_during_the_upload_saves_the_image_billed_once():
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return serving(stream_of(png(1024, 1024), partials=0))(request)

    store = InMemoryStore()
    store.fail("image.png", times=12)  # about 200 s of backoff
    clock = SkippingClock()
    result = attempt(job(), store, handler, clock)
    assert result.ok, result.failure
    assert len(calls) == 1
    assert 150 < sum(clock.slept) < SETTINGS.timeouts.upload_s
    assert store.get(name="job-1/image.png") is not None


def test_a_job_cancelled_before_the_send_never_reaches_the_route():
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    store = InMemoryStore()
    marker = {"requested_at": "2026-05-07T13:46:13.000Z", "job_created_at": CREATED}
    store.put(name="job-1/cancel.json", data=json.dumps(marker).encode(), content_type="j")
    result = attempt(job(), store, handler)
    assert calls == []
    assert result.failure is not None
    assert result.failure.kind is FailureKind.CANCELLED
    assert result.failure.sent is False


def test_a_cancel_closes_a_running_stream():
    store = InMemoryStore()

    async def slow_stream() -> Any:
        b64 = base64.b64encode(png(1024, 1024)).decode()
        yield sse(("image_generation.partial_image", {"b64_json": b64, "partial_image_index": 0}))
        # The caller cancels once the preview is stored; the model would take much longer.
        store.put(name="job-1/cancel.json", data=b"{}", content_type="application/json")
        await asyncio.sleep(60)
        yield b""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=slow_stream()
        )

    result = attempt(job(), store, handler)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.CANCELLED
    assert result.failure.sent is True
    assert len(result.previews) == 1
    assert store.get(name="job-1/image.png") is None


def test_a_rerun_after_the_worker_died_post_send_does_not_send_again():
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    store = InMemoryStore()
    earlier = {
        "attempt": 1,
        "sent": True,
        "sent_at": "2026-05-07T13:46:12Z",
        "done": False,
        "job_created_at": CREATED,
    }
    store.put(name="job-1/progress-1.json", data=json.dumps(earlier).encode(), content_type="j")
    result = attempt(job(), store, handler)
    assert calls == []
    assert result.failure is not None
    assert result.failure.kind is FailureKind.CONNECTION_LOST
    assert result.failure.layer is Layer.WORKER
    assert result.failure.sent is True


def test_the_whole_request_deadline_covers_the_wait_for_headers():
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(60)
        return httpx.Response(500)

    # A clock 3000 times fast: 900 s of request limit is 0.3 s, 750 s of read idle 0.25 s.
    fast = {
        "IMAGE_TIME_SCALE": "3000",
        "IMAGE_REQUEST_TIMEOUT_S": "900",
        "IMAGE_READ_IDLE_TIMEOUT_S": "750",
        "IMAGE_CONNECT_TIMEOUT_S": "0.1",
        "IMAGE_ROUTE_AZURE_GATEWAY_IDLE_TIMEOUT_S": "600",
    }
    settings = AppSettings.from_env(dict(ENV, **fast))
    store = InMemoryStore()
    seams = seams_for(handler, store)
    result = asyncio.run(run_attempt(job(), settings, seams))
    assert result.failure is not None
    assert result.failure.kind is FailureKind.LOCAL_TIMEOUT
    assert result.failure.timeout == "request"


def test_retries_a_gateway_says_it_made_are_recorded_apart():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream", "x-litellm-attempted-retries": "2"},
            content=stream_of(png(1024, 1024), partials=0),
        )

    settings = AppSettings.from_env(
        dict(ENV, IMAGE_ROUTE_AZURE_GATEWAY_RETRY_HEADER="X-LiteLLM-Attempted-Retries")
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    seams = Seams(client=client, store=InMemoryStore(), auth=lambda: None, sleep=_no_sleep)
    result = asyncio.run(run_attempt(job(), settings, seams))
    assert result.ok
    assert result.timings.gateway_retries == 2


def test_a_rerun_after_the_attempt_finished_returns_its_result_without_sending():
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=stream_of(png(1024, 1024), partials=1),
        )

    store = InMemoryStore()
    first = attempt(job(), store, handler)
    again = attempt(job(), store, handler)
    assert len(calls) == 1
    assert again.ok
    assert again.to_json() == first.to_json()


def test_without_the_sent_mark_nothing_is_sent():
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    store = InMemoryStore()
    store.fail("progress-1.json", times=100_000)
    clock = SkippingClock()
    result = attempt(job(), store, handler, clock)
    assert calls == []
    assert result.failure is not None
    assert result.failure.kind is FailureKind.STORAGE_FAILED
    assert result.failure.sent is False  # never a possible send: no resend is spent on it
    # Storage had the activity's spare time (activity - request - upload) to come back.
    assert sum(clock.slept) == pytest.approx(SETTINGS.timeouts.pre_send_storage_s, abs=1.0)


def test_a_storage_outage_before_the_send_delays_the_attempt_and_it_is_sent_once():
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return serving(stream_of(png(1024, 1024), partials=0))(request)

    class ReadsFailFirst(InMemoryStore):
        """Every call fails for the first ``n`` reads, as storage stopped for a while does."""

        def __init__(self, n: int) -> None:
            super().__init__()
            self.left = n

        def get(self, *, name: str) -> bytes | None:
            if self.left > 0:
                self.left -= 1
                raise ConnectionError("storage is down")
            return super().get(name=name)

    store = ReadsFailFirst(5)
    store.fail("progress-1.json", times=3)
    result = attempt(job(), store, handler)
    assert result.ok, result.failure
    assert len(calls) == 1


def test_an_unreadable_answer_is_a_protocol_error_not_a_crash():
    def handler(request: httpx.Request) -> httpx.Response:
        content = b"event: image_generation.partial_image\ndata: {not json\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=content)

    result = attempt(job(), InMemoryStore(), handler)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.PROTOCOL_ERROR
    assert "not json" not in result.failure.message


def test_an_image_that_arrived_is_kept_when_the_connection_fails_after_it():
    async def then_reset() -> Any:
        yield stream_of(png(1024, 1024), partials=0)
        raise httpx.ReadError("connection reset by peer")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=then_reset()
        )

    store = InMemoryStore()
    result = attempt(job(), store, handler)
    assert result.ok, result.failure
    assert store.get(name="job-1/image.png") is not None


def test_fewer_images_than_asked_is_incomplete():
    handler = serving(stream_of(png(1024, 1024), partials=0))

    result = attempt(job(n=2), InMemoryStore(), handler)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.STREAM_INCOMPLETE
    assert "1 of 2" in result.failure.message


def test_records_of_an_earlier_job_under_the_same_id_are_ignored():
    """A purged job's leftovers under the same id neither cancel nor replay the new job."""

    handler = serving(stream_of(png(1024, 1024), partials=0))

    store = InMemoryStore()
    old_cancel = {"requested_at": "2026-01-01T00:00:00.000Z", "job_created_at": "2026-01-01"}
    old_progress = {"attempt": 1, "sent": True, "job_created_at": "2026-01-01"}
    store.put(name="job-1/cancel.json", data=json.dumps(old_cancel).encode(), content_type="j")
    store.put(
        name="job-1/progress-1.json", data=json.dumps(old_progress).encode(), content_type="j"
    )
    created = CREATED
    result = attempt(job(), store, handler)
    assert result.ok, result.failure
    # A cancel for this job counts, whatever the clocks said.
    store.put(
        name="job-1/cancel.json",
        data=json.dumps(
            {"requested_at": "2026-05-07T13:40:00.000Z", "job_created_at": created}
        ).encode(),
        content_type="j",
    )
    cancelled = attempt(replace(job(), attempt=2), store, handler)
    assert cancelled.failure is not None
    assert cancelled.failure.kind is FailureKind.CANCELLED


def test_a_rerun_after_the_images_were_stored_returns_them_without_sending():
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    store = InMemoryStore()
    images = [
        {
            "blob": "job-1/image.png",
            "contentType": "image/png",
            "bytes": 3,
            "width": 1024,
            "height": 1024,
        }
    ]
    earlier = {
        "attempt": 1,
        "sent": True,
        "images": images,
        "started_at": "t",
        "job_created_at": CREATED,
    }
    store.put(name="job-1/progress-1.json", data=json.dumps(earlier).encode(), content_type="j")
    result = attempt(job(), store, handler)
    assert calls == []
    assert result.ok
    assert [image.to_json() for image in result.images] == images


def test_an_unreadable_attempt_record_is_a_possible_send_for_the_policy():
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    class UnreadableStore(InMemoryStore):
        def get(self, *, name: str) -> bytes | None:
            if name.endswith("progress-1.json"):
                raise ConnectionError("storage is down")
            return super().get(name=name)

    result = attempt(job(), UnreadableStore(), handler)
    assert calls == []
    assert result.failure is not None
    assert result.failure.kind is FailureKind.INTERNAL_ERROR
    assert result.failure.sent is True


def test_a_fault_after_every_image_was_stored_keeps_the_attempt_a_success(monkeypatch):
    handler = serving(stream_of(png(1024, 1024), partials=0))

    def broken_cost(*args: object, **kwargs: object) -> float:
        raise RuntimeError("a fault of ours after the image was stored")

    monkeypatch.setattr("activities.attempt.attempt_cost", broken_cost)
    store = InMemoryStore()
    result = attempt(job(), store, handler)
    assert result.ok, result.failure
    assert result.images[0].blob == "job-1/image.png"
    assert store.get(name="job-1/image.png") is not None


def test_images_that_arrived_before_a_later_failure_are_kept():
    def handler(request: httpx.Request) -> httpx.Response:
        b64 = base64.b64encode(png(1024, 1024)).decode()
        content = sse(
            ("image_generation.completed", {"b64_json": b64}),
            ("error", {"type": "error", "error": {"type": "server_error", "message": "x"}}),
        )
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=content)

    store = InMemoryStore()
    result = attempt(job(n=2), store, handler)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.SERVER_ERROR
    assert [k.blob for k in result.kept_images] == ["job-1/attempt-1-image-0.png"]
    assert store.get(name="job-1/attempt-1-image-0.png") is not None


def test_the_clocks_start_at_the_send_not_before_the_waits_for_storage():
    """Minutes of waiting for storage before the send are neither request time (the whole
    request limit counts from the send) nor part of the timings."""
    store = InMemoryStore()
    store.fail("progress-1.json", times=11)  # the sent mark waits out ~100 s of backoff
    clock = SkippingClock()
    result = attempt(job(), store, serving(stream_of(png(1024, 1024), partials=1)), clock)
    assert result.ok, result.failure
    assert sum(clock.slept) > 60
    assert result.timings.first_byte_ms is not None
    assert result.timings.first_byte_ms < 5_000


def test_several_images_share_one_upload_budget():
    b64 = base64.b64encode(png(1024, 1024)).decode()
    completed = ("image_generation.completed", {"b64_json": b64})
    content = sse(completed, completed, completed)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=content)

    store = InMemoryStore()
    store.fail(".png", times=100_000)
    clock = SkippingClock()
    result = attempt(job(n=3), store, handler, clock)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.STORAGE_FAILED
    assert sum(clock.slept) <= SETTINGS.timeouts.upload_s + 1
