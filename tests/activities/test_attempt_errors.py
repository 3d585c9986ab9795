"""Upstream errors through one attempt (httpx.MockTransport, the in-memory store): classified by
family, the route's own words, type, code and param kept, and nothing of the route's key or
the job's prompt carried into anything the attempt stores, returns or logs."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from activities.attempt import Seams, run_attempt
from activities.finish import build_metadata, finish_job
from rules.job_records import AttemptRecord, FinishInput, JobState, Outcome
from rules.outcome import AttemptResult, FailureKind, status_error
from rules.retry import RetryPolicy, decide
from tests.activities.test_generate import SETTINGS, job, png
from tests.fakes import InMemoryStore


def run(
    handler: Any,
    *,
    store: InMemoryStore | None = None,
    auth: tuple[str, str] | None = None,
    **request: Any,
) -> tuple[AttemptResult, list[httpx.Request], InMemoryStore]:
    requests: list[httpx.Request] = []

    def counting(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        response: httpx.Response = handler(request)
        return response

    store = store or InMemoryStore()

    async def no_sleep(seconds: float) -> None:
        return None

    seams = Seams(
        client=httpx.AsyncClient(transport=httpx.MockTransport(counting)),
        store=store,
        auth=lambda: auth or ("api-key", "k"),
        sleep=no_sleep,
        cancel_poll_s=0.01,
    )
    result = asyncio.run(run_attempt(job(**request), SETTINGS, seams))
    return result, requests, store


def answering(status: int, error: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers or {}, json={"error": error})

    return handler


def streaming(
    *events: tuple[str | None, dict[str, Any]], headers: dict[str, str] | None = None
) -> Any:
    content = "".join(
        (f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
        for name, data in events
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream", **(headers or {})},
            content=content.encode(),
        )

    return handler


def test_a_safety_rejection_mid_stream_after_no_partials_is_one_request_never_retried():
    """OpenAI's style (no sequence_number), before any partial image."""
    safety = {
        "type": "image_generation_user_error",
        "code": None,
        "message": "Your request was rejected by the safety system. If you believe this is an "
        "error, contact us at help.openai.com and include the request ID req_1.",
        "param": None,
    }
    result, requests, _ = run(
        streaming(("error", {"type": "error", "error": safety})), route="openai"
    )
    assert len(requests) == 1
    failure = result.failure
    assert failure is not None
    assert failure.kind is FailureKind.REJECTED
    assert failure.error_type == "image_generation_user_error"
    assert "safety system" in failure.message
    assert result.previews == ()
    decision = decide(failure, attempt=1, previous=[], policy=RetryPolicy(), jitter=0.0)
    assert decision.retry is False
    assert decision.failure == "returned_error"


def test_a_403_for_an_unverified_organization_says_so_and_is_not_retried():
    message = (
        "Your organization must be verified to use the model `gpt-image-2`. Please go to: "
        "https://platform.openai.com/settings/organization/general and click on Verify "
        "Organization. If you just verified, it can take up to 15 minutes for access to "
        "propagate."
    )
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    result, requests, _ = run(answering(403, error, {"x-request-id": "req_403"}), route="openai")
    assert len(requests) == 1
    failure = result.failure
    assert failure is not None
    assert failure.kind is FailureKind.PERMISSION_DENIED
    shown = status_error(failure)
    assert shown["message"] == message
    assert shown["kind"] == "permission_denied"
    assert (shown["httpStatus"], shown["type"], shown["requestId"]) == (
        403,
        "invalid_request_error",
        "req_403",
    )
    assert decide(failure, attempt=1, previous=[], policy=RetryPolicy(), jitter=0.0).retry is False


@pytest.mark.parametrize(
    ("handler", "kind"),
    [
        (
            answering(
                400,
                {
                    "message": "Invalid value: '1000x1000'. Supported values are: ...",
                    "type": "invalid_request_error",
                    "param": "size",
                    "code": "invalid_value",
                },
            ),
            FailureKind.REJECTED,
        ),
        (
            streaming(
                (
                    None,
                    {
                        "type": "error",
                        "error": {
                            "message": "filtered",
                            "type": None,
                            "param": "size",
                            "code": "content_filter",
                        },
                    },
                )
            ),
            FailureKind.REJECTED,
        ),
    ],
    ids=["answer", "stream"],
)
def test_the_routes_type_code_and_param_reach_the_status_error(handler: Any, kind: FailureKind):
    result, _, _ = run(handler)
    assert result.failure is not None
    assert result.failure.kind is kind
    shown = status_error(result.failure)
    assert shown["param"] == "size"
    assert shown["field"] == "size"  # as the service's own 400 names the field
    assert shown["code"] == result.failure.code
    assert shown["type"] == result.failure.error_type


# --- the key and the prompt never come back ------------------------------------------------------

KEY = "sk-marker-Q7vTzLmK2pX9aBcDeFgHiJkLmNoPwXyZ"
PROMPT = "MARKER PROMPT: a violet giraffe reading a newspaper on the moon, oil painting"
# Pieces that must not appear anywhere, whatever the route echoed: the key's head and tail, a
# middle piece, the prompt's head and tail (compared without case).
FORBIDDEN = [KEY, KEY[-4:], KEY[:12], KEY[10:22], PROMPT[:12], PROMPT[-12:], PROMPT[20:40]]
ECHOES = [
    (
        "401, masked key",
        answering(
            401,
            {
                "message": f"Incorrect API key provided: sk-marker-****{KEY[-4:]}. You can find "
                "your API key at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            },
        ),
        FailureKind.AUTH_FAILED,
    ),
    (
        "400, the prompt cut short and the whole key",
        answering(
            400,
            {
                "message": f"Your prompt '{PROMPT[:30]}...' was rejected for key {KEY}.",
                "type": "image_generation_user_error",
                "param": f"prompt={PROMPT[:24]}",
                "code": "moderation_blocked",
            },
            {"x-request-id": f"req_{KEY[-6:]}"},
        ),
        FailureKind.REJECTED,
    ),
    (
        "error event, the whole prompt and the key shown as sk-...abcd",
        streaming(
            (
                "error",
                {
                    "type": "error",
                    "error": {
                        "message": f"generation failed for '{PROMPT}' (key sk-...{KEY[-4:]})",
                        "type": "image_generation_server_error",
                        "code": f"failed:{PROMPT[-20:]}",
                        "param": None,
                    },
                },
            ),
            headers={"x-request-id": KEY, "x-ratelimit-remaining-requests": PROMPT},
        ),
        FailureKind.SERVER_ERROR,
    ),
    (
        "429, the prompt in lower case, the key in a header",
        answering(
            429,
            {
                "message": f"Rate limit reached while working on {PROMPT.lower()}. "
                "Please try again in 2s.",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            },
            {"retry-after": "2", "x-ratelimit-reset-requests": f"2s {KEY}"},
        ),
        FailureKind.RATE_LIMITED,
    ),
]


def assert_clean(text: str, where: str) -> None:
    for piece in FORBIDDEN:
        assert piece.lower() not in text.lower(), (where, piece, text)


@pytest.mark.parametrize(
    ("handler", "kind"), [(h, k) for _, h, k in ECHOES], ids=[name for name, _, _ in ECHOES]
)
def test_a_route_echoing_the_key_or_the_prompt_leaves_no_trace(
    handler: Any, kind: FailureKind, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    store = InMemoryStore()
    result, requests, _ = run(
        handler, store=store, auth=("authorization", f"Bearer {KEY}"), prompt=PROMPT, route="openai"
    )
    # The marker key and prompt were sent: the route could echo them.
    assert requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(requests[0].content)["prompt"] == PROMPT
    failure = result.failure
    assert failure is not None
    assert failure.kind is kind
    assert "[redacted" in failure.message
    # What the attempt returns and what it stored (the progress record, read by pollers).
    assert_clean(json.dumps(result.to_json()), "attempt result")
    for name in store.blobs:
        assert_clean(store.blobs[name][0].decode(errors="replace"), name)
    # What the status answer shows, metadata.json and the job's log event.
    request = job(prompt=PROMPT, route="openai").request
    outcome = Outcome(
        state=JobState.FAILED,
        attempt=1,
        failure="returned_error",
        error=failure,
        timings=result.timings,
    )
    finish = FinishInput("job-1", request, outcome, (AttemptRecord(result),))
    assert_clean(json.dumps(status_error(failure)), "status error")
    assert_clean(json.dumps(build_metadata(finish, SETTINGS, datetime.now(UTC))), "metadata")
    finish_job(finish, SETTINGS, store)
    assert_clean(store.blobs["job-1/metadata.json"][0].decode(), "metadata.json")
    assert_clean(caplog.text, "logs")
    assert any("image_job_finished" in r.getMessage() for r in caplog.records)


def test_the_image_of_an_attempt_that_echoed_nothing_is_untouched():
    """Redaction changes only what came from upstream as text."""
    image = png(1024, 1024)
    b64 = base64.b64encode(image).decode()
    handler = streaming(
        ("image_generation.completed", {"type": "image_generation.completed", "b64_json": b64}),
        headers={"x-request-id": "req_plain"},
    )
    store = InMemoryStore()
    result, _, _ = run(handler, store=store, auth=("api-key", KEY), prompt=PROMPT)
    assert result.ok, result.failure
    assert store.get(name="job-1/image.png") == image
    assert result.timings.request_id == "req_plain"
