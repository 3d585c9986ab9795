"""The document's schemas (``components.schemas``): the request, the job's status and every
other answer's body, the batch, route-health, webhook and evidence records (http_api.openapi)."""

from __future__ import annotations

from http_api.openapi.error_codes import _ERROR_TEXT, ERROR_CODES, ERROR_VARIANTS, LINE_ERROR_CODES
from http_api.openapi.kit import (
    Schema,
    _counts_by,
    _enum,
    _integer,
    _moment,
    _not_null,
    _nullable,
    _number,
    _object,
    _ref,
    _text,
    _url,
)
from rules.batch_records import TERMINAL_BATCH_STATES, BatchState
from rules.batches import MAX_CUSTOM_ID_CHARS, MAX_ITEMS, BatchMode
from rules.client_timings import MAX_MS
from rules.evidence import EVIDENCE_VERSION, SERVICE_VERSION
from rules.inputs import INLINE_JSON_MAX_BYTES, INLINE_MULTIPART_MAX_BYTES
from rules.job_records import TERMINAL_STATES, JobState
from rules.models import GPT_IMAGE_2, ROUTE_OWNERS
from rules.outcome import FailureKind, Layer
from rules.request import FIELDS
from rules.route_records import Priority
from rules.webhooks import MAX_URL_CHARS, SECRET_PREFIX, WEBHOOK_FIELD, DeliveryState, EventType

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
            "default": {
                "type": "boolean",
                "description": "The route a request that names none takes.",
            },
            "outputFormats": {
                "type": "array",
                "items": _enum(["png", "jpeg", "webp"]),
                "description": "The output_format values the route takes (the web page offers "
                "only the default route's).",
            },
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
            "slotsTaken": _integer(
                "Batch attempts' slots given to interactive attempts before they were sent "
                "(including those the batch attempt then claimed first).",
                minimum=0,
            ),
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
            {
                "id": _ref("BatchId"),
                "state": _enum(sorted(s.value for s in TERMINAL_BATCH_STATES)),
            },
            description="The batch had ended: left alone; `state` is its final state.",
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
