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

The document is the same for every deployment: it names no route, host or setting's value, so
it is served anonymously (clients and tools read it before they hold a key) and says nothing
that the repository's docs do not.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import azure.functions as func

from rules.batch_records import BatchState
from rules.batches import MAX_CUSTOM_ID_CHARS, MAX_ITEMS, BatchMode
from rules.dedup import MAX_KEY_CHARS
from rules.inputs import INLINE_JSON_MAX_BYTES, INLINE_MULTIPART_MAX_BYTES
from rules.job_records import TERMINAL_STATES, JobState
from rules.models import GPT_IMAGE_2, ROUTE_OWNERS
from rules.outcome import FailureKind, Layer
from rules.request import FIELDS
from rules.route_records import Priority
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


def _job_request() -> Schema:
    inputs = _RULES.inputs
    assert inputs is not None
    fields = _request_fields()
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
        description="A job: the OpenAI image request's fields (gpt-image-2's rules) and two "
        "job levers, `priority` and `failover`. A field the model would refuse, or an unknown "
        "one, is a 400 naming it; nothing starts.",
    )


def _multipart_request() -> Schema:
    inputs = _RULES.inputs
    assert inputs is not None
    # Form fields are text, never null (an empty one is left out); failover is no text.
    form = {
        name: _not_null(schema) for name, schema in _request_fields().items() if name != "failover"
    }
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


def _request_shape() -> Schema:
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
        {
            "images": {"type": "array", "items": _ref("InputShape")},
            "mask": _nullable(_ref("InputShape")),
            "prompt": _text("Only with `?includePrompt=true`."),
        },
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
            "createdAt": _moment(),
            "report": _nullable(
                _object(
                    {"jsonl": _url("Read-only, expiring."), "csv": _url("Read-only, expiring.")},
                    description="Once the batch ended.",
                )
            ),
        }
    )


def _error(status: int) -> Schema:
    return _object(
        {
            "error": _object(
                {
                    "code": _enum(ERROR_CODES[status]),
                    "message": _text("For a person; never a setting's value or a key."),
                    "field": _text("What is at fault."),
                }
            )
        },
        description=_ERROR_TEXT[status],
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
    for status in ERROR_CODES:
        schemas[f"Error{status}"] = _error(status)
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


def _errors(*statuses: int) -> dict[str, Any]:
    answers: dict[str, Any] = {
        str(s): {"$ref": f"#/components/responses/Error{s}"} for s in statuses
    }
    answers["500"] = {"$ref": "#/components/responses/Error500"}
    answers["503"] = {"$ref": "#/components/responses/Error503"}
    return answers


def _responses() -> dict[str, Any]:
    responses: dict[str, Any] = {
        f"Error{status}": _answer(_ERROR_TEXT[status], f"Error{status}") for status in ERROR_CODES
    }
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
            "once, poll its status (Retry-After says when), cancel it; upload an edit's input "
            "images; run batches; see each route's health. Every answer is JSON, camelCase; "
            "every failure the envelope "
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
            {"name": "meta", "description": "This document."},
        ],
        "paths": paths,
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
