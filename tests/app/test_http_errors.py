"""The HTTP edge's one failure mapping: every exception kind the handlers can meet is mapped to
a JSON error envelope, and every error class of the project has an answer of its own (a new
class without one fails here), in the manner of httpx's map_httpcore_exceptions test."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import ServiceRequestError

from http_api.errors import (
    BatchNotFound,
    IdentityRequired,
    JobNotEnded,
    JobNotFound,
    KeyConflict,
    MethodNotAllowed,
    NoFreeJobId,
    NoSuchRoute,
    StoreUnavailable,
    UnsupportedMediaType,
    answer_for,
)
from rules.batches import ManifestInvalid
from rules.errors import ImageJobError, RequestInvalid, SettingsInvalid
from rules.records import RecordUnreadable

# Every kind, with the answer it must get: (status, code, field).
CASES: list[tuple[BaseException, int, str, str]] = [
    (RequestInvalid("size", "invalid_value", "bad size"), 400, "invalid_value", "size"),
    (JobNotFound("img-1"), 404, "not_found", "id"),
    (BatchNotFound("bat-1"), 404, "not_found", "id"),
    (ManifestInvalid("manifest", "empty", "no line"), 400, "empty", "manifest"),
    (KeyConflict("img-1"), 409, "idempotency_key_reused", "Idempotency-Key"),
    (JobNotEnded("img-1"), 409, "job_not_ended", "id"),
    (IdentityRequired(), 403, "identity_required", "x-ms-client-principal-id"),
    (NoSuchRoute("nope"), 404, "no_such_route", "path"),
    (MethodNotAllowed("PUT", ("POST",)), 405, "method_not_allowed", "method"),
    (UnsupportedMediaType("text/plain"), 415, "unsupported_media_type", "Content-Type"),
    (StoreUnavailable("down", job_id="img-1"), 503, "store_error", "service"),
    (
        RecordUnreadable("outcome", "schema version 9 is newer than 1"),
        503,
        "record_unreadable",
        "service",
    ),
    (TimeoutError(), 503, "store_timeout", "service"),
    (ServiceRequestError("connection refused"), 503, "store_error", "service"),
    (SettingsInvalid("IMAGE_ROUTES", "empty"), 500, "settings_invalid", "settings"),
    (NoFreeJobId("img-1", 100), 500, "no_free_job_id", "Idempotency-Key"),
    (ZeroDivisionError("a bug"), 500, "internal_error", "service"),
    (ImageJobError("an unclassified error of ours"), 500, "internal_error", "service"),
]


def _subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    sub: type
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def test_every_error_class_of_the_project_has_a_case_here():
    import http_api.errors
    import rules.records

    assert rules.errors  # the base module is loaded too
    covered = {type(exc) for exc, *_ in CASES}
    assert _subclasses(ImageJobError) - {http_api.errors.EdgeError} <= covered


@pytest.mark.parametrize(("exc", "status", "code", "field"), CASES)
def test_each_kind_is_mapped_to_its_json_answer(exc, status, code, field):
    response = answer_for(exc)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = json.loads(response.get_body())
    assert body == {"error": {"code": code, "message": body["error"]["message"], "field": field}}
    assert body["error"]["message"]
    assert "Traceback" not in body["error"]["message"]
    if status == 503:
        assert response.headers["Retry-After"] == "5"


def test_only_what_is_not_ours_falls_through_to_internal_error():
    for exc, _, code, _ in CASES:
        if code == "internal_error":
            assert type(exc) in (ZeroDivisionError, ImageJobError)


def test_no_setting_value_or_message_text_of_a_bug_reaches_the_answer():
    body = answer_for(SettingsInvalid("IMAGE_JOB_ID_SECRET", "sk-secret-value is too short"))
    assert b"sk-secret-value" not in body.get_body()
    body = answer_for(RuntimeError("key=sk-live-123"))
    assert b"sk-live-123" not in body.get_body()
