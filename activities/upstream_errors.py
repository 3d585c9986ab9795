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
import math
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx

from rules.outcome import Failure, FailureKind, Layer

# OpenAI: "Please try again in 12s." / "in 120ms" / "in 1m30s"; Azure: "Please retry after 59
# seconds."
_TRY_AGAIN = re.compile(r"try again in ((?:[0-9.]+(?:ms|h|m|s))+)", re.IGNORECASE)
_RETRY_AFTER = re.compile(r"retry after ([0-9.]+)\s*(?:seconds?|s)\b", re.IGNORECASE)
_DURATION_PART = re.compile(r"([0-9.]+)(ms|h|m|s)")


def request_id(headers: Mapping[str, str]) -> str | None:
    return headers.get("x-request-id") or headers.get("apim-request-id")


def from_response(status: int, headers: Mapping[str, str], body: bytes) -> Failure:
    """An error response (status >= 400) received before any event."""
    error = _error_object(body)
    error_type = _text(error.get("type"))
    code = _text(error.get("code"))
    if status in (401, 403):
        # OpenAI's 401 echoes part of the key it was given: never carried on.
        message = f"the route refused the credentials (HTTP {status})"
    else:
        message = _redact(_text(error.get("message")) or f"HTTP {status}")
    wait, source = retry_hint(headers, message)
    common: dict[str, Any] = {
        "sent": True,
        "http_status": status,
        "error_type": error_type,
        "code": code,
        "request_id": request_id(headers),
        "retry_after_s": wait,
        "retry_after_source": source,
        "should_retry": _should_retry(headers),
    }
    if status == 429:
        quota = code == "insufficient_quota" or error_type == "insufficient_quota"
        kind = FailureKind.QUOTA_EXHAUSTED if quota else FailureKind.RATE_LIMITED
        return Failure(kind=kind, layer=Layer.ROUTE, message=message, **common)
    if status in (408, 504) or (status == 502 and not error_type):
        # Azure APIM's 408 {"error":{"code":"Timeout"}} and a proxy's 504: the generation
        # behind them may still be running and billing.
        return Failure(
            kind=FailureKind.GATEWAY_TIMEOUT, layer=Layer.GATEWAY, message=message, **common
        )
    if status >= 500:
        return Failure(kind=FailureKind.SERVER_ERROR, layer=Layer.ROUTE, message=message, **common)
    if status in (401, 403):
        return Failure(kind=FailureKind.AUTH_FAILED, layer=Layer.ROUTE, message=message, **common)
    if status == 404:
        return Failure(kind=FailureKind.NOT_FOUND, layer=Layer.ROUTE, message=message, **common)
    return Failure(kind=FailureKind.REJECTED, layer=Layer.ROUTE, message=message, **common)


def from_stream_error(data: str, headers: Mapping[str, str]) -> Failure:
    """An ``error`` event in the stream (Azure: ``{"type":"error","error":{...}}``)."""
    error = _error_object(data.encode())
    error_type = _text(error.get("type"))
    code = _text(error.get("code"))
    message = _redact(_text(error.get("message")) or "error event in the stream")
    rejected = code in {"moderation_blocked", "content_filter", "contentFilter"}
    return Failure(
        kind=FailureKind.REJECTED if rejected else FailureKind.SERVER_ERROR,
        layer=Layer.ROUTE,
        message=message,
        sent=True,
        http_status=200,
        error_type=error_type,
        code=code,
        request_id=request_id(headers),
    )


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
    ms = _number(headers.get("retry-after-ms"))
    if ms is not None and ms >= 0:
        return ms / 1000, "retry-after-ms"
    after = headers.get("retry-after")
    if after:
        seconds = _number(after)
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


def parse_duration(text: str | None) -> float | None:
    """OpenAI's reset durations: ``12ms``, ``1s``, ``6m0s``, ``1.5s``; None for -1 or junk."""
    if not text:
        return None
    text = text.strip()
    plain = _number(text)
    if plain is not None:
        return plain if plain >= 0 else None
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(v + u for v, u in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(value) * scale[unit] for value, unit in parts)


_KEY_LIKE = re.compile(r"\b(sk-|sess-|key-)[A-Za-z0-9_*\-]{4,}")


def _redact(message: str) -> str:
    """Route messages go to status answers and metadata.json: nothing key-like goes with them."""
    return _KEY_LIKE.sub(r"\1[redacted]", message)[:500]


def _should_retry(headers: Mapping[str, str]) -> bool | None:
    value = headers.get("x-should-retry")
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def _error_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return {}
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _number(text: str | None) -> float | None:
    """A finite number, or None (``inf`` and ``nan`` are not waits)."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _http_date_in(text: str) -> float | None:
    """Seconds until an HTTP date (``Retry-After: Wed, 21 Oct 2026 07:28:00 GMT``), or None."""
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return moment.timestamp() - time.time()
