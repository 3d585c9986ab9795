"""Every upstream case of the API reference maps to one Failure record (translated in one place)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import httpx
import pytest

from activities import upstream_errors
from rules import rate_headers, redaction
from rules.outcome import FailureKind, Layer
from rules.retry import RetryPolicy, decide


def body(error: Mapping[str, object]) -> bytes:
    return json.dumps({"error": error}).encode()


@pytest.mark.parametrize(
    ("status", "error", "headers", "kind", "layer"),
    [
        (
            400,
            {"type": "invalid_request_error", "code": "invalid_value", "param": "size"},
            {},
            FailureKind.REJECTED,
            Layer.ROUTE,
        ),
        (
            400,
            {"type": "image_generation_user_error", "code": "moderation_blocked"},
            {},
            FailureKind.REJECTED,
            Layer.ROUTE,
        ),
        (
            400,
            {"code": "contentFilter", "message": "filtered"},
            {},
            FailureKind.REJECTED,
            Layer.ROUTE,
        ),
        (
            401,
            {"code": "401", "message": "Access denied"},
            {},
            FailureKind.AUTH_FAILED,
            Layer.ROUTE,
        ),
        (403, {"type": "invalid_request_error"}, {}, FailureKind.PERMISSION_DENIED, Layer.ROUTE),
        (404, {"code": "DeploymentNotFound"}, {}, FailureKind.NOT_FOUND, Layer.ROUTE),
        (
            429,
            {"type": "requests", "code": "rate_limit_exceeded"},
            {"retry-after-ms": "12000"},
            FailureKind.RATE_LIMITED,
            Layer.ROUTE,
        ),
        (
            429,
            {"type": "insufficient_quota", "code": "insufficient_quota"},
            {},
            FailureKind.QUOTA_EXHAUSTED,
            Layer.ROUTE,
        ),
        (500, {"type": "server_error"}, {}, FailureKind.SERVER_ERROR, Layer.ROUTE),
        (503, {"type": "server_error"}, {}, FailureKind.SERVER_ERROR, Layer.ROUTE),
        (
            408,
            {"code": "Timeout", "message": "The operation was timeout."},
            {"apim-request-id": "defdcbb8"},
            FailureKind.GATEWAY_TIMEOUT,
            Layer.GATEWAY,
        ),
        (504, {}, {}, FailureKind.GATEWAY_TIMEOUT, Layer.GATEWAY),
    ],
)
def test_error_responses(status, error, headers, kind, layer):
    failure = upstream_errors.from_response(status, headers, body(error))
    assert failure.kind is kind
    assert failure.layer is layer
    assert failure.http_status == status
    assert failure.sent is True
    assert failure.code == error.get("code")


def test_request_id_prefers_openai_then_apim():
    assert upstream_errors.request_id({"apim-request-id": "a"}) == "a"
    assert upstream_errors.request_id({"x-request-id": "x", "apim-request-id": "a"}) == "x"


@pytest.mark.parametrize(
    ("headers", "message", "wait", "source"),
    [
        ({"retry-after-ms": "1500", "retry-after": "9"}, "", 1.5, "retry-after-ms"),
        ({"retry-after": "9"}, "", 9.0, "retry-after"),
        ({"x-ratelimit-reset-requests": "6m0s"}, "", 360.0, "x-ratelimit-reset-requests"),
        ({"x-ratelimit-reset-requests": "-1"}, "Please try again in 12s.", 12.0, "message"),
        ({}, "Please try again in 120ms.", 0.12, "message"),
        ({}, "Please retry after 59 seconds.", 59.0, "message"),
        ({}, "Rate limit reached. Please try again in 1m30s.", 90.0, "message"),
        ({"x-ratelimit-reset-requests": "-1", "retry-after": "-1"}, "", None, None),
    ],
)
def test_retry_hints_in_order_of_trust(headers, message, wait, source):
    got_wait, got_source = upstream_errors.retry_hint(headers, message)
    assert got_wait == pytest.approx(wait) if wait is not None else got_wait is None
    assert got_source == source


@pytest.mark.parametrize(
    ("text", "seconds"), [("12ms", 0.012), ("1s", 1.0), ("6m0s", 360.0), ("1.5s", 1.5), ("x", None)]
)
def test_reset_durations(text, seconds):
    assert rate_headers.parse_duration(text) == (
        pytest.approx(seconds) if seconds is not None else None
    )


def test_mid_stream_error_events_azure_and_edits_shapes():
    azure = json.dumps(
        {
            "type": "error",
            "error": {"type": "server_error", "code": None, "message": "An error occurred"},
            "sequence_number": 2,
        }
    )
    failure = upstream_errors.from_stream_error(azure, {"apim-request-id": "r"})
    assert failure.kind is FailureKind.SERVER_ERROR
    assert failure.request_id == "r"
    edits = json.dumps(
        {
            "type": "error",
            "error": {"type": "image_generation_server_error", "code": "image_generation_failed"},
        }
    )
    assert upstream_errors.from_stream_error(edits, {}).code == "image_generation_failed"


@pytest.mark.parametrize(
    ("exc", "sent", "kind", "timeout", "sent_after"),
    [
        (httpx.ConnectTimeout("t"), False, FailureKind.LOCAL_TIMEOUT, "connect", False),
        (httpx.ReadTimeout("t"), True, FailureKind.LOCAL_TIMEOUT, "read_idle", True),
        (httpx.ConnectError("refused"), False, FailureKind.CONNECTION_LOST, None, False),
        (httpx.RemoteProtocolError("reset"), True, FailureKind.CONNECTION_LOST, None, True),
        (httpx.ReadError("reset"), True, FailureKind.CONNECTION_LOST, None, True),
    ],
)
def test_exceptions(exc, sent, kind, timeout, sent_after):
    failure = upstream_errors.from_exception(exc, sent=sent)
    assert failure.kind is kind
    assert failure.timeout == timeout
    assert failure.sent is sent_after


def test_the_whole_request_deadline_is_a_local_timeout_after_send():
    failure = upstream_errors.from_exception(
        httpx.ReadError("closed"), sent=True, deadline_hit=True
    )
    assert failure.kind is FailureKind.LOCAL_TIMEOUT
    assert failure.timeout == "request"
    assert failure.sent is True


@pytest.mark.parametrize("value", ["soon", "inf", "nan", "Wed, 99 Foo 2026 07:28:00 GMT"])
def test_an_unusable_retry_after_is_ignored_not_a_crash(value):
    assert upstream_errors.retry_hint({"retry-after": value}, "") == (None, None)


def test_no_key_like_text_is_carried_from_a_route_message():
    body = {
        "error": {
            "message": "Incorrect API key provided: sk-proj-********************wXyZ.",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    failure = upstream_errors.from_response(401, {}, json.dumps(body).encode())
    assert "wXyZ" not in failure.message
    assert failure.code == "invalid_api_key"
    other = upstream_errors.from_response(
        400, {}, json.dumps({"error": {"message": "bad key sk-abcd1234 here"}}).encode()
    )
    assert "abcd1234" not in other.message


# --- errors by family ----------------------------------------------------------------------------
#
# One row per member of each family: (type, code, the status it comes with as an answer, the
# kind, the kind as a stream error event when that differs: an event has no status, so a row
# whose kind only the status gives is read by its family there). Shapes as OpenAI and Azure send
# them (docs/reference/gpt-image-2-api.md, simulator/errors.py).
SAME = None
FAMILY_MEMBERS: list[tuple[str | None, str | None, int, FailureKind, FailureKind | None]] = [
    # The user's request is at fault: a rejection, never retried.
    ("image_generation_user_error", None, 400, FailureKind.REJECTED, SAME),
    ("image_generation_user_error", "moderation_blocked", 400, FailureKind.REJECTED, SAME),
    ("image_edit_user_error", None, 400, FailureKind.REJECTED, SAME),
    ("user_error", None, 400, FailureKind.REJECTED, SAME),
    ("invalid_request_error", None, 400, FailureKind.REJECTED, SAME),
    ("invalid_request_error", "invalid_value", 400, FailureKind.REJECTED, SAME),
    ("invalid_request_error", "invalid_type", 400, FailureKind.REJECTED, SAME),
    ("invalid_request_error", "missing_required_parameter", 400, FailureKind.REJECTED, SAME),
    ("invalid_request_error", "unknown_parameter", 400, FailureKind.REJECTED, SAME),
    ("invalid_request_error", "unsupported_parameter", 400, FailureKind.REJECTED, SAME),
    ("invalid_request_error", "string_above_max_length", 400, FailureKind.REJECTED, SAME),
    ("invalid_request_error", "image_too_large", 400, FailureKind.REJECTED, SAME),
    (None, "moderation_blocked", 400, FailureKind.REJECTED, SAME),
    (None, "content_policy_violation", 400, FailureKind.REJECTED, SAME),
    (None, "content_filter", 400, FailureKind.REJECTED, SAME),
    (None, "contentFilter", 400, FailureKind.REJECTED, SAME),
    (None, "ResponsibleAIPolicyViolation", 400, FailureKind.REJECTED, SAME),
    (None, "safety_violation", 400, FailureKind.REJECTED, SAME),
    (None, "BadRequest", 400, FailureKind.REJECTED, SAME),
    # The user's family wins over a status that says otherwise.
    ("image_generation_user_error", None, 500, FailureKind.REJECTED, SAME),
    # The service failed: a server error, retried a bounded number of times.
    ("server_error", None, 500, FailureKind.SERVER_ERROR, SAME),
    ("server_error", None, 503, FailureKind.SERVER_ERROR, SAME),
    ("image_generation_server_error", None, 500, FailureKind.SERVER_ERROR, SAME),
    (
        "image_generation_server_error",
        "image_generation_failed",
        500,
        FailureKind.SERVER_ERROR,
        SAME,
    ),
    ("image_edit_server_error", None, 500, FailureKind.SERVER_ERROR, SAME),
    (None, "image_generation_failed", 500, FailureKind.SERVER_ERROR, SAME),
    (None, "server_error", 500, FailureKind.SERVER_ERROR, SAME),
    ("api_error", None, 500, FailureKind.SERVER_ERROR, SAME),
    (None, "internal_error", 500, FailureKind.SERVER_ERROR, SAME),
    (None, "InternalServerError", 500, FailureKind.SERVER_ERROR, SAME),
    (None, "ServiceUnavailable", 503, FailureKind.SERVER_ERROR, SAME),
    (None, "engine_overloaded", 503, FailureKind.SERVER_ERROR, SAME),
    # Billing: never retried.
    ("insufficient_quota", "insufficient_quota", 429, FailureKind.QUOTA_EXHAUSTED, SAME),
    ("invalid_request_error", "billing_hard_limit_reached", 400, FailureKind.QUOTA_EXHAUSTED, SAME),
    ("invalid_request_error", "billing_not_active", 429, FailureKind.QUOTA_EXHAUSTED, SAME),
    # Rate limits: waited out.
    ("requests", "rate_limit_exceeded", 429, FailureKind.RATE_LIMITED, SAME),
    ("tokens", "rate_limit_exceeded", 429, FailureKind.RATE_LIMITED, SAME),
    (None, "429", 429, FailureKind.RATE_LIMITED, SAME),
    (None, "RateLimitExceeded", 429, FailureKind.RATE_LIMITED, SAME),
    # Credentials not accepted (401).
    ("invalid_request_error", "invalid_api_key", 401, FailureKind.AUTH_FAILED, SAME),
    (None, "401", 401, FailureKind.AUTH_FAILED, SAME),
    (None, "InvalidAuthenticationToken", 401, FailureKind.AUTH_FAILED, SAME),
    ("authentication_error", None, 401, FailureKind.AUTH_FAILED, SAME),
    ("invalid_request_error", None, 401, FailureKind.AUTH_FAILED, FailureKind.REJECTED),
    # Credentials accepted, access refused (403).
    ("invalid_request_error", None, 403, FailureKind.PERMISSION_DENIED, FailureKind.REJECTED),
    (None, "PermissionDenied", 403, FailureKind.PERMISSION_DENIED, SAME),
    (None, "AuthorizationFailed", 403, FailureKind.PERMISSION_DENIED, SAME),
    (None, "unsupported_country_region_territory", 403, FailureKind.PERMISSION_DENIED, SAME),
    ("permission_error", None, 403, FailureKind.PERMISSION_DENIED, SAME),
    # No such model, deployment or path (404).
    ("invalid_request_error", "model_not_found", 404, FailureKind.NOT_FOUND, SAME),
    (None, "DeploymentNotFound", 404, FailureKind.NOT_FOUND, SAME),
    (None, "404", 404, FailureKind.NOT_FOUND, SAME),
    ("not_found_error", None, 404, FailureKind.NOT_FOUND, SAME),
    ("invalid_request_error", None, 404, FailureKind.NOT_FOUND, FailureKind.REJECTED),
    # No family at all: the status decides; in a stream, the generation failed.
    (None, None, 400, FailureKind.REJECTED, FailureKind.SERVER_ERROR),
    (None, None, 401, FailureKind.AUTH_FAILED, FailureKind.SERVER_ERROR),
    (None, None, 403, FailureKind.PERMISSION_DENIED, FailureKind.SERVER_ERROR),
    (None, None, 404, FailureKind.NOT_FOUND, FailureKind.SERVER_ERROR),
    (None, None, 413, FailureKind.REJECTED, FailureKind.SERVER_ERROR),
    (None, None, 422, FailureKind.REJECTED, FailureKind.SERVER_ERROR),
    (None, None, 429, FailureKind.RATE_LIMITED, FailureKind.SERVER_ERROR),
    (None, None, 500, FailureKind.SERVER_ERROR, SAME),
    (None, None, 503, FailureKind.SERVER_ERROR, SAME),
]


def _error(error_type: str | None, code: str | None) -> dict[str, object]:
    error: dict[str, object] = {"message": "m", "type": error_type, "param": None, "code": code}
    if code == "ResponsibleAIPolicyViolation":  # Azure puts it under innererror
        error["code"] = None
        error["innererror"] = {"code": code}
    return error


@pytest.mark.parametrize(
    ("error_type", "code", "status", "kind", "in_stream"),
    FAMILY_MEMBERS,
    ids=[f"{t}/{c}/{s}" for t, c, s, _, _ in FAMILY_MEMBERS],
)
def test_every_family_member_as_an_answer_and_as_a_stream_error_event(
    error_type, code, status, kind, in_stream
):
    error = _error(error_type, code)
    answer = upstream_errors.from_response(status, {}, body(error))
    assert answer.kind is kind
    assert answer.layer is Layer.ROUTE
    event = {"type": "error", "error": error, "sequence_number": 0}
    streamed = upstream_errors.from_stream_error(json.dumps(event), {})
    assert streamed.kind is (in_stream or kind)
    assert streamed.http_status == 200
    assert (answer.error_type, answer.code) == (streamed.error_type, streamed.code)


def test_a_safety_rejection_mid_stream_is_never_retried():
    """OpenAI's style: an error event of the user's family before any partial image."""
    event = {
        "type": "error",
        "error": {
            "type": "image_generation_user_error",
            "code": None,
            "message": "Your request was rejected by the safety system. If you believe this is "
            "an error, contact us at help.openai.com and include the request ID req_1.",
            "param": None,
        },
    }
    failure = upstream_errors.from_stream_error(json.dumps(event), {"x-request-id": "req_1"})
    assert failure.kind is FailureKind.REJECTED
    assert "safety system" in failure.message
    decision = decide(failure, attempt=1, previous=[], policy=RetryPolicy(), jitter=0.0)
    assert decision.retry is False
    assert decision.failure == "returned_error"


@pytest.mark.parametrize(
    "event",
    [
        {"type": "error", "error": {"type": "server_error", "code": "c", "message": "boom"}},
        {"error": {"type": "server_error", "code": "c", "message": "boom"}},
        {"type": "error", "code": "c", "message": "boom", "param": None},
    ],
    ids=["nested", "nested-untyped", "flat"],
)
def test_stream_error_events_in_every_form(event):
    failure = upstream_errors.from_stream_error(json.dumps(event), {})
    assert failure.kind is FailureKind.SERVER_ERROR
    assert failure.code == "c"
    assert failure.message == "boom"
    text_only = upstream_errors.from_stream_error(json.dumps({"error": "it broke"}), {})
    assert text_only.kind is FailureKind.SERVER_ERROR
    assert text_only.message == "it broke"


def test_a_403_for_an_unverified_organization_keeps_the_routes_words():
    message = (
        "Your organization must be verified to use the model `gpt-image-2`. Please go to: "
        "https://platform.openai.com/settings/organization/general and click on Verify "
        "Organization. If you just verified, it can take up to 15 minutes for access to "
        "propagate."
    )
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    failure = upstream_errors.from_response(403, {"x-request-id": "req_9"}, body(error))
    assert failure.kind is FailureKind.PERMISSION_DENIED
    assert failure.message == message
    assert failure.error_type == "invalid_request_error"
    assert failure.request_id == "req_9"
    decision = decide(failure, attempt=1, previous=[], policy=RetryPolicy(), jitter=0.0)
    assert decision.retry is False


def test_a_401_keeps_the_routes_words_without_the_key():
    azure = {
        "code": "401",
        "message": "Access denied due to invalid subscription key or wrong API endpoint.",
    }
    failure = upstream_errors.from_response(401, {}, body(azure))
    assert failure.kind is FailureKind.AUTH_FAILED
    assert failure.message == azure["message"]
    assert failure.code == "401"


@pytest.mark.parametrize(
    ("status", "error", "param"),
    [
        (400, {"type": "invalid_request_error", "code": "invalid_value", "param": "size"}, "size"),
        (
            400,
            {"type": "invalid_request_error", "code": "content_filter", "param": "prompt"},
            "prompt",
        ),
        (400, {"code": "contentFilter", "message": "x"}, None),
    ],
)
def test_the_routes_param_is_kept(status, error, param):
    failure = upstream_errors.from_response(status, {}, body(error))
    assert failure.param == param
    assert failure.error_type == error.get("type")
    assert failure.code == error.get("code")
    event = {"type": "error", "error": error}
    assert upstream_errors.from_stream_error(json.dumps(event), {}).param == param


# --- redaction -----------------------------------------------------------------------------------

KEY = "sk-proj-Q7vTzLmK2pX9aBcDeFgHiJkLmNoPwXyZ"
PROMPT = "A red apple on a white background, studio light, 85mm lens, soft shadow"
SECRETS = redaction.Secrets.of(("authorization", f"Bearer {KEY}"), PROMPT)


@pytest.mark.parametrize(
    "text",
    [
        f"Incorrect API key provided: {KEY}.",
        "Incorrect API key provided: sk-proj-********************wXyZ.",
        "Incorrect API key provided: sk-...wXyZ. You can find your API key at ...",
        "Incorrect API key provided: sk-proj-Q7vT\u2026wXyZ",
        f"the key '{KEY[:14]}' is not active",
        f"the key ending {KEY[-10:]} is not active",
        f"the key ending in {KEY[-4:]} is not active",
        f"request req_{KEY[-6:]} failed",
        f"Authorization: Bearer {KEY}",
        f"Your prompt '{PROMPT}' was rejected by the safety system.",
        f"Your prompt '{PROMPT[:20]}...' was rejected by the safety system.",
        f"The prompt (first 30 characters: {PROMPT[:30]!r}) was rejected.",
        f"... {PROMPT[-24:]} was rejected.",
        f"rejected: {PROMPT.upper()}",
        f"rejected: {PROMPT.replace(' ', '  ')}",
        f"rejected: {PROMPT[10:40]}",
    ],
)
def test_redact_removes_the_key_and_the_prompt_whole_or_in_part(text):
    redacted = redaction.redact(text, SECRETS)
    assert KEY not in redacted
    for piece in (KEY[-4:], KEY[8:16], PROMPT[:8], PROMPT[-8:], PROMPT[10:26]):
        assert piece.lower() not in redacted.lower(), (piece, redacted)
    assert "[redacted" in redacted


@pytest.mark.parametrize(
    "text",
    [
        "Your request was rejected by the safety system. If you believe this is an error, "
        "contact us at help.openai.com and include the request ID req_1.",
        "Invalid value: '1000x1000'. Supported values are: '1024x1024', '1536x1024'.",
        "The model `gpt-image-2` does not exist or you do not have access to it.",
        "Rate limit reached for gpt-image-2 on images per min (IPM). Please try again in 12s.",
    ],
)
def test_redact_leaves_text_without_the_key_or_the_prompt_as_it_is(text):
    assert redaction.redact(text, SECRETS) == text


def test_a_short_key_or_prompt_counts_only_as_a_whole_word():
    secrets = redaction.Secrets.of(("api-key", "k9z"), "cat")
    assert redaction.redact("key k9z: a cat, category, k9zz", secrets) == (
        "key [redacted key]: a [redacted prompt], category, k9zz"
    )
    # One or two characters: nothing to tell from chance, nothing to hide.
    tiny = redaction.Secrets.of(("api-key", "k"), "a")
    assert redaction.redact("a key k", tiny) == "a key k"


def test_redact_failure_covers_every_field_copied_from_upstream():
    failure = upstream_errors.from_response(
        400,
        {"x-request-id": f"req-{KEY}"},
        body(
            {
                "message": f"prompt {PROMPT[:25]} and key {KEY}",
                "type": f"user_error {KEY}",
                "code": f"code-{PROMPT}",
                "param": f"param {KEY}",
            }
        ),
    )
    clean = redaction.redact_failure(failure, SECRETS)
    text = json.dumps(clean.to_json())
    assert KEY not in text
    assert KEY[-4:] not in text
    assert PROMPT[:20] not in text
    assert clean.kind is failure.kind
    assert len(redaction.redact("x" * 10_000, SECRETS)) == redaction.MESSAGE_MAX


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "see https://acct.blob.core.windows.net/c/b.png?sv=1&sig=abc%3D.",
            "see https://acct.blob.core.windows.net/c/b.png.",
        ),
        ("at http://user:pass@host:8080/p?code=abc#frag", "at http://host:8080/p"),
        (
            "https://platform.openai.com/account/api-keys.",
            "https://platform.openai.com/account/api-keys.",
        ),
    ],
)
def test_a_link_a_route_echoes_keeps_no_query_string_fragment_or_user_info(text, expected):
    # A signed link's signature or a ?code= is a credential: gone wherever upstream text goes.
    assert redaction.scrub(text) == expected
    assert redaction.redact(text, SECRETS) == expected
