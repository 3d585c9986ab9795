"""Every error answer's codes, by status, and the error answers only some operations give: the
vocabulary the document's error schemas and responses are built from (http_api.openapi)."""

from __future__ import annotations

from http_api.caller import PRINCIPAL_HEADER
from rules.client_timings import MAX_MS
from rules.webhooks import WEBHOOK_FIELD

# The `code` of every error answer, by status (http_api.errors.answer_for; docs/job-contract.md).
# A 400's codes come from request validation (rules.request, rules.inputs, rules.batches,
# http_api.inputs); tests/app/test_openapi.py finds every code the product raises in this list.
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: (
        "invalid_json",
        "invalid_type",
        "invalid_value",
        "missing",
        "unknown_field",
        "unsupported",
        "too_long",
        # A query parameter the endpoint does not take (or a known one, wrongly cased).
        "unknown_parameter",
        # An edit's inputs.
        "too_many",
        "too_large",
        "unreadable_image",
        "unsupported_format",
        "size_mismatch",
        "no_alpha",
        "upload_not_found",
        "blob_not_found",
        "invalid_multipart",
        # A batch's manifest as a whole.
        "invalid_encoding",
        "empty",
        "too_many_items",
        "no_valid_line",
    ),
    403: ("identity_required",),
    404: ("not_found",),
    409: ("idempotency_key_reused",),
    415: ("unsupported_media_type",),
    500: ("settings_invalid", "no_free_job_id", "internal_error"),
    503: ("store_error", "store_timeout", "blob_timeout", "record_unreadable"),
}
# What a bad line of a batch's manifest is reported as (lineErrors[].code): a 400's codes of a
# start request, and a custom_id that repeats.
LINE_ERROR_CODES = (*ERROR_CODES[400][:7], "duplicate")

_ERROR_TEXT = {
    400: "The request is refused: `field` names what is wrong (a body field, `images[i]`, "
    "`mask`, `body`, a header or a query parameter). A query parameter the operation does not "
    "list is refused (`unknown_parameter`; one that differs from a listed one only by case "
    "names the right spelling); a boolean one is `true` or `false`, in any case.",
    403: "Only a caller with an identity of its own (Easy Auth's principal) may list jobs.",
    404: "No such job or batch, or not this caller's (the same answer, so ids cannot be probed).",
    409: "This Idempotency-Key was used for a different request body.",
    415: "A body declared as a type the operation does not take: the message names those it takes.",
    500: "The service is misconfigured, or failed (a bug); the message says no more.",
    503: "The durable job store or Blob storage failed (`store_error`, the message names which) "
    "or did not answer in time (`store_timeout`: the job store; `blob_timeout`: Blob): try "
    "again after Retry-After seconds. Never taken for 'absent'.",
}
# Error answers that only some operations give, each with the codes it has: a schema and a
# response of their own, so that an operation lists exactly the codes it answers with.
ERROR_VARIANTS: dict[str, tuple[int, tuple[str, ...], str]] = {
    "Error400ClientTimings": (
        400,
        (
            "invalid_json",
            "invalid_type",
            "invalid_value",
            "missing",
            "unknown_field",
            "unknown_parameter",
        ),
        "The report is not `{downloadMs, renderMs}`, each a number of 0 to "
        f"{MAX_MS}: `field` names the body field (or `body`).",
    ),
    "Error400Caller": (
        400,
        ("invalid_value", "unknown_parameter"),
        f"The principal header ({PRINCIPAL_HEADER}) is not a principal id: Easy Auth sets a "
        "short printable one, so it did not come from there (`invalid_value`); or a query "
        "parameter the operation does not take (`unknown_parameter`).",
    ),
    "Error400WebhookSecret": (
        400,
        ("unsupported", "invalid_value", "unknown_parameter"),
        "Webhooks are off on this service (no IMAGE_WEBHOOK_SECRET: `unsupported`, field "
        f"{WEBHOOK_FIELD}), the principal header is not a principal id (`invalid_value`), or a "
        "query parameter it does not take (`unknown_parameter`).",
    ),
    "Error404NoSuchFile": (
        404,
        ("no_such_route",),
        "The page has no file of this name: the JSON 404 of every unknown path (`field` path).",
    ),
    "Error409JobNotEnded": (
        409,
        ("job_not_ended",),
        "The job has no metadata.json yet (it is running, or its record could not be written): "
        "report again once it ended.",
    ),
}
