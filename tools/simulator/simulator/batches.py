"""The Batch API's records and rules, without I/O: settings, input validation, output lines.

A client that sends its images through the Batch API (half price, its own queue, results within
a 24 h window) needs what the service gives it: a batch that goes ``validating`` ->
``in_progress`` -> ``finalizing`` -> ``completed`` (or ``failed``, ``expired``, ``cancelling`` ->
``cancelled``), ``request_counts``, timestamps, and output and error files of JSON lines. This
module holds the parts that are plain data (the ``Batch`` record, its JSON, what an input file's
lines are worth, the bytes of each output line); ``simulator.batch_runner`` runs a batch on the
simulator's clock and ``simulator.batch_routes`` serves the HTTP API.

Input lines (``BatchRequestInput`` in OpenAI's OpenAPI document, before 2025-05):
``{"custom_id", "method": "POST", "url": <the batch's endpoint>, "body": {...}}``. A file that
breaks a rule fails the whole batch during ``validating``, with one ``errors.data`` entry per
broken line (``code``, ``message``, ``param``, ``line``). The codes are the documented ones
(``invalid_json_line``, ``duplicate_custom_id``, ``url_mismatch``, ``model_mismatch``,
``empty_file``, ``too_many_tasks``, as a public issue thread lists them, stdapi-ai/stdapi.ai#240);
only ``invalid_json_line``'s message has been seen ("This line is not parseable as valid
JSON."); the other messages, and the codes of a line without ``custom_id``, ``method``, ``url``
or ``body``, are UNCERTAIN.

Output lines (``BatchRequestOutput``): ``{"id": "batch_req_...", "custom_id", "response":
{"status_code", "request_id", "body"}, "error": null}``. A request that got an HTTP error is in
the error file with its status and error envelope as ``body``; one that never got an HTTP answer
(expired, cancelled, timed out) has ``"response": null`` and ``"error": {"code", "message"}``.

    lines, problems = read_input(data, endpoint="/v1/images/generations", azure=False,
                                 max_requests=50_000)
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Literal

__all__ = [
    "BATCH_ENDPOINTS",
    "IMAGE_ENDPOINTS",
    "Batch",
    "BatchError",
    "BatchLine",
    "BatchSettings",
    "BatchStatus",
    "http_error_line",
    "new_batch_id",
    "non_http_error_line",
    "read_input",
    "success_line",
]

BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]
ENDED: frozenset[str] = frozenset({"failed", "completed", "expired", "cancelled"})

# What ``POST /batches`` accepts as ``endpoint`` (CreateBatchRequest), and the part of it the
# simulator serves. The others are real endpoints it has no model behind.
BATCH_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
IMAGE_ENDPOINTS = ("/v1/images/generations",)

# The non-HTTP failures of one request (BatchRequestOutput's ``error``). Only the expiry's
# message is as OpenAI's batch guide quotes it; the other two are UNCERTAIN.
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
CANCELLED_MESSAGE = "This request was not executed because the batch was cancelled."
TIMEOUT_MESSAGE = "The request to the model timed out."


@dataclasses.dataclass(frozen=True)
class BatchSettings:
    """How batches run, in service seconds (divided by the time scale like every wait).

    ``validation_s``: how long ``validating`` lasts. ``item_s``: how long one request takes
    once started; ``concurrency`` requests run at once, so a batch of N takes about
    ``ceil(N / concurrency) * item_s``. ``finalizing_s``: from the last request to
    ``completed``. ``cancelling_s``: from the cancel call (and the requests then running) to
    ``cancelled``. ``completion_window_s``: the 24 h window after which a batch expires.
    ``price_factor``: what a batch request costs against the synchronous price (0.5: the Batch
    API's published 50 % discount). ``max_requests`` and ``max_file_bytes``: the input file's
    published limits (50,000 requests, 200 MB).

    The defaults keep a 100-request batch to about 3.5 s at time scale 20:
    (10 + 13 * 4 + 10) / 20 s.
    """

    validation_s: float = 10.0
    item_s: float = 4.0
    concurrency: int = 8
    finalizing_s: float = 10.0
    cancelling_s: float = 5.0
    completion_window_s: float = 86_400.0
    price_factor: float = 0.5
    max_requests: int = 50_000
    max_file_bytes: int = 200 * 1000 * 1000

    def __post_init__(self) -> None:
        for name in ("validation_s", "item_s", "finalizing_s", "cancelling_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.completion_window_s > 0:
            raise ValueError(f"completion_window_s must be > 0, got {self.completion_window_s}")
        if not 0 <= self.price_factor <= 1:
            raise ValueError(f"price_factor must be in [0, 1], got {self.price_factor}")
        for name in ("concurrency", "max_requests", "max_file_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def new_batch_id() -> str:
    return f"batch_{uuid.uuid4().hex}"


def _line_id() -> str:
    return f"batch_req_{secrets.token_hex(16)}"


# --- the batch record ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BatchError:
    """One entry of a failed batch's ``errors.data`` (``BatchError``)."""

    code: str
    message: str
    param: str | None = None
    line: int | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Batch:
    """One batch. The runner changes it on the server's loop (through ``BatchStore.change``)."""

    id: str
    route: str
    endpoint: str
    input_file_id: str
    completion_window: str
    created_at: int
    expires_at: int
    metadata: dict[str, str] | None = None
    output_expires_after_s: int | None = None
    status: BatchStatus = "validating"
    model: str | None = None
    errors: tuple[BatchError, ...] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def to_json(self) -> dict[str, Any]:
        """The ``Batch`` object, every documented key present (null when unset), as in the API
        reference's examples."""
        errors = None
        if self.errors is not None:
            errors = {"object": "list", "data": [e.to_json() for e in self.errors]}
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": errors,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": self.in_progress_at,
            "expires_at": self.expires_at,
            "finalizing_at": self.finalizing_at,
            "completed_at": self.completed_at,
            "failed_at": self.failed_at,
            "expired_at": self.expired_at,
            "cancelling_at": self.cancelling_at,
            "cancelled_at": self.cancelled_at,
            "request_counts": {
                "total": self.total,
                "completed": self.completed,
                "failed": self.failed,
            },
            # UNCERTAIN for images: the batch's usage has text-model detail fields, filled with 0.
            "usage": {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + self.output_tokens,
            },
            "metadata": dict(self.metadata) if self.metadata is not None else None,
        }


# --- the input file -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BatchLine:
    """One valid request of an input file (``line`` counts from 1)."""

    line: int
    custom_id: str
    body: Mapping[str, object] = dataclasses.field(repr=False)


def same_endpoint(url: str, endpoint: str, *, azure: bool) -> bool:
    """Whether a line's ``url`` names the batch's endpoint. Azure's batch documentation writes
    both without ``/v1`` (``/chat/completions``); which forms Azure accepts is UNCERTAIN, so on
    Azure either form matches either form."""
    if not azure:
        return url == endpoint
    return url.removeprefix("/v1") == endpoint.removeprefix("/v1")


def _missing(name: str, line: int) -> BatchError:
    return BatchError(
        "missing_required_parameter", f"Missing required parameter: '{name}'.", name, line
    )


def _check_line(
    raw: bytes, line: int, *, endpoint: str, azure: bool
) -> tuple[BatchLine | None, BatchError | None]:
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        obj = None
    if not isinstance(obj, dict):
        return None, BatchError(
            "invalid_json_line", "This line is not parseable as valid JSON.", None, line
        )
    for name in ("custom_id", "method", "url", "body"):
        if name not in obj or obj[name] is None:
            return None, _missing(name, line)
    custom_id = obj["custom_id"]
    if not isinstance(custom_id, str) or not custom_id:
        return None, BatchError(
            "invalid_value", "Invalid 'custom_id': expected a non-empty string.", "custom_id", line
        )
    if obj["method"] != "POST":
        return None, BatchError(
            "invalid_value",
            f"Invalid value for 'method': {obj['method']!r}. Only 'POST' is supported.",
            "method",
            line,
        )
    url = obj["url"]
    if not isinstance(url, str) or not same_endpoint(url, endpoint, azure=azure):
        return None, BatchError(
            "url_mismatch",
            f"The url of this request ({url!r}) does not match the batch's endpoint "
            f"({endpoint!r}).",
            "url",
            line,
        )
    if not isinstance(obj["body"], dict):
        return None, BatchError(
            "invalid_value", "Invalid 'body': expected a JSON object.", "body", line
        )
    return BatchLine(line, custom_id, obj["body"]), None


def read_input(
    data: bytes, *, endpoint: str, azure: bool, max_requests: int
) -> tuple[list[BatchLine], list[BatchError]]:
    """The requests of an input file, and what fails the batch (empty when nothing does).

    Lines are separated by LF (a CR before it is dropped); the newline after the last line is
    optional. A blank line in the middle is not JSON. Every line's first problem is reported;
    all lines must name the same ``model`` (the first line's).
    """
    if not data.strip():
        return [], [BatchError("empty_file", "The batch input file is empty.")]
    chunks = data.split(b"\n")
    if chunks[-1].strip() == b"":
        chunks.pop()
    if len(chunks) > max_requests:
        return [], [
            BatchError(
                "too_many_tasks",
                f"The batch input file has {len(chunks)} requests; at most {max_requests} "
                "are accepted.",
            )
        ]
    lines: list[BatchLine] = []
    problems: list[BatchError] = []
    seen: set[str] = set()
    model: object = None
    for number, chunk in enumerate(chunks, start=1):
        found, problem = _check_line(
            chunk.removesuffix(b"\r"), number, endpoint=endpoint, azure=azure
        )
        if found is None:
            assert problem is not None
            problems.append(problem)
            continue
        if found.custom_id in seen:
            problems.append(
                BatchError(
                    "duplicate_custom_id",
                    "The custom_id for this request is a duplicate of another request. The "
                    "custom_id parameter must be unique for each request in a batch.",
                    "custom_id",
                    number,
                )
            )
            continue
        seen.add(found.custom_id)
        line_model = found.body.get("model")
        if model is None:
            model = line_model
        elif line_model is not None and line_model != model:
            problems.append(
                BatchError(
                    "model_mismatch",
                    f"The model of this request ({line_model!r}) differs from the model of "
                    f"the batch's other requests ({model!r}).",
                    "body.model",
                    number,
                )
            )
            continue
        lines.append(found)
    return lines, problems


# --- output lines -------------------------------------------------------------------------------


def _head(custom_id: str) -> bytes:
    """``{"id":...,"custom_id":...`` without the closing brace."""
    head = json.dumps({"id": _line_id(), "custom_id": custom_id}, separators=(",", ":"))
    return head.encode()[:-1]


def success_line(custom_id: str, request_id: str, body: Iterable[bytes]) -> bytes:
    """An output file line: status 200 and the images response, whose pieces are ``body``
    (``sse.images_response``: the base64 is never a Python string)."""
    response = json.dumps({"status_code": 200, "request_id": request_id}, separators=(",", ":"))
    return b"".join(
        (
            _head(custom_id),
            b',"response":',
            response.encode()[:-1],
            b',"body":',
            *body,
            b'},"error":null}\n',
        )
    )


def http_error_line(
    custom_id: str, request_id: str, status: int, envelope: Mapping[str, object]
) -> bytes:
    """An error file line for a request answered with an HTTP error."""
    rest = {
        "response": {"status_code": status, "request_id": request_id, "body": dict(envelope)},
        "error": None,
    }
    return _head(custom_id) + b"," + json.dumps(rest, separators=(",", ":")).encode()[1:] + b"\n"


def non_http_error_line(custom_id: str, code: str, message: str) -> bytes:
    """An error file line for a request that never got an HTTP answer."""
    rest = {"response": None, "error": {"code": code, "message": message}}
    return _head(custom_id) + b"," + json.dumps(rest, separators=(",", ":")).encode()[1:] + b"\n"
