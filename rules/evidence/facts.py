"""What the packet is built from: the job's own records (the durable status, metadata.json) and
the service's infrastructure (rules.evidence)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rules.evidence.sanitize import is_loopback
from rules.job_records import REQUEST_SCHEMA_VERSION, JobState, Outcome
from rules.outcome import SentAs, Timings
from rules.records import as_object, checked_version, reading, required
from rules.retry import Decision
from rules.settings import AppSettings, RouteSettings
from rules.timing import TIMING_FIELDS


@dataclass(frozen=True)
class ReturnedError:
    """The job's error as the status answer and metadata.json show it (``status_error``)."""

    layer: str
    kind: str
    http_status: int | None
    error_type: str | None
    code: str | None
    param: str | None
    message: str | None
    request_id: str | None
    timeout: str | None

    @classmethod
    def from_status_error(cls, data: Mapping[str, Any]) -> ReturnedError:
        return cls(
            layer=data["layer"],
            kind=data["kind"],
            http_status=data["httpStatus"],
            error_type=data["type"],
            code=data["code"],
            param=data["param"],
            message=data["message"],
            request_id=data["requestId"],
            timeout=data.get("timeout"),
        )


@dataclass(frozen=True)
class MetadataAttempt:
    """One attempt as metadata.json lists it."""

    attempt: int
    ok: bool
    outcome: str | None
    layer: str | None
    sent: bool
    http_status: int | None
    error_type: str | None
    code: str | None
    param: str | None
    message: str | None
    request_id: str | None
    timings: Timings
    sent_as: SentAs | None
    decision: Decision | None
    # Which of our limits fired; None in records written before it was kept.
    timeout: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetadataAttempt:
        sent_as, decision = data["request_sent_as"], data["decision"]
        return cls(
            attempt=data["attempt"],
            ok=data["ok"],
            outcome=data["outcome"],
            layer=data["layer"],
            sent=data["sent"],
            http_status=data["http_status"],
            error_type=data["error_type"],
            code=data["code"],
            param=data["param"],
            message=data["message"],
            request_id=data["request_id"],
            timings=Timings.from_json(data["timings"]),
            sent_as=SentAs(
                stream=sent_as["stream"],
                partial_images=sent_as["partial_images"],
                notes=tuple(sent_as["notes"]),
            )
            if sent_as
            else None,
            decision=Decision.from_json(decision) if decision else None,
            timeout=data.get("timeout"),
        )


@dataclass(frozen=True)
class JobMetadata:
    """What the packet reads of a finished job's metadata.json (activities.finish writes it)."""

    job_id: str
    caller: str | None
    state: JobState
    failure: str | None
    error: ReturnedError | None
    finished_at: str
    request: Mapping[str, Any]
    endpoint: str
    model: str
    route: str
    route_owner: str
    timings: Timings
    retry_count: int
    retry_reason: str | None
    post_send_resends: int
    gateway_retry_count: int
    cost_usd: float | None
    cost_estimated: bool
    send_notes: tuple[str, ...]
    attempts: tuple[MetadataAttempt, ...]

    @classmethod
    @reading("metadata")
    def from_json(cls, value: object) -> JobMetadata:
        data = as_object(value, "metadata")
        checked_version(data, "metadata", REQUEST_SCHEMA_VERSION)
        error = required(data, "error", "metadata")
        flat = {name: required(data, name, "metadata") for name in TIMING_FIELDS}
        return cls(
            job_id=required(data, "id", "metadata"),
            caller=required(data, "caller", "metadata"),
            state=JobState(required(data, "state", "metadata")),
            failure=required(data, "failure", "metadata"),
            error=ReturnedError.from_status_error(error) if error else None,
            finished_at=required(data, "finished_at", "metadata"),
            request=dict(required(data, "request", "metadata")),
            endpoint=required(data, "endpoint", "metadata"),
            model=required(data, "model", "metadata"),
            route=required(data, "route", "metadata"),
            route_owner=required(data, "route_owner", "metadata"),
            timings=Timings.from_json(
                {
                    **flat,
                    "http_status": required(data, "http_status", "metadata"),
                    "request_id": required(data, "request_id", "metadata"),
                    "rate_limit": required(data, "rate_limit", "metadata") or {},
                }
            ),
            retry_count=required(data, "retry_count", "metadata"),
            retry_reason=required(data, "retry_reason", "metadata"),
            post_send_resends=required(data, "post_send_resends", "metadata"),
            gateway_retry_count=required(data, "gateway_retry_count", "metadata"),
            cost_usd=required(data, "cost_usd", "metadata"),
            cost_estimated=required(data, "cost_estimated", "metadata"),
            send_notes=tuple(required(data, "send_notes", "metadata")),
            attempts=tuple(
                MetadataAttempt.from_json(a) for a in required(data, "attempts", "metadata")
            ),
        )


@dataclass(frozen=True)
class JobFacts:
    """The job as the durable status (or, after a purge, metadata.json) tells it."""

    job_id: str
    state: JobState
    failure: str | None
    created_at: str | None
    updated_at: str | None
    # The request without its prompt (``ImageJobRequest.shape``): ``prompt_chars`` only.
    request: Mapping[str, Any]
    route: str
    endpoint: str
    # How the first attempt is sent (the send plan), until an attempt says how it was.
    sent_as: SentAs
    priority: str | None
    # The orchestration's output once it ended; None while it runs (or after a purge).
    outcome: Outcome | None = None

    @classmethod
    def from_metadata(cls, metadata: JobMetadata) -> JobFacts:
        """A purged job's facts: its metadata.json is all there is."""
        first = metadata.attempts[0].sent_as if metadata.attempts else None
        partial = metadata.request.get("partial_images")
        return cls(
            job_id=metadata.job_id,
            state=metadata.state,
            failure=metadata.failure,
            created_at=None,
            updated_at=metadata.finished_at,
            request=metadata.request,
            route=metadata.route,
            endpoint=metadata.endpoint,
            sent_as=first or SentAs(stream=True, partial_images=partial, notes=()),
            priority=None,
        )


@dataclass(frozen=True)
class Infrastructure:
    """What runs the service and stands around the route: worker, gateway, limits, queueing,
    and the local stand-ins in use. None of it is secret; none of it names an address."""

    host: str
    functions_runtime: str | None
    python: str
    region: str | None
    plan: str | None
    storage: str
    time_scale: float
    stand_ins: tuple[str, ...]
    gateway_idle_timeout_s: float | None
    gateway_retry_header: str | None
    timeouts_s: Mapping[str, float]
    pace: Mapping[str, int | None]

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "functionsRuntime": self.functions_runtime,
            "python": self.python,
            "region": self.region,
            "plan": self.plan,
            "storage": self.storage,
            "timeScale": self.time_scale,
            "localStandIns": list(self.stand_ins),
            "gateway": {
                "idleTimeoutS": self.gateway_idle_timeout_s,
                "retryHeader": self.gateway_retry_header,
            },
            "timeoutsS": dict(self.timeouts_s),
            "pace": dict(self.pace),
        }


def infrastructure(
    settings: AppSettings,
    route: RouteSettings | None,
    *,
    env: Mapping[str, str],
    devhost: bool,
    python: str,
) -> Infrastructure:
    """The service's infrastructure from its settings and the host's environment variables
    (``WEBSITE_INSTANCE_ID`` and the others App Service sets); ``devhost`` when the app runs
    inside devhost, the local stand-in for the Functions host."""
    in_azure = bool(env.get("WEBSITE_INSTANCE_ID"))
    if devhost:
        host = "devhost (local stand-in for the Azure Functions host)"
    elif in_azure:
        host = "Azure Functions"
    else:
        host = "a local Azure Functions host (Core Tools)"
    storage = settings.storage
    azurite = bool(storage.connection_string) and (
        "UseDevelopmentStorage=true" in (storage.connection_string or "")
        or "devstoreaccount1" in (storage.connection_string or "")
    )
    stand_ins: list[str] = []
    if devhost:
        stand_ins.append("devhost (the Functions host and Durable Task)")
    if azurite:
        stand_ins.append("Azurite (Blob Storage)")
    base = urlsplit(route.base_url).hostname if route else None
    if is_loopback(base):
        stand_ins.append("the route's service is on this machine (the gpt-image-2 simulator)")
    if settings.time_scale != 1:
        stand_ins.append(f"scaled time: every wait divided by {settings.time_scale:g}")
    timeouts = settings.timeouts
    return Infrastructure(
        host=host,
        functions_runtime=env.get("FUNCTIONS_EXTENSION_VERSION") or None,
        python=python,
        region=env.get("REGION_NAME") or None,
        plan=env.get("WEBSITE_SKU") or None,
        storage="Azurite (local stand-in)" if azurite else "Azure Blob Storage",
        time_scale=settings.time_scale,
        stand_ins=tuple(stand_ins),
        gateway_idle_timeout_s=route.gateway_idle_timeout_s if route else None,
        gateway_retry_header=route.gateway_retry_header if route else None,
        timeouts_s={
            "connect": timeouts.connect_s,
            "readIdle": timeouts.read_idle_s,
            "request": timeouts.request_s,
            "upload": timeouts.upload_s,
            "activity": timeouts.activity_s,
            "httpStarter": timeouts.http_starter_s,
            "clientHttp": timeouts.client_http_s,
            "clientPoll": timeouts.client_poll_s,
        },
        pace={
            "requestsPerMinute": route.requests_per_minute if route else None,
            "imagesPerMinute": route.images_per_minute if route else None,
            "concurrency": route.concurrency if route else None,
        },
    )
