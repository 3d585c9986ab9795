"""Every upstream case of the API reference maps to one Failure record (translated in one place)."""

from __future__ import annotations

import json

import httpx
import pytest

from activities import upstream_errors
from rules.outcome import FailureKind, Layer


def body(error: dict[str, object]) -> bytes:
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
        (403, {"type": "invalid_request_error"}, {}, FailureKind.AUTH_FAILED, Layer.ROUTE),
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
    assert upstream_errors.parse_duration(text) == (
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
