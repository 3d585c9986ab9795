"""Every way the upstream call can fail, translated into one ``Failure`` record, in ONE place.

Sources of failure: an error response (status and JSON envelope, OpenAI- or Azure-shaped), an
error event in the middle of a stream, a stream that ends without its completed event, and httpx
exceptions (timeouts per phase, connection errors before or after the request was sent). The retry
policy reads only the record this module produces, so a new upstream case is added here and
nowhere else; tests/activities/test_upstream_errors.py holds one case per row.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx

from rules.outcome import Failure, FailureKind, Layer
from rules.rate_headers import number, parse_duration
from rules.redaction import scrub

# OpenAI: "Please try again in 12s." / "in 120ms" / "in 1m30s"; Azure: "Please retry after 59
# seconds."
_TRY_AGAIN = re.compile(r"try again in ((?:[0-9.]+(?:ms|h|m|s))+)", re.IGNORECASE)
_RETRY_AFTER = re.compile(r"retry after ([0-9.]+)\s*(?:seconds?|s)\b", re.IGNORECASE)


def request_id(headers: Mapping[str, str]) -> str | None:
    return headers.get("x-request-id") or headers.get("apim-request-id")


def from_response(status: int, headers: Mapping[str, str], body: bytes) -> Failure:
    """An error response (status >= 400) received before any event."""
    error = _error_object(body)
    error_type = _text(error.get("type"))
    code = _text(error.get("code"))
    # The route's own words, for every status: a 403 that says the organization must be
    # verified is worth showing. Anything key-like is scrubbed here; the attempt then removes
    # every trace of its own key and prompt (rules.redaction).
    message = scrub(_text(error.get("message")) or f"HTTP {status}")
    wait, source = retry_hint(headers, message)
    common: dict[str, Any] = {
        "sent": True,
        "http_status": status,
        "error_type": error_type,
        "code": code,
        "param": _text(error.get("param")),
        "request_id": request_id(headers),
        "retry_after_s": wait,
        "retry_after_source": source,
        "should_retry": _should_retry(headers),
    }
    if status in (408, 504) or (status == 502 and not error_type):
        # Azure APIM's 408 {"error":{"code":"Timeout"}} and a proxy's 504: the generation
        # behind them may still be running and billing.
        return Failure(
            kind=FailureKind.GATEWAY_TIMEOUT, layer=Layer.GATEWAY, message=message, **common
        )
    kind = classify(status, error_type, (code, _inner_code(error)))
    return Failure(kind=kind, layer=Layer.ROUTE, message=message, **common)


def from_stream_error(data: str | Mapping[str, Any], headers: Mapping[str, str]) -> Failure:
    """An error event in the stream, in any of its forms: ``{"type": "error", "error": {...}}``
    (Azure, with ``sequence_number``; OpenAI without), ``{"error": {...}}``, ``{"error": "text"}``
    or the flat ``{"type": "error", "code", "message", "param"}``; named ``event: error`` or not.
    """
    event = _json_object(data.encode()) if isinstance(data, str) else dict(data)
    error = _stream_error_object(event)
    error_type = _text(error.get("type"))
    code = _text(error.get("code"))
    message = scrub(_text(error.get("message")) or "error event in the stream")
    return Failure(
        kind=classify(None, error_type, (code, _inner_code(error))),
        layer=Layer.ROUTE,
        message=message,
        sent=True,
        http_status=200,
        error_type=error_type,
        code=code,
        param=_text(error.get("param")),
        request_id=request_id(headers),
    )


# --- the families ---------------------------------------------------------------------------------
#
# What an upstream error is, read from the family its ``code`` or ``type`` belongs to, with the
# HTTP status as the fallback; the same for an answer and for an error event in a stream (which
# has no status of its own). Names are compared without case, ``_`` or ``-``, so that OpenAI's
# ``content_filter`` and Azure's ``contentFilter`` are one member. ``code`` is the most specific
# word an error has, so the code families are read first, then the type families; an
# ``invalid_request_error`` type says little on its own (OpenAI sends it with 401, 403 and 404
# too), so the status decides before it.

_CODE_FAMILIES: tuple[tuple[FailureKind, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        # Billing: nothing will change until someone pays.
        (
            FailureKind.QUOTA_EXHAUSTED,
            r"insufficientquota|billinghardlimitreached|billingnotactive",
        ),
        (FailureKind.RATE_LIMITED, r"ratelimit\w*|toomanyrequests|429"),
        # The credentials were not accepted.
        (
            FailureKind.AUTH_FAILED,
            r"invalidapikey|missingapikey|\w*authentication\w*|unauthori[sz]ed|401",
        ),
        # The credentials were accepted; this identity may not do this.
        (
            FailureKind.PERMISSION_DENIED,
            r"\w*permission\w*|\w*forbidden|authorizationfailed|organizationnotverified"
            r"|unsupportedcountryregionterritory|403",
        ),
        (FailureKind.NOT_FOUND, r"\w*notfound|unknownurl|404"),
        # The user's request: moderation, safety system, content policy, content filter.
        (
            FailureKind.REJECTED,
            r"\w*(moderation|safety|contentpolicy|contentfilter|policyviolation|responsibleai)\w*",
        ),
        # The user's request: validation.
        (
            FailureKind.REJECTED,
            r"invalid\w*|missing\w*|unknownparameter|unsupported\w*"
            r"|\w*(abovemax|belowmin|toolong|toolarge)\w*|badrequest|400|413|422",
        ),
        (
            FailureKind.SERVER_ERROR,
            r"\w*servererror|internal\w*|serviceunavailable|\w*overloaded\w*|\w*failed|5\d\d",
        ),
    )
)
_TYPE_FAMILIES: tuple[tuple[FailureKind, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        (FailureKind.QUOTA_EXHAUSTED, r"insufficientquota"),
        (FailureKind.RATE_LIMITED, r"requests|tokens|images|ratelimit\w*"),
        (FailureKind.AUTH_FAILED, r"authentication\w*"),
        (FailureKind.PERMISSION_DENIED, r"permission\w*"),
        (FailureKind.NOT_FOUND, r"notfound\w*"),
        # image_generation_user_error, image_edit_user_error, user_error, ...
        (FailureKind.REJECTED, r"\w*usererror"),
        # server_error, image_generation_server_error, api_error, internal_error, ...
        (
            FailureKind.SERVER_ERROR,
            r"\w*servererror|apierror|internal\w*|\w*overloaded\w*|serviceunavailable\w*",
        ),
    )
)
# The type of any request the route refused, whatever the reason: the status says which.
_REQUEST_TYPE = "invalidrequesterror"
_BY_STATUS = {
    401: FailureKind.AUTH_FAILED,
    403: FailureKind.PERMISSION_DENIED,
    404: FailureKind.NOT_FOUND,
}


def classify(
    status: int | None, error_type: str | None, codes: tuple[str | None, ...] = ()
) -> FailureKind:
    """The kind of an upstream error from its family; ``status`` None for a stream error event.

    ``codes`` are the error's ``code`` and, where there is one, its inner code (Azure's
    ``innererror.code``). Order: a 429 is a rate limit unless its family says quota; then the
    code families, the type families, the status (401, 403, 404), ``invalid_request_error``;
    last the status class (5xx a server error, other 4xx a rejection) and, in a stream, a
    server error (the generation failed after it started).
    """
    by_code = _family(_CODE_FAMILIES, *codes)
    by_type = _family(_TYPE_FAMILIES, error_type)
    if status == 429:
        quota = FailureKind.QUOTA_EXHAUSTED in (by_code, by_type)
        return FailureKind.QUOTA_EXHAUSTED if quota else FailureKind.RATE_LIMITED
    if by_code is not None:
        return by_code
    if by_type is not None:
        return by_type
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if _norm(error_type) == _REQUEST_TYPE:
        return FailureKind.REJECTED
    if status is None or status >= 500:
        return FailureKind.SERVER_ERROR
    return FailureKind.REJECTED


def _family(
    families: tuple[tuple[FailureKind, re.Pattern[str]], ...], *names: str | None
) -> FailureKind | None:
    for kind, pattern in families:
        if any(pattern.fullmatch(_norm(name)) for name in names if name):
            return kind
    return None


def _norm(name: str | None) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower()) if name else ""


def stream_incomplete(headers: Mapping[str, str], events: int) -> Failure:
    return Failure(
        kind=FailureKind.STREAM_INCOMPLETE,
        layer=Layer.STREAM,
        message=f"the stream ended after {events} events without a completed event",
        sent=True,
        http_status=200,
        request_id=request_id(headers),
    )


def from_exception(exc: Exception, *, sent: bool, deadline_hit: bool = False) -> Failure:
    """An httpx exception; ``sent`` says whether the request had left this process."""
    if deadline_hit:
        return _timeout("request", "the whole-request limit fired", sent=True)
    if isinstance(exc, httpx.ConnectTimeout):
        return _timeout("connect", "connecting to the route timed out", sent=False)
    if isinstance(exc, httpx.PoolTimeout):
        return _timeout("pool", "no connection was free in time", sent=False)
    if isinstance(exc, httpx.WriteTimeout):
        return _timeout("write", "sending the request timed out", sent=True)
    if isinstance(exc, httpx.ReadTimeout):
        return _timeout("read_idle", "no byte arrived within the read idle limit", sent=True)
    if isinstance(exc, httpx.ConnectError):
        return Failure(
            kind=FailureKind.CONNECTION_LOST,
            layer=Layer.NETWORK,
            message=f"could not connect to the route: {type(exc).__name__}",
            sent=False,
        )
    return Failure(
        kind=FailureKind.CONNECTION_LOST,
        layer=Layer.NETWORK,
        message=f"the connection was lost: {type(exc).__name__}",
        sent=sent,
    )


def stream_incomplete_images(request_id: str | None, got: int, expected: int) -> Failure:
    return Failure(
        kind=FailureKind.STREAM_INCOMPLETE,
        layer=Layer.STREAM,
        message=f"the answer ended with {got} of {expected} images",
        sent=True,
        http_status=200,
        request_id=request_id,
    )


def unreadable(exc: Exception, http_status: int | None, request_id: str | None) -> Failure:
    """A 2xx answer that could not be read (bad JSON or base64, a missing field). The message
    names only the exception's type: its text could quote the body."""
    return Failure(
        kind=FailureKind.PROTOCOL_ERROR,
        layer=Layer.ROUTE,
        message=f"the route's answer could not be read ({type(exc).__name__})",
        sent=True,
        http_status=http_status,
        request_id=request_id,
    )


def cancelled(*, sent: bool) -> Failure:
    """The caller cancelled the job while this attempt ran; the stream was closed."""
    return Failure(
        kind=FailureKind.CANCELLED,
        layer=Layer.CALLER,
        message="the caller cancelled the job; the stream was closed",
        sent=sent,
    )


def _timeout(which: str, message: str, *, sent: bool) -> Failure:
    return Failure(
        kind=FailureKind.LOCAL_TIMEOUT,
        layer=Layer.HTTP_CLIENT,
        message=message,
        sent=sent,
        timeout=which,
    )


def retry_hint(headers: Mapping[str, str], message: str) -> tuple[float | None, str | None]:
    """What the server asked us to wait, and where it said so, most trusted source first."""
    ms = number(headers.get("retry-after-ms"))
    if ms is not None and ms >= 0:
        return ms / 1000, "retry-after-ms"
    after = headers.get("retry-after")
    if after:
        seconds = number(after)
        if seconds is None:
            seconds = _http_date_in(after)
        if seconds is not None and seconds >= 0:
            return seconds, "retry-after"
    reset = parse_duration(headers.get("x-ratelimit-reset-requests"))
    if reset is not None and reset > 0:
        return reset, "x-ratelimit-reset-requests"
    match = _TRY_AGAIN.search(message)
    if match:
        seconds = parse_duration(match[1].lower())
        if seconds is not None:
            return seconds, "message"
    match = _RETRY_AFTER.search(message)
    if match:
        return float(match[1]), "message"
    return None, None


def _should_retry(headers: Mapping[str, str]) -> bool | None:
    value = headers.get("x-should-retry")
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_object(body: bytes) -> dict[str, Any]:
    error = _json_object(body).get("error")
    return error if isinstance(error, dict) else {}


def _stream_error_object(event: Mapping[str, Any]) -> dict[str, Any]:
    error = event.get("error")
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return {"message": error}
    # The flat form: the event itself is the error; its ``type`` ("error") names the event.
    return {key: value for key, value in event.items() if key != "type"}


def _inner_code(error: Mapping[str, Any]) -> str | None:
    """Azure's ``innererror.code`` (``ResponsibleAIPolicyViolation``), if any."""
    inner = error.get("innererror")
    return _text(inner.get("code")) if isinstance(inner, dict) else None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _http_date_in(text: str) -> float | None:
    """Seconds until an HTTP date (``Retry-After: Wed, 21 Oct 2026 07:28:00 GMT``), or None."""
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return moment.timestamp() - time.time()
