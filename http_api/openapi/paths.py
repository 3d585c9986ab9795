"""The document's operations: every path and method with its parameters, answers and headers,
the web page's files, the reusable responses, and the webhook the service sends
(http_api.openapi)."""

from __future__ import annotations

from typing import Any

from http_api.openapi.error_codes import _ERROR_TEXT, ERROR_CODES, ERROR_VARIANTS
from http_api.openapi.kit import Schema, _ref, _text
from http_api.openapi.schemas import _JOB_ID_PATTERN
from http_api.web_page import INDEX, MEDIA_TYPES, content_security_policy
from rules.dedup import MAX_KEY_CHARS
from storage.protocol import JSON

# Where the document is served, under the host's /api prefix (http_api.blueprint).
ROUTE = "openapi.json"


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
                "unless IMAGE_SHARED_CALLER_MAY_LIST is on. The jobs started with POST "
                "/api/images; a batch's items are not listed (GET /api/batches/{id}).",
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
                        "description": "The page token the previous page's `next` carries; "
                        "any other text is a 400.",
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
                        "description": "`true` (any case): the answer's request has the "
                        "prompt; `false` (any case) or absent: it has not; anything else is a "
                        "400.",
                        "schema": {
                            "type": "string",
                            "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$",
                        },
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
                "responses": {
                    "200": _answer("Every configured route.", "Routes"),
                    **_errors(400),
                },
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
                        "started (200); `false` (any case) or absent: the batch starts; anything "
                        "else (`1`, `yes`, empty) is a 400 and starts nothing.",
                        "schema": {
                            "type": "string",
                            "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$",
                        },
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
