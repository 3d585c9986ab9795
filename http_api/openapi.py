"""The OpenAPI 3.1 document of the whole HTTP API, served at ``GET /api/openapi.json``.

Built here in Python rather than kept as a JSON file, so that the vocabularies it lists (job
and batch states, failure kinds and layers, the model's qualities and formats, the request's
fields) are the code's own, and cannot drift from it:

    document()        # the document (a fresh copy: callers may change it)
    serve(req)        # the 200 answer with it

It is kept true by tests, not by care: tests/app/test_openapi.py holds every HTTP function of
function_app against the document's paths and methods (both ways), validates every answer the
handler tests produce against the document's response schema and headers, and fails on a field
the document lists that no answer has; tests/e2e/test_openapi_fuzz.py fuzzes the running app
from the document (schemathesis) and checks every answer against it.

Besides the JSON API it describes the web page's answers (its files as text/html,
text/javascript and text/css, a 304, the 308 to its folder, each with its headers) and, as
OpenAPI's ``webhooks``, the event a job's ``webhookUrl`` is sent: what the service itself
requests, which tests/e2e/test_webhooks.py holds every delivery against.

The document is the same for every deployment: it names no route, host or setting's value, so
it is served anonymously (clients and tools read it before they hold a key) and says nothing
that the repository's docs do not.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import azure.functions as func

from http_api.caller import PRINCIPAL_HEADER
from http_api.web_page import INDEX, MEDIA_TYPES, content_security_policy
from rules.batch_records import BatchState
from rules.batches import MAX_CUSTOM_ID_CHARS, MAX_ITEMS, BatchMode
from rules.client_timings import MAX_MS
from rules.dedup import MAX_KEY_CHARS
from rules.evidence import EVIDENCE_VERSION, SERVICE_VERSION
from rules.inputs import INLINE_JSON_MAX_BYTES, INLINE_MULTIPART_MAX_BYTES
from rules.job_records import TERMINAL_STATES, JobState
from rules.models import GPT_IMAGE_2, ROUTE_OWNERS
from rules.outcome import FailureKind, Layer
from rules.request import FIELDS
from rules.route_records import Priority
from rules.webhooks import MAX_URL_CHARS, SECRET_PREFIX, WEBHOOK_FIELD, DeliveryState, EventType
from storage.protocol import JSON

Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"
# Where the document is served, under the host's /api prefix (http_api.blueprint).
ROUTE = "openapi.json"

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
    503: ("store_error", "store_timeout", "record_unreadable"),
}
# What a bad line of a batch's manifest is reported as (lineErrors[].code): a 400's codes of a
# start request, and a custom_id that repeats.
LINE_ERROR_CODES = (*ERROR_CODES[400][:7], "duplicate")

_ERROR_TEXT = {
    400: "The request is refused: `field` names what is wrong (a body field, `images[i]`, "
    "`mask`, `body`, a header or a query parameter).",
    403: "Only a caller with an identity of its own (Easy Auth's principal) may list jobs.",
    404: "No such job or batch, or not this caller's (the same answer, so ids cannot be probed).",
    409: "This Idempotency-Key was used for a different request body.",
    415: "A body declared as neither JSON (nor multipart/form-data for an edit).",
    500: "The service is misconfigured, or failed (a bug); the message says no more.",
    503: "The job store or Blob Storage failed or did not answer in time: try again after "
    "Retry-After seconds. Never taken for 'absent'.",
}
# Error answers that only some operations give, each with the codes it has: a schema and a
# response of their own, so that an operation lists exactly the codes it answers with.
ERROR_VARIANTS: dict[str, tuple[int, tuple[str, ...], str]] = {
    "Error400ClientTimings": (
        400,
        ("invalid_json", "invalid_type", "invalid_value", "missing", "unknown_field"),
        "The report is not `{downloadMs, renderMs}`, each a number of 0 to "
        f"{MAX_MS}: `field` names the body field (or `body`).",
    ),
    "Error400Caller": (
        400,
        ("invalid_value",),
        f"The principal header ({PRINCIPAL_HEADER}) is not a principal id: Easy Auth sets a "
        "short printable one, so it did not come from there.",
    ),
    "Error400WebhookSecret": (
        400,
        ("unsupported", "invalid_value"),
        "Webhooks are off on this service (no IMAGE_WEBHOOK_SECRET: `unsupported`, field "
        f"{WEBHOOK_FIELD}), or the principal header is not a principal id (`invalid_value`).",
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


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    """``schema`` or null. A plain typed schema gets null among its types; anything else (a
    reference, an enum) becomes ``anyOf`` with null."""
    if "type" in schema and "enum" not in schema and "const" not in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return {**schema, "type": [*types, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _not_null(schema: Schema) -> Schema:
    """What ``_nullable`` made of ``schema``, back."""
    if "anyOf" in schema:
        return dict(schema["anyOf"][0])
    if isinstance(schema.get("type"), list):
        return {**schema, "type": schema["type"][0]}
    return schema


def _object(
    required: dict[str, Schema],
    optional: dict[str, Schema] | None = None,
    *,
    description: str | None = None,
) -> Schema:
    """A closed object: the answer has every ``required`` field, may have the ``optional``
    ones, and has no other."""
    schema: Schema = {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def _described(schema: Schema, description: str) -> Schema:
    return {**schema, "description": description} if description else schema


def _text(description: str = "", **extra: Any) -> Schema:
    return _described({"type": "string", **extra}, description)


def _integer(description: str = "", **extra: Any) -> Schema:
    return _described({"type": "integer", **extra}, description)


def _number(description: str = "", **extra: Any) -> Schema:
    return _described({"type": "number", **extra}, description)


def _moment(description: str = "") -> Schema:
    return _described({"type": "string", "format": "date-time"}, description)


def _url(description: str = "") -> Schema:
    return _described({"type": "string", "format": "uri"}, description)


def _enum(values: Any, description: str = "") -> Schema:
    return _described({"type": "string", "enum": [str(v) for v in values]}, description)


def _counts_by(keys: Any, description: str) -> Schema:
    return {
        "type": "object",
        "propertyNames": {"enum": [str(k) for k in keys]},
        "additionalProperties": {"type": "integer", "minimum": 0},
        "description": description,
    }


# --- the request ---------------------------------------------------------------------------

_RULES = GPT_IMAGE_2
_FORMATS = sorted(set().union(*_RULES.output_formats.values()))


def _request_fields() -> dict[str, Schema]:
    """The fields of a start request (rules.request.FIELDS) but the edit's inputs."""
    sizes = _RULES.sizes
    fields: dict[str, Schema] = {
        "prompt": _text(
            f"What to draw; 1 to {_RULES.prompt_max_chars:,} characters, not only white space. "
            "Never shown back unless asked (`?includePrompt=true`), never logged.",
            minLength=1,
            maxLength=_RULES.prompt_max_chars,
            examples=["a red apple on a white background, studio light"],
        ),
        "size": _nullable(
            _text(
                "`auto` or `WIDTHxHEIGHT`: both edges multiples of "
                f"{sizes.multiple_of}, the longest at most {sizes.max_edge}, the long edge at "
                f"most {sizes.max_ratio:g} times the short, {sizes.min_pixels:,} to "
                f"{sizes.max_pixels:,} pixels. null or absent: IMAGE_DEFAULT_SIZE.",
                pattern=r"^(auto|[1-9][0-9]{0,4}x[1-9][0-9]{0,4})$",
                examples=["1024x1024", "1536x1024", "auto"],
            )
        ),
        "quality": _nullable(
            _enum(sorted(_RULES.qualities), "null or absent: IMAGE_DEFAULT_QUALITY.")
        ),
        "output_format": _nullable(
            _enum(
                _FORMATS,
                "The stored image's format; an Azure route takes png and jpeg only. null or "
                "absent: IMAGE_DEFAULT_OUTPUT_FORMAT.",
            )
        ),
        "output_compression": _nullable(
            _integer(
                "0-100, for jpeg and webp only. null or absent: the model's default.",
                minimum=0,
                maximum=100,
            )
        ),
        "background": _nullable(
            _enum(
                sorted(_RULES.backgrounds),
                "transparent needs output_format png or webp. null or absent: "
                "IMAGE_DEFAULT_BACKGROUND.",
            )
        ),
        "moderation": _nullable(
            _enum(
                sorted(_RULES.moderations),
                "Not taken by an edit. null or absent: IMAGE_DEFAULT_MODERATION.",
            )
        ),
        "n": _nullable(
            _integer(
                "How many images; null or absent: IMAGE_DEFAULT_N.",
                minimum=1,
                maximum=_RULES.n_max,
            )
        ),
        "partial_images": _nullable(
            _integer(
                "Previews streamed before the image; null or absent: "
                "IMAGE_DEFAULT_PARTIAL_IMAGES. The service may send the request otherwise "
                "(the answer's `notes`, the status's `sentAs`).",
                minimum=0,
                maximum=_RULES.partial_images_max,
            )
        ),
        "route": _nullable(
            _text(
                "One of the service's routes (GET /api/routes lists them); null or absent: "
                "IMAGE_DEFAULT_ROUTE."
            )
        ),
        "priority": _nullable(
            _enum(
                [p.value for p in Priority],
                "Who waits: interactive attempts go ahead of queued batch work at the route. "
                "null or absent: interactive.",
            )
        ),
        "failover": _nullable(
            {
                "type": "boolean",
                "description": "Whether an attempt that failed before its request was sent may "
                "move to the route's failover partner. null or absent: true.",
            }
        ),
    }
    return fields


def _input_source() -> Schema:
    return {
        "type": "object",
        "description": "One input image, named in exactly one way: an upload (POST "
        "/api/uploads), a blob in a container the service reads inputs from "
        "(IMAGE_INPUT_CONTAINERS), or inline base64 (all inline inputs of a JSON body together "
        f"at most {INLINE_JSON_MAX_BYTES:,} bytes decoded).",
        "oneOf": [
            _object({"upload": _ref("UploadId")}),
            _object({"blob": _text("container/name", pattern=r"^[a-z0-9-]{3,63}/.+$")}),
            _object({"b64_json": _text("The image's bytes, base64.", contentEncoding="base64")}),
        ],
    }


def _webhook_url() -> Schema:
    return _nullable(
        _url(
            "Where the job's end is POSTed, signed the Standard Webhooks way with the caller's "
            "secret (GET /api/webhook-secret; docs/webhooks.md). https:// (http:// only where "
            "IMAGE_WEBHOOK_ALLOW_HTTP is on), printable ASCII, no user name or password, no "
            "#fragment; a host that is a loopback (unless IMAGE_WEBHOOK_ALLOW_LOOPBACK is on), "
            "private, link-local, reserved or multicast address, an address in another form "
            "than a.b.c.d, or a single-label name is refused, as is any webhookUrl while "
            "webhooks are off (400 naming the field). Part of the job's identity; never shown "
            "back. null or absent: no webhook."
        )
        | {
            "maxLength": MAX_URL_CHARS,
            "examples": ["https://hooks.example.com/imagejobs?token=abc"],
        }
    )


def _job_request() -> Schema:
    inputs = _RULES.inputs
    assert inputs is not None
    fields = _request_fields()
    fields[WEBHOOK_FIELD] = _webhook_url()
    fields["images"] = _nullable(
        {
            "type": "array",
            "description": f"An edit's input images: 1 to {inputs.max_images} "
            f"({', '.join(sorted(inputs.image_formats))}, each at most "
            f"{inputs.image_max_bytes:,} bytes). Absent or null: a generation.",
            "items": _ref("InputSource"),
            "minItems": 1,
            "maxItems": inputs.max_images,
        }
    )
    fields["mask"] = {
        "description": "An edit's mask: a PNG with an alpha channel, the size of images[0], "
        f"at most {inputs.mask_max_bytes:,} bytes. Needs images.",
        "anyOf": [_ref("InputSource"), {"type": "null"}],
    }
    assert set(fields) == set(FIELDS), sorted(set(FIELDS) ^ set(fields))
    required = {"prompt": fields.pop("prompt")}
    return _object(
        required,
        fields,
        description="A job: the OpenAI image request's fields (gpt-image-2's rules) and three "
        "job levers, `priority`, `failover` and `webhookUrl`. A field the model would refuse, "
        "or an unknown one, is a 400 naming it; nothing starts.",
    )


def _multipart_request() -> Schema:
    inputs = _RULES.inputs
    assert inputs is not None
    # Form fields are text, never null (an empty one is left out); failover is no text.
    fields = {**_request_fields(), WEBHOOK_FIELD: _webhook_url()}
    form = {name: _not_null(schema) for name, schema in fields.items() if name != "failover"}
    image = {"type": "string", "contentMediaType": "application/octet-stream"}
    files = {"type": "array", "items": image, "minItems": 1, "maxItems": inputs.max_images}
    return {
        "type": "object",
        "description": "An edit with its input images as file parts (all together at most "
        f"{INLINE_MULTIPART_MAX_BYTES:,} bytes): `image` (or `image[]`) parts in order and one "
        "`mask` part; the request's fields either as one `request` part holding the JSON "
        "request, or as form fields (then `failover` cannot be given). A file part beside "
        "`images`/`mask` references in the request is a 400.",
        "properties": {
            "request": _ref("JobRequest"),
            "image": files,
            "image[]": files,
            "mask": {"type": "string", "contentMediaType": "image/png"},
            **form,
        },
        "additionalProperties": False,
    }


def _batch_line() -> Schema:
    fields = _request_fields()
    required = {
        "custom_id": _text(
            f"The caller's id of the line, 1 to {MAX_CUSTOM_ID_CHARS} characters, unique in "
            "the manifest.",
            minLength=1,
            maxLength=MAX_CUSTOM_ID_CHARS,
        ),
        "prompt": fields.pop("prompt"),
    }
    return _object(
        required,
        fields,
        description="One image request of a batch: a start request's fields (no edits) and "
        "its `custom_id`. A line may instead be in the OpenAI Batch API's form (`custom_id`, "
        "`method` POST, `url` /v1/images/generations, `body`). A line that breaks a rule is "
        "reported in `lineErrors` (and the report), not refused: the other lines run.",
    )


def _batch_options() -> dict[str, Schema]:
    return {
        "deadline": _nullable(
            _moment(
                "When the batch must be done, with its offset. At least 24 h away, on one "
                "route with the Batch API: the batch goes through the Batch API at half the "
                "price."
            )
        ),
        "route": _nullable(_text("The route of every line that names none.")),
    }


def _jsonl_manifest() -> Schema:
    return {
        "type": "array",
        "description": "JSON Lines, UTF-8: one JSON object per line, each a `BatchLine`; an "
        'optional first line `{"batch": {"deadline": ..., "route": ...}}` carries the '
        f"batch's options. At most {MAX_ITEMS:,} lines.",
        "prefixItems": [
            {"anyOf": [_object({"batch": _object({}, _batch_options())}), _ref("BatchLine")]}
        ],
        "items": _ref("BatchLine"),
        "minItems": 1,
    }


# --- the answers ---------------------------------------------------------------------------

_STATES = [s.value for s in JobState]
_ENDED = [s.value for s in JobState if s in TERMINAL_STATES]


def _input_shape() -> Schema:
    return _object(
        {
            "format": _enum(sorted(_RULES.inputs.image_formats if _RULES.inputs else ()), ""),
            "bytes": _integer(minimum=0),
            "width": _integer(minimum=1),
            "height": _integer(minimum=1),
        },
        description="An input image as the job keeps it: never its hash or its bytes.",
    )


def _request_shape(*, prompt: bool = True) -> Schema:
    """The request's shape as an answer shows it; ``prompt``: the status answer may show the
    prompt itself, when asked for it (the escalation packet never does)."""
    optional: dict[str, Schema] = {
        "images": {"type": "array", "items": _ref("InputShape")},
        "mask": _nullable(_ref("InputShape")),
    }
    if prompt:
        optional["prompt"] = _text("Only with `?includePrompt=true`.")
    return _object(
        {
            "size": _text(),
            "quality": _enum(sorted(_RULES.qualities)),
            "outputFormat": _enum(_FORMATS),
            "outputCompression": _nullable(_integer(minimum=0, maximum=100)),
            "background": _enum(sorted(_RULES.backgrounds)),
            "moderation": _enum(sorted(_RULES.moderations)),
            "n": _integer(minimum=1),
            "partialImages": _integer(minimum=0),
            "route": _text(),
            "promptChars": _integer("The prompt's length.", minimum=1),
        },
        optional,
        description="The request as the job runs it, without its prompt (`images` and `mask` "
        "for an edit).",
    )


def _timings() -> Schema:
    ms = _nullable(_integer("Milliseconds from requestStartedAt.", minimum=0))
    return _object(
        {
            "requestStartedAt": _nullable(_moment("When the attempt's request left.")),
            "connectMs": ms,
            "firstByteMs": ms,
            "firstPartialImageMs": ms,
            "finalImageMs": ms,
            "downloadMs": ms,
            "uploadMs": ms,
            "readInputsMs": _nullable(_integer("An edit's inputs read from Blob.", minimum=0)),
            "uploadInputsMs": _nullable(_integer("An edit's multipart body sent.", minimum=0)),
            "partialImagesMs": {"type": "array", "items": ms},
            "httpStatus": _nullable(_integer("The route's answer.")),
            "requestId": _nullable(_text("The route's request id.")),
            "rateLimit": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "The route's rate-limit headers as sent.",
            },
            "connectionReused": _nullable({"type": "boolean"}),
            "partialsReceived": _nullable(_integer(minimum=0)),
            "gatewayRetries": _nullable(_integer("Retries a gateway said it made.", minimum=0)),
        },
        description="The attempt's clocks; all null before its request leaves.",
    )


def _stored_image() -> Schema:
    return _object(
        {
            "contentType": _text(examples=["image/png"]),
            "bytes": _integer(minimum=0),
            "width": _integer(minimum=1),
            "height": _integer(minimum=1),
            "url": _url("Read-only, expiring (IMAGES_LINK_TTL_S)."),
        }
    )


def _job_error() -> Schema:
    return _object(
        {
            "layer": _enum([layer.value for layer in Layer], "The layer that failed."),
            "kind": _enum([kind.value for kind in FailureKind], "The failure's kind."),
            "httpStatus": _nullable(_integer("The route's status.")),
            "type": _nullable(_text("The route's error type.")),
            "code": _nullable(_text("The route's error code.")),
            "param": _nullable(_text("The route's error param.")),
            "field": _nullable(_text("The request field at fault (= param).")),
            "message": _text("The route's key and the prompt redacted."),
            "requestId": _nullable(_text()),
            "timeout": _nullable(_text("Which of our limits fired.")),
        },
        description="Why a failed job failed.",
    )


def _job_status() -> Schema:
    required: dict[str, Schema] = {
        "id": _ref("JobId"),
        "state": _enum(_STATES, "Derived from the durable status and the attempt's progress."),
        "stateText": _text("The state as a sentence a person can act on."),
        "failure": _nullable(
            _enum(
                ["returned_error", "local_timeout", "internal_error"],
                "For a failed job only.",
            )
        ),
        "attempt": _integer("The attempt running or last made (0 before the first).", minimum=0),
        "route": _text("The route the job uses."),
        "request": _ref("RequestShape"),
        "sentAs": {
            "type": "array",
            "items": {"type": "string"},
            "description": "How the request is sent where that differs from how it was asked.",
        },
        "timings": _ref("Timings"),
        "previews": {
            "type": "array",
            "items": _object(
                {"index": _integer("By arrival.", minimum=0), "url": _url("Read-only, expiring.")}
            ),
        },
        "image": _nullable(_ref("StoredImage")),
        "images": {"type": "array", "items": _ref("StoredImage")},
        "metadataUrl": _nullable(_url("metadata.json, once written.")),
        "error": _nullable(_ref("JobError")),
        "retryCount": _nullable(_integer("Retries made, once the job ended.", minimum=0)),
        "costUsd": _nullable(_number("What every attempt that may be billed cost.", minimum=0)),
        "costEstimated": _nullable({"type": "boolean"}),
        "createdAt": _nullable(_moment("From the durable status (null once purged).")),
        "updatedAt": _nullable(_moment()),
        "queuePosition": _nullable(
            _integer("While queued at the route's governor: 1 = next.", minimum=1)
        ),
        "queueReason": _nullable(_text("While queued: why it waits.")),
        "eta": _nullable(_moment("While running: when the image is expected to be stored.")),
        "webhooks": _nullable(
            {
                "type": "array",
                "items": _ref("WebhookDelivery"),
                "description": "A job with webhookUrl: each event's delivery, [] until the job "
                "ended and its first attempt is recorded; null for a job without one (and for a "
                "purged job whose deliveries left no record).",
            }
        ),
    }
    optional: dict[str, Schema] = {
        "retry": _object(
            {
                "at": _nullable(_moment("When the next attempt starts.")),
                "reason": _nullable(_text("Why it retries.")),
            },
            description="While waiting_to_retry.",
        ),
        "historyPurged": {
            "const": True,
            "description": "The durable history is gone: the answer comes from metadata.json.",
        },
    }
    return _object(required, optional, description="A job's status.")


def _route_health() -> Schema:
    rate = _nullable(_number("saved / sent; null before any.", minimum=0, maximum=1))
    errors = _counts_by([k.value for k in FailureKind], "Failed sent attempts by failure kind.")
    seconds = _nullable(
        _object(
            {"p50": _number(minimum=0), "p95": _number(minimum=0)},
            description="Seconds; null before any sample.",
        )
    )
    shape = _object(
        {
            "shape": _text("e.g. gpt-image-2/1mp/low/png/stream-1"),
            "sent": _integer(minimum=0),
            "saved": _integer(minimum=0),
            "successRate": rate,
            "recentSuccessRate": _nullable(_number("Over the last 100.", minimum=0, maximum=1)),
            "errors": errors,
            "firstByteS": seconds,
            "firstPartialImageS": seconds,
            "totalS": seconds,
            "samples": _integer(minimum=0),
        }
    )
    limit = _nullable(_integer("In force: configured, lowered by the route's headers.", minimum=0))
    pace = _object(
        {
            "requestsPerMinute": limit,
            "imagesPerMinute": limit,
            "concurrency": limit,
            "burst": _integer(minimum=0),
            "spacingS": _nullable(_number(minimum=0)),
            "sendsLastWindow": _integer(minimum=0),
            "nextSendAt": _nullable(_moment()),
            "coolDownUntil": _nullable(_moment("After a 429.")),
            "coolDownReason": _nullable(_text()),
        }
    )
    return _object(
        {
            "route": _text(),
            "owner": _enum(ROUTE_OWNERS),
            "model": _text(),
            "failoverTo": _nullable(_text("The route's failover partner.")),
            "sent": _integer("Attempts that reached the route.", minimum=0),
            "saved": _integer(minimum=0),
            "successRate": rate,
            "errors": errors,
            "pace": pace,
            "queued": _object(
                {p.value: _integer(minimum=0) for p in Priority},
                description="Attempts waiting at the route's governor, by priority.",
            ),
            "running": _integer(minimum=0),
            "expiredSlots": _integer("Admitted attempts that never reported.", minimum=0),
            "shapes": {"type": "array", "items": shape},
        }
    )


def _quote() -> Schema:
    usd = _nullable(_number("USD, estimated from the published prices.", minimum=0))
    return _object(
        {
            "realtimeUsd": usd,
            "batchApiUsd": usd,
            "chosenUsd": usd,
            "realtimeS": _nullable(_number("Seconds at the route's pace.", minimum=0)),
        }
    )


def _plan() -> dict[str, Schema]:
    return {
        "mode": _enum([m.value for m in BatchMode]),
        "reason": _text("Why this mode."),
        "items": _integer("Valid lines.", minimum=0),
        "invalid": _integer("Lines reported as errors.", minimum=0),
        "quote": _ref("BatchQuote"),
        "deadline": _nullable(_moment()),
        "lineErrors": {
            "type": "array",
            "maxItems": 20,
            "description": "The first 20 bad lines (the report has every one).",
            "items": _object(
                {
                    "line": _integer("1-based.", minimum=1),
                    "customId": _nullable(_text()),
                    "field": _text(),
                    "code": _enum(LINE_ERROR_CODES),
                    "message": _text(),
                }
            ),
        },
    }


def _batch_status() -> Schema:
    count = _integer(minimum=0)
    return _object(
        {
            "id": _ref("BatchId"),
            "state": _enum([s.value for s in BatchState]),
            "mode": _enum([m.value for m in BatchMode]),
            "reason": _text(),
            "counts": _object(
                {
                    name: count
                    for name in (
                        "items",
                        "invalid",
                        "notStarted",
                        "running",
                        "saved",
                        "failed",
                        "cancelled",
                    )
                }
            ),
            "progress": _nullable(_number("Done / items.", minimum=0, maximum=1)),
            "eta": _nullable(_moment("From the route's pace; null once ended.")),
            "costUsd": _number("So far.", minimum=0),
            "quotedUsd": _nullable(_number("The chosen mode's quote.", minimum=0)),
            "quote": _ref("BatchQuote"),
            "upstreamStatus": _nullable(_text("A Batch API batch's upstream status.")),
            "failureReason": _nullable(
                _text("Why a failed batch failed (its own work, never an item's); null else.")
            ),
            "createdAt": _moment(),
            "report": _nullable(
                _object(
                    {"jsonl": _url("Read-only, expiring."), "csv": _url("Read-only, expiring.")},
                    description="Once the batch ended.",
                )
            ),
        }
    )


# --- webhooks ------------------------------------------------------------------------------

_JOB_ID_PATTERN = r"img-[0-9a-f]{24}-[1-9][0-9]{0,8}"
_EVENT_STATES = [JobState.SAVED.value, JobState.FAILED.value, JobState.CANCELLED.value]


def _webhook_delivery() -> Schema:
    events = "|".join(e.value.removeprefix("image.") for e in EventType)
    return _object(
        {
            "id": _text(
                "The event's webhook-id, the same on every attempt: dedupe on it.",
                pattern=f"^msg_{_JOB_ID_PATTERN}_({events})$",
            ),
            "type": _enum([e.value for e in EventType]),
            "timestamp": _moment("When the job ended: the event's own moment."),
            "state": _enum(
                [s.value for s in DeliveryState],
                "delivering (nextAttemptAt says when), delivered (a 2xx), failed (every "
                "attempt failed), refused (the target resolved to an address deliveries never "
                "go to).",
            ),
            "attempts": {
                "type": "array",
                "items": _object(
                    {
                        "attempt": _integer(minimum=1),
                        "at": _moment("When the attempt was sent."),
                        "durationMs": _integer(minimum=0),
                        "statusCode": _nullable(
                            _integer("The receiver's answer.", minimum=100, maximum=999)
                        ),
                        "error": _nullable(
                            _text("Why no answer came (a timeout, a refused connection...).")
                        ),
                    }
                ),
            },
            "nextAttemptAt": _nullable(_moment("While delivering: the next attempt.")),
        },
        description="One event's delivery to the job's webhookUrl (never the URL itself).",
    )


def _webhook_event() -> Schema:
    image = _object(
        {
            "contentType": _text(examples=["image/png"]),
            "bytes": _integer(minimum=0),
            "width": _integer(minimum=1),
            "height": _integer(minimum=1),
        },
        description="A stored image, without a link (a link expires; fetch statusUrl).",
    )
    data = _object(
        {
            "id": _ref("JobId"),
            "state": _enum(_EVENT_STATES),
            "statusUrl": _nullable(_url("The job's status URL, never with ?code=.")),
            "failure": _nullable(
                _enum(["returned_error", "local_timeout", "internal_error"], "image.failed only.")
            ),
            "error": _nullable(
                _object(
                    {
                        "layer": _enum([layer.value for layer in Layer]),
                        "kind": _enum([kind.value for kind in FailureKind]),
                        "httpStatus": _nullable(_integer()),
                        "type": _nullable(_text()),
                        "code": _nullable(_text()),
                    },
                    description="image.failed only; never the route's message.",
                )
            ),
            "attempt": _integer(minimum=0),
            "retryCount": _integer(minimum=0),
            "image": _nullable(image),
            "images": {"type": "array", "items": image},
            "costUsd": _nullable(_number(minimum=0)),
        }
    )
    return _object(
        {
            "type": _enum([e.value for e in EventType]),
            "timestamp": _moment("When the job ended, the same on every attempt."),
            "data": data,
        },
        description="What a job's webhookUrl is sent when the job ends: no prompt, key, "
        "error message, link or preview.",
    )


def _webhook_secret() -> Schema:
    return _object(
        {
            "secret": _text(
                "The caller's signing secret: whsec_ and base64 of 32 bytes, as the Standard "
                "Webhooks libraries take it.",
                pattern=f"^{SECRET_PREFIX}[A-Za-z0-9+/]{{43}}=$",
            ),
            "scheme": {"const": "standard-webhooks/v1"},
            "identity": _enum(
                ["own", "shared"],
                "own: an Easy Auth principal's; shared: the default caller's, which every "
                "function-key holder is (they share one secret, as they see the same jobs).",
            ),
        },
        description="The secret the calling identity's webhooks are signed with.",
    )


# --- client timings and the escalation packet ------------------------------------------------


def _client_timings_report() -> Schema:
    ms = _number(f"Milliseconds, 0 to {MAX_MS} (stored rounded).", minimum=0, maximum=MAX_MS)
    return _object(
        {"downloadMs": ms, "renderMs": ms},
        description="A client's own times for the job's final image(s): download, from asking "
        "for the image to its last byte; render, from there to decoded and painted.",
    )


def _client_timings_stored() -> Schema:
    return _object(
        {
            "id": _ref("JobId"),
            "client": _object(
                {
                    "downloadMs": _integer(minimum=0, maximum=MAX_MS),
                    "renderMs": _integer(minimum=0, maximum=MAX_MS),
                    "reportedAt": _moment("When the service took the report."),
                },
                description="As metadata.json now keeps it (`client`); a later report replaces it.",
            ),
        }
    )


def _packet_clocks() -> Schema:
    ms = _nullable(_integer("Milliseconds from requestStartedAt.", minimum=0))
    return _object(
        {
            "requestStartedAt": _nullable(_moment()),
            "connectMs": ms,
            "firstByteMs": ms,
            "firstPartialImageMs": ms,
            "finalImageMs": ms,
            "downloadMs": ms,
            "uploadMs": ms,
            "readInputsMs": ms,
            "uploadInputsMs": ms,
            "partialImagesMs": {"type": "array", "items": ms},
        },
        description="An attempt's clocks (the status answer's, without the call's facts).",
    )


def _evidence() -> Schema:
    text = _nullable(_text())
    moment = _nullable(_moment())
    outcomes = ["saved", *(kind.value for kind in FailureKind)]
    error = _object(
        {
            "layer": _enum([layer.value for layer in Layer]),
            "kind": _enum([kind.value for kind in FailureKind]),
            "httpStatus": _nullable(_integer()),
            "type": text,
            "code": text,
            "param": text,
            "message": _nullable(_text("Redacted (key, prompt), sanitized (addresses, links).")),
            "requestId": text,
        }
    )
    decision = _object(
        {
            "retry": {"type": "boolean"},
            "waitS": _number(minimum=0),
            "reason": _text(),
            "postSendResend": {"type": "boolean"},
        },
        description="What the job decided after the attempt.",
    )
    attempt = _object(
        {
            "attempt": _integer(minimum=1),
            "outcome": _nullable(_enum(outcomes)),
            "layer": _nullable(_enum([layer.value for layer in Layer])),
            "sent": {"type": "boolean"},
            "httpStatus": _nullable(_integer()),
            "type": text,
            "code": text,
            "param": text,
            "message": text,
            "requestId": text,
            "timeoutLayer": text,
            "timings": _ref("PacketClocks"),
            "stream": _nullable({"type": "boolean"}),
            "partialImages": _nullable(_integer(minimum=0)),
            "decision": _nullable(decision),
        }
    )
    seconds = _number(minimum=0)
    limit = _nullable(_integer(minimum=0))
    infrastructure = _object(
        {
            "host": _text("Azure Functions, devhost, or a local Functions host."),
            "functionsRuntime": text,
            "python": _text(),
            "region": text,
            "plan": text,
            "storage": _text(),
            "timeScale": _number(exclusiveMinimum=0),
            "localStandIns": {"type": "array", "items": _text()},
            "gateway": _object(
                {"idleTimeoutS": _nullable(_number(minimum=0)), "retryHeader": text}
            ),
            "timeoutsS": _object(
                {
                    name: seconds
                    for name in (
                        "connect",
                        "readIdle",
                        "request",
                        "upload",
                        "activity",
                        "httpStarter",
                        "clientHttp",
                        "clientPoll",
                    )
                },
                description="The timeout budget in force.",
            ),
            "pace": _object(
                {"requestsPerMinute": limit, "imagesPerMinute": limit, "concurrency": limit},
                description="The route's configured limits.",
            ),
        }
    )
    return _object(
        {
            "v": {"const": EVIDENCE_VERSION, "description": "The packet's schema version."},
            "id": _ref("JobId"),
            "generatedAt": _moment("When the packet was made."),
            "complete": {
                "type": "boolean",
                "description": "false while the job runs, or when its metadata.json is missing "
                "(the durable outcome stands in).",
            },
            "state": _enum(_STATES),
            "failure": _nullable(_enum(["returned_error", "local_timeout", "internal_error"])),
            "moment": _object(
                {
                    "timezone": {"const": "UTC"},
                    "createdAt": moment,
                    "firstSendAt": moment,
                    "lastSendAt": moment,
                    "finishedAt": moment,
                    "occurrence": _text("One-off or repeated within the job."),
                }
            ),
            "route": _object(
                {
                    "name": _text(),
                    "owner": _enum([*ROUTE_OWNERS, "unknown"]),
                    "model": _text(),
                    "api": {"const": "Image API"},
                    "endpoint": _enum(["generations", "edits"]),
                    "host": _nullable(_text("host[:port]; an IP address as [ip].")),
                    "path": _nullable(_text("The endpoint's path, no query.")),
                    "deployment": text,
                    "apiVersion": text,
                    "stream": _nullable({"type": "boolean"}),
                    "partialImages": _nullable(_integer(minimum=0)),
                }
            ),
            "request": _ref("PacketRequest"),
            "sentAs": {"type": "array", "items": _text()},
            "priority": _nullable(_enum([p.value for p in Priority])),
            "timings": _ref("PacketClocks"),
            "timeoutLayer": _nullable(
                _text("gateway, or http_client (connect|read_idle|request|upload).")
            ),
            "retries": _object(
                {
                    "count": _integer(minimum=0),
                    "reasons": {"type": "array", "items": _text()},
                    "postSendResends": _integer(minimum=0),
                    "gatewayRetries": _integer(minimum=0),
                }
            ),
            "returned": _object(
                {
                    "httpStatus": _nullable(_integer()),
                    "error": _nullable(error),
                    "requestIds": {"type": "array", "items": _text()},
                    "rateLimit": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "The route's rate-limit headers.",
                    },
                }
            ),
            "attempts": {"type": "array", "items": attempt},
            "cost": _object(
                {"usd": _nullable(_number(minimum=0)), "estimated": {"type": "boolean"}}
            ),
            "service": _object(
                {"name": {"const": "gpt-image-durable"}, "version": {"const": SERVICE_VERSION}}
            ),
            "infrastructure": infrastructure,
            "reproduction": _object(
                {
                    "curl": _text("With PROMPT and $IMAGE_ROUTE_KEY for the secrets."),
                    "python": _text("The openai SDK, the same way."),
                    "notes": {"type": "array", "items": _text()},
                }
            ),
            "withheld": {
                "type": "array",
                "items": _text(),
                "description": "What the packet never holds, in words.",
            },
        },
        description="The escalation packet (field report A): what to send a provider about a "
        "slow or failed job. Never a key, token, prompt, image, IP address, link's query "
        "string or caller id.",
    )


def _error(codes: tuple[str, ...], description: str) -> Schema:
    return _object(
        {
            "error": _object(
                {
                    "code": _enum(codes),
                    "message": _text("For a person; never a setting's value or a key."),
                    "field": _text("What is at fault."),
                }
            )
        },
        description=description,
    )


def _schemas() -> dict[str, Schema]:
    schemas: dict[str, Schema] = {
        "JobId": _text("A job's id.", pattern=r"^img-[0-9a-f]{24}-[1-9][0-9]{0,8}$"),
        "BatchId": _text("A batch's id.", pattern=r"^bat-[0-9a-f]{24}$"),
        "UploadId": _text("An upload's id.", pattern=r"^upl-[0-9a-f]{32}$"),
        "JobRequest": _job_request(),
        "JobRequestMultipart": _multipart_request(),
        "InputSource": _input_source(),
        "BatchLine": _batch_line(),
        "BatchRequest": _object(
            {
                "items": {
                    "type": "array",
                    "items": _ref("BatchLine"),
                    "minItems": 1,
                    "maxItems": MAX_ITEMS,
                }
            },
            _batch_options(),
            description="A batch as JSON: its lines as `items`, its options beside them.",
        ),
        "BatchManifest": _jsonl_manifest(),
        "JobStarted": _object(
            {
                "id": _ref("JobId"),
                "state": _enum(_STATES, "queued, or the existing job's state for a replay."),
                "statusUrl": _url("Poll it: GET /api/images/{id} (= Location)."),
            },
            {
                "notes": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Only when the request is sent differently from how it "
                    "was asked, and why.",
                }
            },
        ),
        "JobStatus": _job_status(),
        "RequestShape": _request_shape(),
        "WebhookDelivery": _webhook_delivery(),
        "WebhookEvent": _webhook_event(),
        "WebhookSecret": _webhook_secret(),
        "ClientTimingsReport": _client_timings_report(),
        "ClientTimingsStored": _client_timings_stored(),
        "Evidence": _evidence(),
        "PacketRequest": _request_shape(prompt=False),
        "PacketClocks": _packet_clocks(),
        "InputShape": _input_shape(),
        "Timings": _timings(),
        "StoredImage": _stored_image(),
        "JobError": _job_error(),
        "JobList": _object(
            {
                "items": {
                    "type": "array",
                    "items": _object(
                        {
                            "id": _ref("JobId"),
                            "state": _enum(_STATES),
                            "createdAt": _nullable(_moment()),
                            "statusUrl": _url(),
                        }
                    ),
                },
                "next": _nullable(_url("The next page, or null.")),
            },
            description="The caller's jobs, newest first.",
        ),
        "JobCancelling": _object(
            {
                "id": _ref("JobId"),
                "state": _enum(
                    [JobState.CANCELLING.value, JobState.FINALIZING.value],
                    "finalizing: the image is being stored; the job ends saved.",
                ),
                "statusUrl": _url(),
            },
            {
                "beforeSend": {
                    "type": "boolean",
                    "description": "true: the cancel came before the attempt's request left, "
                    "so it never reaches the route. Absent when it cannot be told.",
                }
            },
        ),
        "JobEnded": _object(
            {"id": _ref("JobId"), "state": _enum(_ENDED), "statusUrl": _url()},
            description="The job had ended: left alone.",
        ),
        "Upload": _object(
            {
                "upload": _ref("UploadId"),
                "url": _url("PUT the image's bytes here, with `headers`."),
                "method": {"const": "PUT"},
                "headers": _object({"x-ms-blob-type": {"const": "BlockBlob"}}),
                "expiresAt": _moment("The link's end."),
                "maxBytes": _integer("An input image's limit.", minimum=1),
                "maskMaxBytes": _integer("A mask's limit.", minimum=1),
            }
        ),
        "Routes": _object(
            {
                "asOf": _moment(),
                "routes": {"type": "array", "items": _ref("RouteHealth")},
            },
            description="Each configured route's health, as its shared model knows it.",
        ),
        "RouteHealth": _route_health(),
        "BatchQuote": _quote(),
        "BatchStarted": _object(
            {"id": _ref("BatchId"), "statusUrl": _url("GET /api/batches/{id}."), **_plan()}
        ),
        "BatchPlan": _object(
            {"dryRun": {"const": True}, **_plan()},
            description="What the batch would do and cost; nothing started.",
        ),
        "BatchStatus": _batch_status(),
        "BatchCancelling": _object(
            {"id": _ref("BatchId"), "state": {"const": "cancelling"}, "statusUrl": _url()}
        ),
        "BatchEnded": _object(
            {"id": _ref("BatchId"), "state": {"const": "ended"}},
            description="The batch had ended: left alone.",
        ),
        "OpenApiDocument": {
            "type": "object",
            "required": ["openapi", "info", "paths"],
            "description": "This document.",
        },
    }
    for status, codes in ERROR_CODES.items():
        schemas[f"Error{status}"] = _error(codes, _ERROR_TEXT[status])
    for name, (_, codes, text) in ERROR_VARIANTS.items():
        schemas[name] = _error(codes, text)
    return schemas


# --- operations ----------------------------------------------------------------------------

_RETRY_AFTER = {
    "description": "Whole seconds until it is worth asking again.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _answer(
    description: str,
    schema_name: str,
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": _json(_ref(schema_name))}
    if headers:
        answer["headers"] = headers
    return answer


def _errors(*statuses: int | str, unavailable: bool = True) -> dict[str, Any]:
    """The error answers of an operation: a status (its general codes) or the name of an
    ERROR_VARIANTS answer; always 500, and 503 unless the operation touches no store."""
    answers: dict[str, Any] = {}
    for given in statuses:
        name = given if isinstance(given, str) else f"Error{given}"
        status = ERROR_VARIANTS[name][0] if isinstance(given, str) else given
        answers[str(status)] = {"$ref": f"#/components/responses/{name}"}
    answers["500"] = {"$ref": "#/components/responses/Error500"}
    if unavailable:
        answers["503"] = {"$ref": "#/components/responses/Error503"}
    return answers


def _responses() -> dict[str, Any]:
    responses: dict[str, Any] = {
        f"Error{status}": _answer(_ERROR_TEXT[status], f"Error{status}") for status in ERROR_CODES
    }
    for name, (_, _, text) in ERROR_VARIANTS.items():
        responses[name] = _answer(text, name)
    responses["Error503"]["headers"] = {
        "Retry-After": {**_RETRY_AFTER, "schema": {"type": "integer", "const": 5}}
    }
    responses["Unauthorized"] = {
        "description": "No function key, or a wrong one: the Functions host refuses the "
        "request before the app sees it (an empty body)."
    }
    return responses


def _job_id_parameter() -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "A job id (anything else is a 404).",
        "schema": _ref("JobId"),
    }


def _batch_id_parameter() -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "A batch id (anything else is a 404).",
        "schema": _ref("BatchId"),
    }


def _idempotency_key(what: str) -> dict[str, Any]:
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": f"Names the {what}: the same key again is the same {what}.",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS},
    }


def _location(what: str) -> dict[str, Any]:
    return {"description": what, "required": True, "schema": {"type": "string", "format": "uri"}}


_REPLAYED = {
    "description": "The answer is for an existing one (a repeat).",
    "required": False,
    "schema": {"type": "string", "const": "true"},
}


_NO_STORE = {
    "description": "Never cached by anything in between.",
    "required": True,
    "schema": {"type": "string", "const": "no-store"},
}
# What a regular expression would read as more than itself (the policy's text has none of it).
_REGEX_SPECIAL = frozenset(".^$*+?()[]{}|\\")


def _literal(text: str) -> str:
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


def _page_headers(*, cached: bool) -> dict[str, Any]:
    """The headers of every answer of the web page (http_api.web_page.security_headers), and
    with a file (``cached``) its revalidation: no-cache and a strong ETag."""
    marker = "IMAGE-ORIGIN"
    policy = _literal(content_security_policy(marker)).replace(marker, "[^ ;]+")

    def const(value: str, description: str) -> dict[str, Any]:
        return {
            "description": description,
            "required": True,
            "schema": {"type": "string", "const": value},
        }

    headers: dict[str, Any] = {
        "Content-Security-Policy": {
            "description": "Scripts, styles and API calls from the page's own origin only (no "
            "inline code), images from the image store's origin only (the read links the "
            "status answer hands out), no frames, plugins or form posts.",
            "required": True,
            "schema": {"type": "string", "pattern": f"^{policy}$"},
        },
        "X-Content-Type-Options": const("nosniff", "The content type is the one given."),
        "Referrer-Policy": const("no-referrer", "The page's URL goes to nobody."),
        "X-Frame-Options": const("DENY", "Never in a frame."),
        "Cross-Origin-Opener-Policy": const("same-origin", "A window of its own."),
        "Cross-Origin-Resource-Policy": const("same-origin", "Loaded by its own origin only."),
    }
    if cached:
        headers["Cache-Control"] = const(
            "no-cache", "Revalidate each time (the names carry no content hash)."
        )
        headers["ETag"] = {
            "description": "A strong tag of the file's content.",
            "required": True,
            "schema": {"type": "string", "pattern": '^"[0-9a-f]{32}"$'},
        }
    return headers


def _page_file(description: str, media_types: list[str]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _page_headers(cached=True),
        "content": {media: {"schema": {"type": "string"}} for media in media_types},
    }


def _page_not_modified() -> dict[str, Any]:
    return {
        "description": "If-None-Match names the file's ETag: unchanged (no body).",
        "headers": _page_headers(cached=True),
    }


_IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "ETags the browser holds (or *): a 304 when one is the file's.",
    "schema": {"type": "string"},
}


def _web_page_paths() -> dict[str, Any]:
    anonymous = {"tags": ["web page"], "security": []}
    page_types = sorted(set(MEDIA_TYPES.values()))
    return {
        "/ui": {
            "get": {
                **anonymous,
                "operationId": "getWebPageFolder",
                "summary": "The web page's address without its slash: redirected to it",
                "description": "Relative to /api/ui, ui/ is /api/ui/: the page's relative "
                "links then resolve under any route prefix. No host name is taken from the "
                "request.",
                "responses": {
                    "308": {
                        "description": "To the page's folder (no body).",
                        "headers": {
                            "Location": {
                                "description": "The folder, relative.",
                                "required": True,
                                "schema": {"type": "string", "const": "ui/"},
                            },
                            **_page_headers(cached=False),
                        },
                    },
                    **_errors(unavailable=False),
                },
            }
        },
        "/ui/": {
            "get": {
                **anonymous,
                "operationId": "getWebPage",
                "summary": "The web page: start a job and watch it (docs/job-contract.md)",
                "description": "Static, anonymous and holding nothing secret: it asks for the "
                "function key, keeps it in the tab's sessionStorage and sends it as "
                "x-functions-key on each API call.",
                "parameters": [_IF_NONE_MATCH],
                "responses": {
                    "200": _page_file(f"The page ({INDEX}), UTF-8.", [MEDIA_TYPES[INDEX]]),
                    "304": _page_not_modified(),
                    **_errors(unavailable=False),
                },
            }
        },
        "/ui/{file}": {
            "get": {
                **anonymous,
                "operationId": "getWebPageFile",
                "summary": "One of the web page's files",
                "parameters": [
                    {
                        "name": "file",
                        "in": "path",
                        "required": True,
                        "description": "A file of the page; any other name is a 404.",
                        "schema": {"type": "string", "enum": list(MEDIA_TYPES)},
                    },
                    _IF_NONE_MATCH,
                ],
                "responses": {
                    "200": _page_file("The file, UTF-8, by its media type.", page_types),
                    "304": _page_not_modified(),
                    **_errors("Error404NoSuchFile", unavailable=False),
                },
            }
        },
    }


def _paths() -> dict[str, Any]:
    return {
        "/images": {
            "post": {
                "operationId": "startImageJob",
                "tags": ["images"],
                "summary": "Start an image job (a generation, or an edit with input images)",
                "description": "Answers at once with the job's id; the same request again "
                "(or the same Idempotency-Key within IMAGE_IDEMPOTENCY_WINDOW_S) is the same "
                "job. An undeclared body is read as JSON.",
                "parameters": [_idempotency_key("job")],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref("JobRequest")},
                        "multipart/form-data": {
                            "schema": _ref("JobRequestMultipart"),
                            "encoding": {
                                "request": {"contentType": JSON},
                                "image": {"contentType": "image/png, image/jpeg, image/webp"},
                                "image[]": {"contentType": "image/png, image/jpeg, image/webp"},
                                "mask": {"contentType": "image/png"},
                            },
                        },
                    },
                },
                "responses": {
                    "202": _answer(
                        "Started, or the existing job of a repeat.",
                        "JobStarted",
                        {
                            "Location": _location("The job's status URL."),
                            "Retry-After": {
                                **_RETRY_AFTER,
                                "description": "A new job: the earliest its image may be "
                                "there, by the calibration (1-30); a repeat: "
                                "IMAGE_STATUS_RETRY_AFTER_S.",
                            },
                            "Idempotent-Replayed": _REPLAYED,
                        },
                    ),
                    **_errors(400, 409, 415),
                },
            },
            "get": {
                "operationId": "listImageJobs",
                "tags": ["images"],
                "summary": "The caller's jobs, newest first, a page at a time",
                "description": "Only for a caller with an identity of its own (Easy Auth), "
                "unless IMAGE_SHARED_CALLER_MAY_LIST is on.",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "Jobs per page (default 20).",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "description": "The page token the previous page's `next` carries.",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _answer("A page of jobs.", "JobList"),
                    **_errors(400, 403),
                },
            },
        },
        "/images/{id}": {
            "get": {
                "operationId": "getImageJob",
                "tags": ["images"],
                "summary": "A job's status",
                "description": "202 while the job runs, 200 once it ended. A poll that comes "
                "when the image may be stored any moment is held (IMAGE_STATUS_HOLD_S) until "
                "the job shows something new.",
                "parameters": [
                    _job_id_parameter(),
                    {
                        "name": "includePrompt",
                        "in": "query",
                        "required": False,
                        "description": "`true` (any case): the answer's request has the prompt.",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _answer("The job ended (saved, failed or cancelled).", "JobStatus"),
                    "202": _answer(
                        "The job runs.",
                        "JobStatus",
                        {
                            "Retry-After": {
                                **_RETRY_AFTER,
                                "description": "Until the earliest the image may be stored "
                                "(1-30), or IMAGE_STATUS_RETRY_AFTER_S without an estimate.",
                            }
                        },
                    ),
                    **_errors(400, 404),
                },
            }
        },
        "/images/{id}/evidence": {
            "get": {
                "operationId": "getImageJobEvidence",
                "tags": ["images"],
                "summary": "A job's escalation packet: what to send a provider about it",
                "description": "Made from the job's own records: the durable status and, once "
                "it ended, its metadata.json (alone, once the durable history is purged). "
                "Partial while the job runs (`complete` false). Caller-checked as the status is.",
                "parameters": [_job_id_parameter()],
                "responses": {
                    "200": _answer("The packet.", "Evidence", {"Cache-Control": _NO_STORE}),
                    **_errors("Error400Caller", 404),
                },
            }
        },
        "/images/{id}/client-timings": {
            "post": {
                "operationId": "reportClientTimings",
                "tags": ["images"],
                "summary": "A client's own download and render times for the job's image",
                "description": "Kept in the job's metadata.json as `client` (a later report "
                "replaces it; every other field stays), under an ETag condition: a write in "
                "between makes it read again, up to 3 times, then 503. An undeclared body is "
                "read as JSON.",
                "parameters": [_job_id_parameter()],
                "requestBody": {
                    "required": True,
                    "content": _json(_ref("ClientTimingsReport")),
                },
                "responses": {
                    "200": _answer("Kept.", "ClientTimingsStored"),
                    **_errors("Error400ClientTimings", 404, "Error409JobNotEnded", 415),
                },
            }
        },
        "/images/{id}/cancel": {
            "post": {
                "operationId": "cancelImageJob",
                "tags": ["images"],
                "summary": "Cancel a job",
                "description": "The running attempt stops its stream; a job waiting at the "
                "route or to retry ends without another send. The body is ignored.",
                "parameters": [_job_id_parameter()],
                "responses": {
                    "200": _answer("The job had ended: its final state.", "JobEnded"),
                    "202": _answer(
                        "Cancelling.",
                        "JobCancelling",
                        {"Location": _location("The job's status URL.")},
                    ),
                    **_errors(400, 404),
                },
            }
        },
        "/uploads": {
            "post": {
                "operationId": "createUpload",
                "tags": ["images"],
                "summary": "A short-lived link to write one input image to",
                "description": "PUT the image's bytes to `url` with `headers`, then name "
                "`upload` in a start request's `images` or `mask`. The body is ignored.",
                "responses": {
                    "201": _answer("The link.", "Upload"),
                    **_errors(400),
                },
            }
        },
        "/routes": {
            "get": {
                "operationId": "listRoutes",
                "tags": ["routes"],
                "summary": "Each route's health: success rate, clocks per shape, pace, queue",
                "responses": {"200": _answer("Every configured route.", "Routes"), **_errors()},
            }
        },
        "/batches": {
            "post": {
                "operationId": "startBatch",
                "tags": ["batches"],
                "summary": "Start a batch of image requests (or only quote it)",
                "description": "The manifest as JSON Lines, or as JSON (`items`). Query "
                "options win over the manifest's own. The same manifest posted twice by one "
                "caller is the same batch (or the same Idempotency-Key).",
                "parameters": [
                    {
                        "name": "dryRun",
                        "in": "query",
                        "required": False,
                        "description": "`true` (any case): the plan and both quotes, nothing "
                        "started (200).",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "deadline",
                        "in": "query",
                        "required": False,
                        "description": "ISO 8601 with its offset.",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "route",
                        "in": "query",
                        "required": False,
                        "description": "The route of every line that names none.",
                        "schema": {"type": "string"},
                    },
                    _idempotency_key("batch"),
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref("BatchRequest")},
                        **{
                            media: {"schema": _ref("BatchManifest")}
                            for media in (
                                "application/jsonl",
                                "application/x-ndjson",
                                "application/json-seq",
                                "text/plain",
                            )
                        },
                    },
                },
                "responses": {
                    "200": _answer("dryRun: the plan; nothing started.", "BatchPlan"),
                    "202": _answer(
                        "Started, or the existing batch of a repeat.",
                        "BatchStarted",
                        {
                            "Location": _location("The batch's status URL."),
                            "Retry-After": {
                                **_RETRY_AFTER,
                                "schema": {"type": "integer", "const": 5},
                            },
                            "Idempotent-Replayed": _REPLAYED,
                        },
                    ),
                    **_errors(400, 415),
                },
            }
        },
        "/batches/{id}": {
            "get": {
                "operationId": "getBatch",
                "tags": ["batches"],
                "summary": "A batch's progress, cost and (once ended) report",
                "parameters": [_batch_id_parameter()],
                "responses": {
                    "200": _answer("The batch ended.", "BatchStatus"),
                    "202": _answer(
                        "The batch runs.",
                        "BatchStatus",
                        {
                            "Retry-After": {
                                **_RETRY_AFTER,
                                "schema": {"type": "integer", "const": 5},
                            }
                        },
                    ),
                    **_errors(400, 404),
                },
            }
        },
        "/batches/{id}/cancel": {
            "post": {
                "operationId": "cancelBatch",
                "tags": ["batches"],
                "summary": "Cancel a batch",
                "description": "No new item starts; waiting items end cancelled; running ones "
                "stop. The body is ignored.",
                "parameters": [_batch_id_parameter()],
                "responses": {
                    "200": _answer("The batch had ended.", "BatchEnded"),
                    "202": _answer("Cancelling.", "BatchCancelling"),
                    **_errors(400, 404),
                },
            }
        },
        "/webhook-secret": {
            "get": {
                "operationId": "getWebhookSecret",
                "tags": ["webhooks"],
                "summary": "The secret the calling identity's webhooks are signed with",
                "description": "Derived from IMAGE_WEBHOOK_SECRET and the caller, so every job "
                "of a caller is signed with it; it changes when either secret setting does. "
                "Verify deliveries with any Standard Webhooks library (docs/webhooks.md).",
                "responses": {
                    "200": _answer("The secret.", "WebhookSecret", {"Cache-Control": _NO_STORE}),
                    **_errors("Error400WebhookSecret", unavailable=False),
                },
            }
        },
        **_web_page_paths(),
        "/" + ROUTE: {
            "get": {
                "operationId": "getOpenApiDocument",
                "tags": ["meta"],
                "summary": "This document",
                "description": "Anonymous: it holds nothing of a deployment or a caller.",
                "security": [],
                "responses": {"200": _answer("The document.", "OpenApiDocument")},
            }
        },
    }


def _webhooks() -> dict[str, Any]:
    """What the service sends (OpenAPI's ``webhooks``): a job's end to its webhookUrl."""
    header = {"in": "header", "required": True}
    return {
        "imageJobEnded": {
            "post": {
                "operationId": "imageJobEnded",
                "tags": ["webhooks"],
                "summary": "A job started with webhookUrl ended: one signed event",
                "description": "Signed the Standard Webhooks way with the caller's secret (GET "
                "/api/webhook-secret). Any answer but a 2xx, a timeout or a refused connection "
                "is tried again on durable timers (IMAGE_WEBHOOK_RETRY_WAITS_S, up to "
                "IMAGE_WEBHOOK_MAX_ATTEMPTS); a redirect is not followed; the answer's body is "
                "never read. The status answer's `webhooks` shows every attempt.",
                "security": [],
                "parameters": [
                    {
                        **header,
                        "name": "webhook-id",
                        "description": "msg_{job id}_{saved|failed|cancelled}: the same on "
                        "every attempt of the event (an attempt may arrive twice: dedupe).",
                        "schema": _text(
                            pattern=f"^msg_{_JOB_ID_PATTERN}_(saved|failed|cancelled)$"
                        ),
                    },
                    {
                        **header,
                        "name": "webhook-timestamp",
                        "description": "The attempt's moment, in whole seconds since 1970.",
                        "schema": _text(pattern="^[0-9]+$"),
                    },
                    {
                        **header,
                        "name": "webhook-signature",
                        "description": "v1,<base64 HMAC-SHA256 of id.timestamp.body>.",
                        "schema": _text(pattern="^v1,[A-Za-z0-9+/]+=*$"),
                    },
                ],
                "requestBody": {"required": True, "content": _json(_ref("WebhookEvent"))},
                "responses": {
                    "2XX": {"description": "Delivered: no more attempts."},
                    "default": {"description": "Not delivered: tried again later."},
                },
            }
        }
    }


@functools.cache
def _built() -> str:
    paths = _paths()
    for item in paths.values():
        for operation in item.values():
            if operation.get("security") != []:
                operation["responses"]["401"] = {"$ref": "#/components/responses/Unauthorized"}
    built = {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "gpt-image durable jobs",
            "version": API_VERSION,
            "description": "Durable gpt-image-2 image jobs: start a job and get its id at "
            "once, poll its status (Retry-After says when) or have its end pushed to a "
            "webhook, cancel it, get its escalation packet; upload an edit's input images; run "
            "batches; see each route's health; a web page that does the same. Every answer is "
            "JSON, camelCase (the web page's files aside); every failure the envelope "
            '`{"error": {"code", "message", "field"}}`. A path no route has is a 404 '
            "(`no_such_route`), a route asked with another method a 405 (`method_not_allowed`, "
            "with Allow). Contract: docs/job-contract.md.",
        },
        "servers": [{"url": "/api", "description": "The Functions host's route prefix."}],
        "security": [{"functionKeyHeader": []}, {"functionKeyQuery": []}],
        "tags": [
            {"name": "images", "description": "Image jobs and their inputs."},
            {"name": "batches", "description": "Many image requests at once (docs/batches.md)."},
            {"name": "routes", "description": "The routes' health (docs/routes.md)."},
            {"name": "webhooks", "description": "A job's end, pushed (docs/webhooks.md)."},
            {"name": "web page", "description": "The page at /api/ui (docs/job-contract.md)."},
            {"name": "meta", "description": "This document."},
        ],
        "paths": paths,
        "webhooks": _webhooks(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": {
                "functionKeyHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "A function key (or the host key).",
                },
                "functionKeyQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "code",
                    "description": "The same key as a query parameter; URLs the API hands "
                    "out carry it back.",
                },
            },
        },
    }
    return json.dumps(built)


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy)."""
    return dict(json.loads(_built()))


async def serve(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/openapi.json: the document."""
    return func.HttpResponse(_built(), status_code=200, mimetype=JSON)
