"""What one attempt at the upstream call came to, as data the orchestrator can decide on.

The activity returns an ``AttemptResult`` (as JSON) instead of raising, because a raised exception
reaches the orchestrator as text only, and the retry policy needs the structure: which layer
failed, whether the request had been sent (the upstream may still be generating and billing), what
the server asked us to wait.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class FailureKind(StrEnum):
    RATE_LIMITED = "rate_limited"  # 429 rate_limit_exceeded
    QUOTA_EXHAUSTED = "quota_exhausted"  # 429 insufficient_quota
    REJECTED = "rejected"  # 400 validation, moderation, content filter
    AUTH_FAILED = "auth_failed"  # 401, 403
    NOT_FOUND = "not_found"  # 404: unknown deployment or model
    SERVER_ERROR = "server_error"  # 5xx before any byte, or an error event mid-stream
    STREAM_INCOMPLETE = "stream_incomplete"  # the stream ended without a completed event
    PROTOCOL_ERROR = "protocol_error"  # a 2xx answer that could not be read
    GATEWAY_TIMEOUT = "gateway_timeout"  # a gateway or proxy answered 408/504
    LOCAL_TIMEOUT = "local_timeout"  # our own client gave up (connect, read idle, request)
    CONNECTION_LOST = "connection_lost"  # reset or refused
    IMAGE_INVALID = "image_invalid"  # the final image did not decode to what was asked
    STORAGE_FAILED = "storage_failed"  # the image (or the mark before the send) not stored
    INTERNAL_ERROR = "internal_error"  # this service failed while running the attempt
    CANCELLED = "cancelled"


class Layer(StrEnum):
    """The layer that failed, in field report A's vocabulary (docs/reference/field-reports.md)."""

    ROUTE = "route"  # the model service (OpenAI, Azure OpenAI) returned the error
    GATEWAY = "gateway"  # a gateway or proxy in front of it
    HTTP_CLIENT = "http_client"  # our own client's timeout
    NETWORK = "network"
    STREAM = "stream"
    IMAGE_CHECK = "image_check"
    STORAGE = "storage"
    CALLER = "caller"
    WORKER = "worker"  # the process running the attempt stopped (crash, kill, scale-in)


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    layer: Layer
    message: str
    # True once the request left this process: the upstream may be generating (and billing).
    sent: bool
    http_status: int | None = None
    error_type: str | None = None
    code: str | None = None
    request_id: str | None = None
    # Which of our limits fired, for LOCAL_TIMEOUT: connect, read_idle, request, upload.
    timeout: str | None = None
    # What the server asked us to wait, from retry-after-ms, retry-after, the reset header or the
    # message, in that order of trust; None when it said nothing.
    retry_after_s: float | None = None
    retry_after_source: str | None = None
    # True when the server said x-should-retry: false (or true), None when it did not say.
    should_retry: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Failure:
        values = dict(data)
        values["kind"] = FailureKind(values["kind"])
        values["layer"] = Layer(values["layer"])
        return cls(**values)

    def status_error(self) -> dict[str, Any]:
        """The ``error`` object of the status answer."""
        return {
            "layer": self.layer.value,
            "kind": self.kind.value,
            "httpStatus": self.http_status,
            "type": self.error_type,
            "code": self.code,
            "message": self.message,
            "requestId": self.request_id,
            "timeout": self.timeout,
        }


@dataclass(frozen=True)
class AttemptResult:
    """What the generate activity returns for one attempt."""

    attempt: int
    ok: bool
    timings: dict[str, Any]
    failure: Failure | None = None
    images: list[dict[str, Any]] = field(default_factory=list)
    previews: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    request_sent_as: dict[str, Any] = field(default_factory=dict)
    # Images a failed attempt received and kept (n > 1, a later image failed): stored under
    # attempt-{k}-image-{i}, listed in metadata.json, never dropped.
    kept_images: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["failure"] = self.failure.to_json() if self.failure else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttemptResult:
        values = dict(data)
        values["failure"] = Failure.from_json(data["failure"]) if data.get("failure") else None
        return cls(**values)
