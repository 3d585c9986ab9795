"""What one attempt at the upstream call came to, as data the orchestrator can decide on.

The activity returns an ``AttemptResult`` (as JSON) instead of raising, because a raised exception
reaches the orchestrator as text only, and the retry policy needs the structure: which layer
failed, whether the request had been sent (the upstream may still be generating and billing), what
the server asked us to wait.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class FailureKind(StrEnum):
    RATE_LIMITED = "rate_limited"  # 429 rate_limit_exceeded
    QUOTA_EXHAUSTED = "quota_exhausted"  # 429 insufficient_quota
    # The caller's request is at fault (validation, moderation, safety, content filter), as an
    # answer or as an error event in the stream: the same request would be refused again.
    REJECTED = "rejected"
    # The route did not accept the credentials (401: a wrong, missing or expired key or token).
    AUTH_FAILED = "auth_failed"
    # The credentials were accepted, but this identity may not do this (403: the organization is
    # not verified for the model, the principal lacks a role, the region is not served).
    PERMISSION_DENIED = "permission_denied"
    # The route has no such model, deployment or path (404): the route's settings are wrong.
    NOT_FOUND = "not_found"
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
    # The attempt's worker started after its admission's send-by time (a restart, a long
    # queue): not sent; the orchestrator asks the route's governor again (no retry counted).
    ADMISSION_EXPIRED = "admission_expired"
    # The attempt's slot on the route was claimed by another attempt first (an interactive job
    # given a batch job's slot, or the batch job that sent before the interactive one could
    # claim it: rules.route_records.SlotClaim): not sent; asked again, no retry counted.
    SLOT_TAKEN = "slot_taken"


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
    # The request field the route's error names (its ``param``), e.g. ``size``; None when the
    # route named none. Records written before it existed read as None.
    param: str | None = None
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
    def from_json(cls, data: Mapping[str, Any]) -> Failure:
        values = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        values["kind"] = FailureKind(values["kind"])
        values["layer"] = Layer(values["layer"])
        return cls(**values)


def status_error(failure: Failure) -> dict[str, Any]:
    """The ``error`` object of the status answer and metadata.json: the failure without
    ``sent`` and the retry hints, in the answer's camelCase. The route's ``type``, ``code`` and
    ``param`` are carried as the route sent them; ``field`` is the same ``param`` under the name
    the service's own 400 answers use for the request field at fault."""
    return {
        "layer": failure.layer.value,
        "kind": failure.kind.value,
        "httpStatus": failure.http_status,
        "type": failure.error_type,
        "code": failure.code,
        "param": failure.param,
        "field": failure.param,
        "message": failure.message,
        "requestId": failure.request_id,
        "timeout": failure.timeout,
    }


@dataclass(frozen=True)
class Timings:
    """The timing record of one attempt (rules.timing makes it from the clocks).

    Milliseconds are from ``request_started_at`` (the send, ISO 8601 UTC); None means the
    moment never came. The call's own facts (status, request id, rate-limit headers) ride along,
    so metadata.json and the log event have them per attempt.
    """

    request_started_at: str | None = None
    connect_ms: int | None = None
    first_byte_ms: int | None = None
    first_partial_image_ms: int | None = None
    final_image_ms: int | None = None
    download_ms: int | None = None
    upload_ms: int | None = None
    # An edit's input images: read from Blob (before the send), and sent as the request body
    # (from its first byte to its last; the generation's clocks count on from the send).
    read_inputs_ms: int | None = None
    upload_inputs_ms: int | None = None
    partial_images_ms: list[int | None] = field(default_factory=list)
    http_status: int | None = None
    request_id: str | None = None
    rate_limit: dict[str, str] = field(default_factory=dict)
    connection_reused: bool | None = None
    partials_received: int | None = None
    # Retries a gateway said it made on its own (None: it said nothing).
    gateway_retries: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Timings:
        if not data:
            return cls()
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


@dataclass(frozen=True)
class StoredImage:
    """A final image in Blob: its name, content type, size in bytes and pixels."""

    blob: str
    content_type: str
    bytes: int
    width: int
    height: int

    def to_json(self) -> dict[str, Any]:
        return {
            "blob": self.blob,
            "contentType": self.content_type,
            "bytes": self.bytes,
            "width": self.width,
            "height": self.height,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StoredImage:
        return cls(
            blob=data["blob"],
            content_type=data["contentType"],
            bytes=data["bytes"],
            width=data["width"],
            height=data["height"],
        )


@dataclass
class Preview:
    """A partial image, named by arrival (``index``; with n > 1 each image has its own
    ``partial_image_index`` 0, 1, ...). Listed from the moment its upload starts; ``stored``
    says whether it landed, so no blob of an attempt is ever unaccounted for."""

    index: int
    partial_image_index: int
    blob: str
    bytes: int
    stored: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Preview:
        return cls(
            index=data["index"],
            partial_image_index=data.get("partial_image_index", data["index"]),
            blob=data["blob"],
            bytes=data.get("bytes", 0),
            # Version 0 listed a preview only once stored.
            stored=data.get("stored", True),
        )


@dataclass(frozen=True)
class KeptImage:
    """An image a failed attempt did receive (n > 1, a later one failed): kept apart, listed in
    metadata.json, never dropped; ``stored`` is False when even its upload failed."""

    blob: str
    content_type: str
    bytes: int
    stored: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "blob": self.blob,
            "contentType": self.content_type,
            "bytes": self.bytes,
            "stored": self.stored,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeptImage:
        return cls(
            blob=data["blob"],
            content_type=data["contentType"],
            bytes=data["bytes"],
            stored=data["stored"],
        )


@dataclass(frozen=True)
class SentAs:
    """How the attempt was sent, which may differ from the request (rules.send_plan)."""

    stream: bool
    partial_images: int | None
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "partial_images": self.partial_images,
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> SentAs | None:
        if not data:
            return None
        return cls(
            stream=data["stream"],
            partial_images=data.get("partial_images"),
            notes=tuple(data.get("notes") or ()),
        )


@dataclass(frozen=True)
class AttemptResult:
    """What the generate activity returns for one attempt."""

    attempt: int
    ok: bool
    timings: Timings = field(default_factory=Timings)
    failure: Failure | None = None
    images: tuple[StoredImage, ...] = ()
    previews: tuple[Preview, ...] = ()
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    # True when cost_usd is estimated from the shape: no usage arrived, yet it may be billed.
    cost_estimated: bool = False
    request_sent_as: SentAs | None = None
    # Images a failed attempt received and kept (n > 1, a later image failed): stored under
    # attempt-{k}-image-{i}, listed in metadata.json, never dropped.
    kept_images: tuple[KeptImage, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "ok": self.ok,
            "timings": self.timings.to_json(),
            "failure": self.failure.to_json() if self.failure else None,
            "images": [image.to_json() for image in self.images],
            "previews": [preview.to_json() for preview in self.previews],
            "usage": self.usage,
            "cost_usd": self.cost_usd,
            "cost_estimated": self.cost_estimated,
            "request_sent_as": self.request_sent_as.to_json() if self.request_sent_as else None,
            "kept_images": [kept.to_json() for kept in self.kept_images],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttemptResult:
        failure = data.get("failure")
        return cls(
            attempt=data["attempt"],
            ok=data["ok"],
            timings=Timings.from_json(data.get("timings")),
            failure=Failure.from_json(failure) if failure else None,
            images=tuple(StoredImage.from_json(i) for i in data.get("images") or ()),
            previews=tuple(Preview.from_json(p) for p in data.get("previews") or ()),
            usage=data.get("usage"),
            cost_usd=data.get("cost_usd"),
            cost_estimated=data.get("cost_estimated", False),
            request_sent_as=SentAs.from_json(data.get("request_sent_as")),
            kept_images=tuple(KeptImage.from_json(k) for k in data.get("kept_images") or ()),
        )
