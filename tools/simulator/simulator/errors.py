"""Every error the simulated service can answer with, in the exact shape the real one uses.

The client under test decides what to do from the status, the envelope's ``type``/``code``/
``param`` and a few headers, so each case of the reference's error table has one factory here and
the HTTP layer never builds an error body by hand. Two families of shapes exist:

    ApiError
    |-- OpenAI envelope  {"error": {"message", "type", "param", "code", **extra}}
    |     400 invalid_request_error (validation), 400 moderation_blocked, 401 invalid_api_key,
    |     403 unverified organization, 404 model_not_found, 404 Invalid URL, 413 body too large,
    |     429 rate_limit_exceeded, 429 insufficient_quota, 5xx server_error, Azure
    |     content_filter (+ innererror); Files and Batch API: 404 no such file or batch,
    |     400 not a .jsonl batch file, 400 a batch that cannot be cancelled
    `-- Azure/APIM envelope {"error": {"code", "message", ...only the keys the real one has}}
          401 Access denied (APIM), 404 DeploymentNotFound, 404 Resource not found, 400
          contentFilter, 429 call rate limit ("Please retry after N seconds."), 408 Timeout,
          and a generic proxy's 504

No message ever carries a key, a token or prompt text (house rule), even where the real service
echoes a masked key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

OPENAI_KEYS: tuple[str, ...] = ("message", "type", "param", "code")
"""The keys of an OpenAI error object, always present (null when unset)."""

StreamErrorStyle = Literal["azure", "openai"]


class ApiError(Exception):
    """An HTTP error answer: status, the error object's fields and extra response headers.

    ``keys`` lists which of message/type/param/code the envelope carries: the OpenAI shape always
    has all four (null when unset); Azure gateway errors carry only ``code`` and ``message``.
    ``extra`` holds additional keys of the error object (``innererror``, ``moderation_details``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        extra: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        keys: tuple[str, ...] = OPENAI_KEYS,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.extra: dict[str, object] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})
        self.keys = keys

    def error_object(self) -> dict[str, object]:
        """The object under ``"error"``: only the keys this shape carries, then ``extra``."""
        values: dict[str, object] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        body = {key: values[key] for key in self.keys}
        body.update(self.extra)
        return body

    def envelope(self) -> dict[str, object]:
        """The whole JSON response body."""
        return {"error": self.error_object()}

    def __repr__(self) -> str:
        return (
            f"ApiError(status={self.status}, type={self.type!r}, code={self.code!r}, "
            f"param={self.param!r})"
        )


# --- durations as OpenAI writes them -----------------------------------------------------------


def format_duration(seconds: float) -> str:
    """A duration as OpenAI writes it in headers and messages (Go's Duration style).

    Under a second: whole milliseconds, rounded up ("12ms"); otherwise hours, minutes and seconds
    with up to three decimals ("1s", "1.5s", "6m0s", "1h2m3s").
    """
    if seconds < 0 or math.isnan(seconds):
        raise ValueError(f"a duration cannot be negative, got {seconds!r}")
    millis = math.ceil(round(seconds * 1000, 6))
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    second_text = f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") if fraction else f"{whole}"
    if hours:
        return f"{hours}h{minutes}m{second_text}s"
    if minutes:
        return f"{minutes}m{second_text}s"
    return f"{second_text}s"


def format_wait(seconds: float) -> str:
    """A wait in a 429 message ("Please try again in 12s."): ``format_duration``, at least 1ms."""
    if seconds < 0:
        raise ValueError(f"a wait cannot be negative, got {seconds!r}")
    return format_duration(max(seconds, 0.001))


# --- validation (400 invalid_request_error) -----------------------------------------------------


def invalid_request(message: str, *, param: str | None, code: str | None) -> ApiError:
    """400 invalid_request_error: the family every validation rule answers with."""
    return ApiError(400, message, type="invalid_request_error", code=code, param=param)


def unknown_parameter(name: str) -> ApiError:
    return invalid_request(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")


def unsupported_parameter(name: str, model: str) -> ApiError:
    return invalid_request(
        f"Unsupported parameter: '{name}' is not supported with the {model} model.",
        param=name,
        code="unsupported_parameter",
    )


def missing_parameter(name: str) -> ApiError:
    return invalid_request(
        f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
    )


def invalid_type(name: str, expected: str, got: str) -> ApiError:
    return invalid_request(
        f"Invalid type for '{name}': expected {expected}, but got {got} instead.",
        param=name,
        code="invalid_type",
    )


def invalid_value(name: str, message: str) -> ApiError:
    return invalid_request(message, param=name, code="invalid_value")


def invalid_json() -> ApiError:
    return invalid_request(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
        "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
        "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
        "contact us through our help center at help.openai.com.)",
        param=None,
        code=None,
    )


# --- auth, routing, access -----------------------------------------------------------------------


def openai_invalid_api_key() -> ApiError:
    """OpenAI 401. The real message echoes a masked key; this one never echoes any key."""
    return ApiError(
        401,
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        type="invalid_request_error",
        code="invalid_api_key",
    )


def openai_missing_api_key() -> ApiError:
    return ApiError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API "
        "key from https://platform.openai.com/account/api-keys.",
        type="invalid_request_error",
    )


def azure_access_denied() -> ApiError:
    """Azure's APIM 401 for a wrong or missing key: only ``code`` ("401") and ``message``."""
    return ApiError(
        401,
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API endpoint "
        "for your resource.",
        code="401",
        keys=("code", "message"),
    )


def azure_resource_not_found() -> ApiError:
    """Azure's 404 for a path it does not serve, or a deployment path without ``api-version``."""
    return ApiError(404, "Resource not found", code="404", keys=("code", "message"))


def invalid_url(method: str, path: str) -> ApiError:
    """OpenAI's 404 for a path it does not serve."""
    return ApiError(404, f"Invalid URL ({method} {path})", type="invalid_request_error")


def api_version_not_supported() -> ApiError:
    return ApiError(400, "API version not supported", code="BadRequest", keys=("code", "message"))


def request_too_large(limit_bytes: int) -> ApiError:
    """413 for a body over the size limit, in the OpenAI envelope (not aiohttp's plain text)."""
    return ApiError(
        413,
        f"The request body is too large: at most {limit_bytes} bytes are accepted.",
        type="invalid_request_error",
    )


def admin_bad_request(message: str) -> ApiError:
    """A refused ``/_sim/`` admin call: ``{"error": {"message", "type"}}``."""
    return ApiError(400, message, type="invalid_request_error", keys=("message", "type"))


def azure_deployment_not_found() -> ApiError:
    return ApiError(
        404,
        "The API deployment for this resource does not exist. If you created the deployment "
        "within the last 5 minutes, please wait a moment and try again.",
        code="DeploymentNotFound",
        keys=("code", "message"),
    )


def model_not_found(model: str) -> ApiError:
    return ApiError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        type="invalid_request_error",
        code="model_not_found",
    )


def permission_denied(model: str = "gpt-image-2") -> ApiError:
    """403 for an unverified organization (a case the reference lists)."""
    return ApiError(
        403,
        f"Your organization must be verified to use the model `{model}`. Please go to: "
        "https://platform.openai.com/settings/organization/general and click on Verify "
        "Organization. If you just verified, it can take up to 15 minutes for access to "
        "propagate.",
        type="invalid_request_error",
    )


def azure_permission_denied() -> ApiError:
    """Azure's 403 for a principal without a data-plane role (Entra ID token accepted)."""
    return ApiError(
        403,
        "The principal does not have access to API/Operation.",
        code="PermissionDenied",
        keys=("code", "message"),
    )


# --- Files and Batch API ----------------------------------------------------------------------


def no_such_file(file_id: str) -> ApiError:
    """404 for a file id the store does not hold (deleted, never uploaded). Wording: UNCERTAIN."""
    return ApiError(
        404, f"No such File object: {file_id}", type="invalid_request_error", param="id"
    )


def no_such_batch(batch_id: str) -> ApiError:
    """404 for an unknown batch id. Wording: UNCERTAIN."""
    return ApiError(
        404, f"No batch found with id '{batch_id}'.", type="invalid_request_error", param=None
    )


def batch_file_not_jsonl() -> ApiError:
    """400 for a ``purpose=batch`` upload whose name does not end in ``.jsonl``, as OpenAI was seen
    answering it (a public issue thread, BerriAI/litellm#37527)."""
    return ApiError(
        400, "Invalid file format for Batch API. Must be .jsonl", type="invalid_request_error"
    )


def file_too_large(limit_bytes: int) -> ApiError:
    """400 for an upload over the size limit (200 MB for batch input files). Wording: UNCERTAIN."""
    return ApiError(
        400,
        f"File is too large: at most {limit_bytes} bytes are accepted for this purpose.",
        type="invalid_request_error",
        param="file",
    )


def batch_input_file_purpose(file_id: str, purpose: str) -> ApiError:
    """400 for a batch whose input file was not uploaded with ``purpose=batch``. UNCERTAIN."""
    return invalid_request(
        f"The input file {file_id} was uploaded with purpose '{purpose}'; a batch's input file "
        "must be uploaded with purpose 'batch'.",
        param="input_file_id",
        code="invalid_value",
    )


def batch_not_cancellable(batch_id: str, status: str) -> ApiError:
    """Cancelling a batch that already ended. Status and wording: UNCERTAIN (400 rather than
    409, which the SDK would retry)."""
    return ApiError(
        400,
        f"Cannot cancel batch {batch_id}: its status is '{status}'.",
        type="invalid_request_error",
    )


# --- limits ---------------------------------------------------------------------------------------


RateWindow = Literal["requests", "images"]

RATE_UNITS: dict[str, str] = {
    "requests": "requests per min (RPM)",
    "images": "images per min (IPM)",
}
"""How OpenAI's 429 message names each window."""


def rate_limit_exceeded(
    wait_s: float,
    *,
    model: str = "gpt-image-2",
    window: RateWindow = "images",
    limit: int | None = None,
    used: int | None = None,
    requested: int = 1,
    headers: Mapping[str, str] | None = None,
) -> ApiError:
    """429 rate_limit_exceeded; the message ends "Please try again in {wait}." like OpenAI's.

    ``wait_s`` is the already-scaled wait the client should see. ``window`` is the window that
    denied the request; ``limit``, ``used`` and ``requested`` are counted in its unit (requests,
    or images: ``requested`` is then the request's ``n``).
    """
    counts = ""
    if limit is not None:
        shown_used = used if used is not None else limit
        counts = f": Limit {limit}, Used {shown_used}, Requested {requested}"
    message = (
        f"Rate limit reached for {model} on {RATE_UNITS[window]}{counts}. "
        f"Please try again in {format_wait(wait_s)}."
    )
    return ApiError(
        429,
        message,
        type="requests",
        code="rate_limit_exceeded",
        headers=headers,
    )


AZURE_OPERATIONS: dict[str, str] = {
    "generations": "Images_Generations",
    # UNCERTAIN: only the generations operation's name has been seen in a real 429.
    "edits": "Images_Edits",
}


def azure_rate_limit_exceeded(
    wait_s: float,
    *,
    endpoint: Literal["generations", "edits"] = "generations",
    api_version: str = "2025-04-01-preview",
    headers: Mapping[str, str] | None = None,
) -> ApiError:
    """Azure's own 429: ``{"error": {"code": "429", "message"}}``, the wait in whole seconds.

    ``wait_s`` is the already-scaled wait; the message says "Please retry after N seconds."
    with N rounded up (at least 1), the sentence clients parse for their back-off.
    """
    seconds = max(1, math.ceil(wait_s))
    return ApiError(
        429,
        f"Requests to the {AZURE_OPERATIONS[endpoint]} Operation under Azure OpenAI API version "
        f"{api_version} have exceeded call rate limit of your current OpenAI S0 pricing tier. "
        f"Please retry after {seconds} seconds. Please go here: https://aka.ms/oai/quotaincrease "
        "if you would like to further increase the default rate limit.",
        code="429",
        headers=headers,
        keys=("code", "message"),
    )


def insufficient_quota() -> ApiError:
    return ApiError(
        429,
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors.",
        type="insufficient_quota",
        code="insufficient_quota",
    )


# --- failures of the service ----------------------------------------------------------------------

_SERVER_MESSAGES: dict[int, str] = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}


def server_error(status: int = 500, message: str | None = None) -> ApiError:
    """5xx server_error before any byte of a response."""
    if status < 500 or status > 599:
        raise ValueError(f"a server error needs a 5xx status, got {status}")
    text = message or _SERVER_MESSAGES.get(
        status, "The server had an error processing your request."
    )
    return ApiError(status, text, type="server_error")


def http_error(
    status: int,
    message: str | None = None,
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> ApiError:
    """A scripted error of any status: ``server_error`` for 5xx unless ``type`` says otherwise;
    ``param`` names the request field at fault."""
    err = (
        server_error(status, message)
        if status >= 500
        else ApiError(status, message or "Simulated error.")
    )
    if type is not None:
        err.type = type
    if code is not None:
        err.code = code
    if param is not None:
        err.param = param
    return err


def moderation_blocked(request_id: str | None = None) -> ApiError:
    """400 image_generation_user_error / moderation_blocked (the prompt is never echoed)."""
    suffix = f" {request_id}" if request_id else ""
    return ApiError(
        400,
        "Your request was rejected by the safety system. If you believe this is an error, "
        f"contact us at help.openai.com and include the request ID{suffix}.",
        type="image_generation_user_error",
        code="moderation_blocked",
        extra={"moderation_details": {"safety_violations": ["other"]}},
    )


def azure_content_filter(style: Literal["contentFilter", "content_filter"]) -> ApiError:
    """Azure's two content-filter shapes.

    ``contentFilter``: ``{"error": {"code": "contentFilter", "message"}}`` (the image models').
    ``content_filter``: the OpenAI envelope with ``innererror.code: ResponsibleAIPolicyViolation``.
    """
    if style == "contentFilter":
        return ApiError(
            400,
            "Your task failed as a result of our safety system.",
            code="contentFilter",
            keys=("code", "message"),
        )
    if style == "content_filter":
        return ApiError(
            400,
            "The response was filtered due to the prompt triggering Azure OpenAI's content "
            "management policy. Please modify your prompt and retry. To learn more about our "
            "content filtering policies please read our documentation: "
            "https://go.microsoft.com/fwlink/?linkid=2198766",
            type=None,
            code="content_filter",
            param="prompt",
            extra={
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": {
                        "hate": {"filtered": False, "severity": "safe"},
                        "self_harm": {"filtered": False, "severity": "safe"},
                        "sexual": {"filtered": False, "severity": "safe"},
                        "violence": {"filtered": True, "severity": "high"},
                    },
                },
            },
        )
    raise ValueError(f"content filter style must be contentFilter or content_filter, got {style!r}")


def apim_timeout() -> ApiError:
    """Azure APIM's 408 after 60 s without a byte (field report B): exactly the real body."""
    return ApiError(
        408,
        "The operation was timeout.",
        code="Timeout",
        keys=("code", "message"),
    )


def proxy_timeout() -> ApiError:
    """A generic reverse proxy's idle limit: 504 with a minimal JSON body."""
    return ApiError(
        504,
        "The upstream server did not respond in time.",
        code="GatewayTimeout",
        keys=("code", "message"),
    )


def image_generation_failed() -> ApiError:
    """The edits variant of a mid-stream crash reported in field report B."""
    return ApiError(
        500,
        "Image generation failed",
        type="image_generation_server_error",
        code="image_generation_failed",
    )


def mid_stream_server_error(
    error_type: str = "server_error",
    code: str | None = None,
    message: str | None = None,
    param: str | None = None,
) -> ApiError:
    """The error object a stream carries when the generation fails after it started.

    ``code`` ``image_generation_failed`` is field report B's edits variant: its message and type
    (``image_generation_server_error``, unless ``error_type`` names another than the default).
    """
    if code == "image_generation_failed":
        err = image_generation_failed()
        if message is not None:
            err.message = message
        if error_type != "server_error":
            err.type = error_type
        err.param = param
        return err
    return ApiError(
        500,
        message or "An error occurred while processing the request.",
        type=error_type,
        code=code,
        param=param,
    )


# --- stream error events --------------------------------------------------------------------------


def stream_error_event(
    error: ApiError, *, style: StreamErrorStyle, sequence_number: int = 0
) -> dict[str, object]:
    """The ``data`` of an ``event: error`` SSE frame.

    ``azure``: ``{"type": "error", "error": {type, code, message, param}, "sequence_number": N}``
    exactly as field report B shows. ``openai``: the same without ``sequence_number`` (Images API
    events carry none). Both put the error object under ``"error"``, which is what makes the
    official SDK raise ``APIError`` from the stream.
    """
    body: dict[str, object] = {
        "type": error.type,
        "code": error.code,
        "message": error.message,
        "param": error.param,
    }
    body.update(error.extra)
    event: dict[str, object] = {"type": "error", "error": body}
    if style == "azure":
        event["sequence_number"] = sequence_number
    elif style != "openai":
        raise ValueError(f"stream error style must be azure or openai, got {style!r}")
    return event
