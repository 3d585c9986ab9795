"""The error envelopes: exact real shapes, the right keys only, and OpenAPI conformance."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from simulator import errors
from simulator.errors import ApiError
from simulator_tests.openapi_schema import violations

OPENAI_SHAPED: dict[str, Callable[[], ApiError]] = {
    "invalid_request": lambda: errors.invalid_request("bad", param="size", code="invalid_value"),
    "unknown_parameter": lambda: errors.unknown_parameter("foo"),
    "unsupported_parameter": lambda: errors.unsupported_parameter("input_fidelity", "gpt-image-2"),
    "missing_parameter": lambda: errors.missing_parameter("prompt"),
    "invalid_type": lambda: errors.invalid_type("n", "an integer", "a string"),
    "invalid_json": errors.invalid_json,
    "openai_invalid_api_key": errors.openai_invalid_api_key,
    "openai_missing_api_key": errors.openai_missing_api_key,
    "model_not_found": lambda: errors.model_not_found("gpt-image-9"),
    "permission_denied": errors.permission_denied,
    "rate_limit_exceeded": lambda: errors.rate_limit_exceeded(12),
    "insufficient_quota": errors.insufficient_quota,
    "server_error": errors.server_error,
    "server_error_503": lambda: errors.server_error(503),
    "moderation_blocked": errors.moderation_blocked,
    "content_filter": lambda: errors.azure_content_filter("content_filter"),
    "image_generation_failed": errors.image_generation_failed,
    "mid_stream_server_error": errors.mid_stream_server_error,
}

AZURE_SHAPED: dict[str, Callable[[], ApiError]] = {
    "azure_access_denied": errors.azure_access_denied,
    "azure_deployment_not_found": errors.azure_deployment_not_found,
    "azure_permission_denied": errors.azure_permission_denied,
    "contentFilter": lambda: errors.azure_content_filter("contentFilter"),
    "apim_timeout": errors.apim_timeout,
    "proxy_timeout": errors.proxy_timeout,
}


@pytest.mark.parametrize("make", OPENAI_SHAPED.values(), ids=OPENAI_SHAPED.keys())
def test_openai_shaped_errors_carry_all_four_keys_and_fit_the_openapi_error(make):
    error = make()
    body = error.envelope()
    inner = body["error"]
    assert isinstance(inner, dict)
    assert {"message", "type", "param", "code"} <= inner.keys()
    assert inner["message"] == error.message
    if error.type is not None:  # the Azure content_filter shape has type null, as the real one
        assert violations(body, "ErrorResponse") == []


@pytest.mark.parametrize("make", AZURE_SHAPED.values(), ids=AZURE_SHAPED.keys())
def test_azure_shaped_errors_carry_only_code_and_message(make):
    body = make().envelope()
    assert list(body) == ["error"]
    assert set(body["error"]) == {"code", "message"}


def test_apim_timeout_is_byte_for_byte_the_real_body():
    error = errors.apim_timeout()
    assert error.status == 408
    assert error.envelope() == {
        "error": {"code": "Timeout", "message": "The operation was timeout."}
    }


def test_azure_401_and_404_are_the_real_bodies():
    denied = errors.azure_access_denied()
    assert denied.status == 401
    assert denied.envelope()["error"]["code"] == "401"  # type: ignore[index]
    assert denied.message.startswith(
        "Access denied due to invalid subscription key or wrong API endpoint."
    )
    missing = errors.azure_deployment_not_found()
    assert (missing.status, missing.code) == (404, "DeploymentNotFound")


@pytest.mark.parametrize(
    ("make", "status", "type_", "code"),
    [
        (lambda: errors.unknown_parameter("x"), 400, "invalid_request_error", "unknown_parameter"),
        (errors.openai_invalid_api_key, 401, "invalid_request_error", "invalid_api_key"),
        (errors.permission_denied, 403, "invalid_request_error", None),
        (lambda: errors.model_not_found("m"), 404, "invalid_request_error", "model_not_found"),
        (lambda: errors.rate_limit_exceeded(1), 429, "requests", "rate_limit_exceeded"),
        (errors.insufficient_quota, 429, "insufficient_quota", "insufficient_quota"),
        (errors.server_error, 500, "server_error", None),
        (lambda: errors.server_error(502), 502, "server_error", None),
        (errors.moderation_blocked, 400, "image_generation_user_error", "moderation_blocked"),
        (errors.proxy_timeout, 504, None, "GatewayTimeout"),
    ],
)
def test_each_documented_error_case_has_its_status_type_and_code(make, status, type_, code):
    error = make()
    assert (error.status, error.type, error.code) == (status, type_, code)


@pytest.mark.parametrize(
    ("wait_s", "ending"),
    [
        (12, "Please try again in 12s."),
        (1.5, "Please try again in 1.5s."),
        (0.12, "Please try again in 120ms."),
        (0.0001, "Please try again in 1ms."),
        (2.3456, "Please try again in 2.346s."),
    ],
)
def test_rate_limit_message_ends_with_the_wait_written_like_openai(wait_s, ending):
    error = errors.rate_limit_exceeded(wait_s, limit=5, used=5)
    assert error.message.endswith(ending)
    assert "Limit 5, Used 5, Requested 1" in error.message


def test_rate_limit_error_carries_the_headers_it_is_given():
    error = errors.rate_limit_exceeded(3, headers={"retry-after": "3"})
    assert error.headers == {"retry-after": "3"}


def test_format_wait_refuses_negative_waits():
    with pytest.raises(ValueError, match="negative"):
        errors.format_wait(-1)


def test_server_error_refuses_a_non_5xx_status():
    with pytest.raises(ValueError, match="5xx"):
        errors.server_error(404)


def test_content_filter_innererror_names_the_policy():
    inner = errors.azure_content_filter("content_filter").envelope()["error"]
    assert isinstance(inner, dict)
    assert inner["code"] == "content_filter"
    assert inner["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    with pytest.raises(ValueError, match="content filter style"):
        errors.azure_content_filter("other")  # type: ignore[arg-type]


def test_moderation_blocked_carries_details_and_the_request_id_but_no_prompt():
    error = errors.moderation_blocked("req_123")
    assert error.extra["moderation_details"]
    assert error.message.endswith("include the request ID req_123.")


def test_azure_stream_error_event_has_the_shape_seen_on_azure():
    event = errors.stream_error_event(
        errors.mid_stream_server_error(), style="azure", sequence_number=2
    )
    assert event == {
        "type": "error",
        "error": {
            "type": "server_error",
            "code": None,
            "message": "An error occurred while processing the request.",
            "param": None,
        },
        "sequence_number": 2,
    }


def test_openai_stream_error_event_has_an_error_object_and_no_sequence_number():
    event = errors.stream_error_event(errors.image_generation_failed(), style="openai")
    assert event["type"] == "error"
    assert "sequence_number" not in event
    assert violations(event["error"], "Error") == []
    assert event["error"]["code"] == "image_generation_failed"  # type: ignore[index]


def test_stream_error_event_refuses_an_unknown_style():
    with pytest.raises(ValueError, match="style"):
        errors.stream_error_event(errors.server_error(), style="other")  # type: ignore[arg-type]


def test_repr_names_the_case_without_the_message():
    text = repr(errors.unknown_parameter("foo"))
    assert "unknown_parameter" in text
    assert "Unknown parameter" not in text


def test_long_waits_are_written_in_minutes_like_the_headers():
    assert errors.rate_limit_exceeded(372.5).message.endswith("Please try again in 6m12.5s.")
    assert errors.format_wait(0) == "1ms"


def test_rate_limit_message_names_the_window_and_the_requested_count():
    error = errors.rate_limit_exceeded(2, window="requests", limit=2, used=2, requested=1)
    assert "on requests per min (RPM): Limit 2, Used 2, Requested 1." in error.message
    error = errors.rate_limit_exceeded(2, window="images", limit=5, used=4, requested=3)
    assert "on images per min (IPM): Limit 5, Used 4, Requested 3." in error.message


@pytest.mark.parametrize(("wait_s", "seconds"), [(12, 12), (11.2, 12), (0.01, 1)])
def test_azure_rate_limit_is_azures_envelope_with_whole_seconds(wait_s, seconds):
    error = errors.azure_rate_limit_exceeded(wait_s, api_version="2025-04-01-preview")
    assert error.status == 429
    assert set(error.error_object()) == {"code", "message"}
    assert error.code == "429"
    assert error.message.startswith(
        "Requests to the Images_Generations Operation under Azure OpenAI API version "
        "2025-04-01-preview have exceeded call rate limit of your current OpenAI S0 pricing tier."
    )
    assert f"Please retry after {seconds} seconds." in error.message


def test_request_too_large_is_the_openai_envelope():
    error = errors.request_too_large(1024)
    assert error.status == 413
    assert error.envelope() == {
        "error": {
            "message": error.message,
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_mid_stream_error_with_code_image_generation_failed_is_the_edits_error():
    error = errors.mid_stream_server_error(code="image_generation_failed")
    assert (error.message, error.type, error.code) == (
        "Image generation failed",
        "image_generation_server_error",
        "image_generation_failed",
    )
    assert errors.mid_stream_server_error(message="boom").message == "boom"
