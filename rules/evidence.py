"""The escalation packet of one job: a pure rule, typed records in, the packet out.

    packet = build_evidence(facts, metadata, route=..., infrastructure=..., secrets=..., ...)
    packet.to_json()       # what GET /api/images/{id}/evidence answers

Field report A (docs/reference/field-reports.md, "The escalation packet") lists what a provider
needs to find a slow or failed request: the time and time zone, the route and its owner, model
and endpoint, the request's shape, every clock with the layer that failed and the retries, what
the route returned, the local infrastructure, and the smallest sanitized reproduction. It also
lists what must never be in it: keys, tokens, prompts, images, IP addresses, raw caller ids,
unredacted logs. This module makes the packet from the job's own records (the durable status,
metadata.json) and holds the never-list in one place:

- nothing here reads a prompt, a key, an image or a caller: the records it is built from carry
  none (the request's shape has the prompt's length only, metadata.json a digest of the caller);
- every text that came from the route (its message, type, code, param, request ids, rate-limit
  headers, a retry's reason) goes through ``rules.redaction.redact`` with the job's key and
  prompt, as the attempt did, and then ``sanitize``: every IP address becomes ``[ip]``, every
  URL loses its query string, fragment and user info (a SAS link's signature, a ``?code=``);
- ``Evidence.to_json`` runs ``sanitize`` over every string of the packet once more, so a field
  added later cannot carry an address or a signed link out by mistake;
- the reproduction is written from the shape with ``PROMPT`` and ``$IMAGE_ROUTE_KEY``
  placeholders, and a route host that is an IP address becomes ``ROUTE_HOST``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from rules.job_records import REQUEST_SCHEMA_VERSION, JobState, Outcome
from rules.outcome import SentAs, Timings
from rules.records import as_object, checked_version, reading, required
from rules.redaction import Secrets, bare_urls, redact
from rules.retry import Decision
from rules.settings import AppSettings, RouteSettings
from rules.timing import TIMING_FIELDS

# The packet's own schema version (``v``), for tools that read packets kept in tickets.
EVIDENCE_VERSION = 1
# The service's version: pyproject.toml's, which is not deployed (tests/rules/test_evidence.py
# keeps the two equal).
SERVICE_VERSION = "0.1.0"
IP_MARK = "[ip]"
# Upstream text made fit for the packet: redacted with the job's secrets, then sanitized.
Cleaner = Callable[[str | None], str | None]
HOST_PLACEHOLDER = "ROUTE_HOST"
PROMPT_PLACEHOLDER = "PROMPT"
KEY_PLACEHOLDER = "$IMAGE_ROUTE_KEY"
# What the packet never holds, said in the packet itself so a reader need not guess.
WITHHELD = (
    "keys and tokens (the reproduction reads the key from $IMAGE_ROUTE_KEY)",
    "the prompt (its length only; the reproduction says PROMPT)",
    "images, previews and input images (sizes and formats only)",
    "IP addresses (shown as [ip]; a route host that is one as ROUTE_HOST)",
    "query strings, fragments and user info of links (SAS signatures, ?code=)",
    "caller ids",
)
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)(?!\w)")
# Candidates only: a run of hex digits and colons (an IPv4 tail allowed), kept as an address
# when ``ipaddress`` reads it as one and it has the colons of one (not a ``13:46:12`` time).
_IPV6 = re.compile(
    r"\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]"
    r"|(?<![\w:.])[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*(?![\w:])"
)


def sanitize(text: str) -> str:
    """``text`` without IP addresses (``[ip]``) and with every URL cut to scheme, host, port
    and path (no query string, fragment or user info). Idempotent."""
    text = _IPV4.sub(_ipv4_mark, bare_urls(text))
    return _IPV6.sub(_ipv6_mark, text)


def sanitize_json(value: Any) -> Any:
    """Every string of a JSON-like value sanitized (keys too), the rest as it is."""
    if isinstance(value, str):
        return sanitize(value)
    if isinstance(value, Mapping):
        return {sanitize(str(key)): sanitize_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [sanitize_json(item) for item in value]
    return value


def _ipv4_mark(match: re.Match[str]) -> str:
    try:
        ipaddress.IPv4Address(match.group(0))
    except ValueError:
        return match.group(0)  # 999.1.2.3, a version number: not an address
    return IP_MARK


def _ipv6_mark(match: re.Match[str]) -> str:
    found = match.group(0)
    candidate = found.strip("[]")
    if "::" not in candidate and candidate.count(":") < 7 and "." not in candidate:
        return found  # a time (13:46:12), a ratio: too few groups for a full address
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return found
    return IP_MARK


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine (a local stand-in listens there)."""
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --- the records the packet is built from --------------------------------------------------


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


# --- the packet ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteFacts:
    """Where the request went: the route, its owner, model and endpoint. ``host`` is the base
    URL's host (``[ip]`` for an address); ``path`` the endpoint's path, without a query."""

    name: str
    owner: str
    model: str
    endpoint: str
    host: str | None
    path: str | None
    deployment: str | None
    api_version: str | None
    stream: bool | None
    partial_images: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "owner": self.owner,
            "model": self.model,
            "api": "Image API",
            "endpoint": self.endpoint,
            "host": self.host,
            "path": self.path,
            "deployment": self.deployment,
            "apiVersion": self.api_version,
            "stream": self.stream,
            "partialImages": self.partial_images,
        }


@dataclass(frozen=True)
class AttemptEvidence:
    attempt: int
    outcome: str | None
    layer: str | None
    sent: bool
    http_status: int | None
    error_type: str | None
    code: str | None
    param: str | None
    message: str | None
    request_id: str | None
    timeout_layer: str | None
    timings: Timings
    stream: bool | None
    partial_images: int | None
    retry: bool | None
    wait_s: float | None
    reason: str | None
    post_send_resend: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "outcome": self.outcome,
            "layer": self.layer,
            "sent": self.sent,
            "httpStatus": self.http_status,
            "type": self.error_type,
            "code": self.code,
            "param": self.param,
            "message": self.message,
            "requestId": self.request_id,
            "timeoutLayer": self.timeout_layer,
            "timings": clocks_json(self.timings),
            "stream": self.stream,
            "partialImages": self.partial_images,
            "decision": None
            if self.retry is None
            else {
                "retry": self.retry,
                "waitS": self.wait_s,
                "reason": self.reason,
                "postSendResend": self.post_send_resend,
            },
        }


@dataclass(frozen=True)
class Reproduction:
    """The smallest request that shows the problem again, with placeholders for the secrets."""

    curl: str
    python: str
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"curl": self.curl, "python": self.python, "notes": list(self.notes)}


@dataclass(frozen=True)
class Evidence:
    """The escalation packet (field report A), as GET /api/images/{id}/evidence answers it."""

    job_id: str
    generated_at: str
    complete: bool
    state: JobState
    failure: str | None
    created_at: str | None
    first_send_at: str | None
    last_send_at: str | None
    finished_at: str | None
    occurrence: str
    route: RouteFacts
    request: Mapping[str, Any]
    send_notes: tuple[str, ...]
    priority: str | None
    timings: Timings
    timeout_layer: str | None
    retry_count: int
    retry_reasons: tuple[str, ...]
    post_send_resends: int
    gateway_retries: int
    error: ReturnedError | None
    request_ids: tuple[str, ...]
    rate_limit: Mapping[str, str]
    attempts: tuple[AttemptEvidence, ...]
    cost_usd: float | None
    cost_estimated: bool
    infrastructure: Infrastructure
    reproduction: Reproduction
    withheld: tuple[str, ...] = field(default=WITHHELD)

    def to_json(self) -> dict[str, Any]:
        error = self.error
        packet = {
            "v": EVIDENCE_VERSION,
            "id": self.job_id,
            "generatedAt": self.generated_at,
            # False while the job runs (or when its metadata.json could not be written): the
            # clocks and attempts are then those known so far.
            "complete": self.complete,
            "state": self.state.value,
            "failure": self.failure,
            "moment": {
                "timezone": "UTC",
                "createdAt": self.created_at,
                "firstSendAt": self.first_send_at,
                "lastSendAt": self.last_send_at,
                "finishedAt": self.finished_at,
                "occurrence": self.occurrence,
            },
            "route": self.route.to_json(),
            "request": _camel_keys(self.request),
            "sentAs": list(self.send_notes),
            "priority": self.priority,
            "timings": clocks_json(self.timings),
            "timeoutLayer": self.timeout_layer,
            "retries": {
                "count": self.retry_count,
                "reasons": list(self.retry_reasons),
                "postSendResends": self.post_send_resends,
                "gatewayRetries": self.gateway_retries,
            },
            "returned": {
                "httpStatus": self.timings.http_status
                if error is None
                else (error.http_status or self.timings.http_status),
                "error": None
                if error is None
                else {
                    "layer": error.layer,
                    "kind": error.kind,
                    "httpStatus": error.http_status,
                    "type": error.error_type,
                    "code": error.code,
                    "param": error.param,
                    "message": error.message,
                    "requestId": error.request_id,
                },
                "requestIds": list(self.request_ids),
                "rateLimit": dict(self.rate_limit),
            },
            "attempts": [attempt.to_json() for attempt in self.attempts],
            "cost": {"usd": self.cost_usd, "estimated": self.cost_estimated},
            "service": {"name": "gpt-image-durable", "version": SERVICE_VERSION},
            "infrastructure": self.infrastructure.to_json(),
            "reproduction": self.reproduction.to_json(),
            "withheld": list(self.withheld),
        }
        # Once more over everything: no field, now or added later, carries an address or a
        # signed link out.
        result: dict[str, Any] = sanitize_json(packet)
        return result


CLOCK_FIELDS = (
    "connect_ms",
    "first_byte_ms",
    "first_partial_image_ms",
    "final_image_ms",
    "download_ms",
    "upload_ms",
    "read_inputs_ms",
    "upload_inputs_ms",
)


def clocks_json(timings: Timings) -> dict[str, Any]:
    """An attempt's clocks in the answers' camelCase (ms from ``requestStartedAt``)."""
    every = timings.to_json()
    return _camel_keys(
        {
            "request_started_at": timings.request_started_at,
            **{name: every[name] for name in CLOCK_FIELDS},
            "partial_images_ms": list(timings.partial_images_ms),
        }
    )


def timeout_layer(kind: str | None, layer: str | None, timeout: str | None) -> str | None:
    """Which layer's limit ended the attempt: ``gateway`` (its 408/504), ``http_client
    (read_idle)`` (one of ours, named), or None when no limit fired."""
    if kind == "gateway_timeout":
        return "gateway"
    if kind == "local_timeout":
        return f"{layer or 'http_client'} ({timeout})" if timeout else (layer or "http_client")
    return None


def build_evidence(
    facts: JobFacts,
    metadata: JobMetadata | None,
    *,
    route: RouteSettings | None,
    infrastructure: Infrastructure,
    secrets: Secrets,
    generated_at: str,
) -> Evidence:
    """The packet of one job. ``metadata`` is its metadata.json once it ended (None while it
    runs, or when the record could not be written: the outcome then stands in); ``route`` the
    route's settings when the service still has it; ``secrets`` the job's key and prompt, so
    any echo of them in what the route returned is taken out as the attempt took it out."""

    def clean(text: str | None) -> str | None:
        return None if text is None else sanitize(redact(text, secrets))

    outcome = facts.outcome
    attempts = metadata.attempts if metadata else ()
    last = attempts[-1] if attempts else None
    sent_as = (last.sent_as if last else None) or facts.sent_as
    if metadata is not None:
        timings, error = metadata.timings, metadata.error
        retry_count, post_send = metadata.retry_count, metadata.post_send_resends
        gateway_retries = metadata.gateway_retry_count
        cost, estimated = metadata.cost_usd, metadata.cost_estimated
        reasons = [a.decision.reason for a in attempts if a.decision and a.decision.retry]
        if not reasons and metadata.retry_reason:
            reasons = [metadata.retry_reason]
    elif outcome is not None:
        timings = outcome.timings
        failure = outcome.error
        error = (
            None
            if failure is None
            else ReturnedError(
                layer=failure.layer.value,
                kind=failure.kind.value,
                http_status=failure.http_status,
                error_type=failure.error_type,
                code=failure.code,
                param=failure.param,
                message=failure.message,
                request_id=failure.request_id,
                timeout=failure.timeout,
            )
        )
        retry_count, post_send, gateway_retries = outcome.retry_count, 0, 0
        cost, estimated = outcome.cost_usd, outcome.cost_estimated
        reasons = [outcome.retry_reason] if outcome.retry_reason else []
    else:
        timings, error = Timings(), None
        retry_count, post_send, gateway_retries, cost, estimated = 0, 0, 0, None, False
        reasons = []
    if error is not None:
        error = ReturnedError(
            layer=error.layer,
            kind=error.kind,
            http_status=error.http_status,
            error_type=clean(error.error_type),
            code=clean(error.code),
            param=clean(error.param),
            message=clean(error.message),
            request_id=clean(error.request_id),
            timeout=error.timeout,
        )
    request_ids = [a.request_id for a in attempts if a.request_id]
    if not request_ids and timings.request_id:
        request_ids = [timings.request_id]
    failed_kinds = [a.outcome or "?" for a in attempts if not a.ok]
    send_notes = metadata.send_notes if metadata else facts.sent_as.notes
    packet_attempts = tuple(_attempt(a, clean) for a in attempts)
    return Evidence(
        job_id=facts.job_id,
        generated_at=generated_at,
        complete=metadata is not None,
        state=facts.state,
        failure=facts.failure,
        created_at=facts.created_at,
        first_send_at=attempts[0].timings.request_started_at
        if attempts
        else timings.request_started_at,
        last_send_at=last.timings.request_started_at if last else timings.request_started_at,
        finished_at=metadata.finished_at if metadata else None,
        occurrence=_occurrence(len(attempts), failed_kinds),
        route=_route_facts(facts, metadata, route, sent_as),
        request=dict(facts.request),
        send_notes=tuple(clean(n) or "" for n in send_notes),
        priority=facts.priority,
        timings=timings,
        timeout_layer=timeout_layer(error.kind, error.layer, error.timeout) if error else None,
        retry_count=retry_count,
        retry_reasons=tuple(clean(r) or "" for r in reasons),
        post_send_resends=post_send,
        gateway_retries=gateway_retries,
        error=error,
        request_ids=tuple(clean(r) or "" for r in request_ids),
        rate_limit={
            clean(k) or "": clean(str(v)) or "" for k, v in (timings.rate_limit or {}).items()
        },
        attempts=packet_attempts,
        cost_usd=cost,
        cost_estimated=estimated,
        infrastructure=infrastructure,
        reproduction=reproduction(facts, route, sent_as),
    )


def _attempt(attempt: MetadataAttempt, clean: Cleaner) -> AttemptEvidence:
    decision = attempt.decision
    sent_as = attempt.sent_as
    return AttemptEvidence(
        attempt=attempt.attempt,
        outcome=attempt.outcome,
        layer=attempt.layer,
        sent=attempt.sent,
        http_status=attempt.http_status,
        error_type=clean(attempt.error_type),
        code=clean(attempt.code),
        param=clean(attempt.param),
        message=clean(attempt.message),
        request_id=clean(attempt.request_id),
        timeout_layer=timeout_layer(attempt.outcome, attempt.layer, attempt.timeout),
        timings=attempt.timings,
        stream=sent_as.stream if sent_as else None,
        partial_images=sent_as.partial_images if sent_as else None,
        retry=decision.retry if decision else None,
        wait_s=decision.wait_s if decision else None,
        reason=clean(decision.reason) if decision else None,
        post_send_resend=decision.post_send_resend if decision else False,
    )


def _occurrence(attempts: int, failed_kinds: Sequence[str]) -> str:
    """One-off or repeated, within the job: how many attempts, and how many failed how."""
    if attempts == 0:
        return "no attempt recorded yet"
    if not failed_kinds:
        return f"one job, {attempts} attempt{'s' if attempts != 1 else ''}, none failed"
    counts: dict[str, int] = {}
    for kind in failed_kinds:
        counts[kind] = counts.get(kind, 0) + 1
    failed = ", ".join(f"{kind} x{n}" for kind, n in counts.items())
    times = f"{len(failed_kinds)} times" if len(failed_kinds) > 1 else "once"
    return f"one job, {attempts} attempt{'s' if attempts != 1 else ''}; failed {times}: {failed}"


def _route_facts(
    facts: JobFacts, metadata: JobMetadata | None, route: RouteSettings | None, sent_as: SentAs
) -> RouteFacts:
    owner = route.owner if route else (metadata.route_owner if metadata else "unknown")
    model = metadata.model if metadata else (route.model if route else "unknown")
    host = path = deployment = api_version = None
    if route is not None:
        parts = urlsplit(route.base_url)
        host = _host(parts.hostname, parts.port)
        if route.owner == "azure":
            deployment, api_version = route.deployment, route.api_version
            path = f"/openai/deployments/{route.deployment}/images/{facts.endpoint}"
        else:
            path = f"{parts.path.rstrip('/')}/images/{facts.endpoint}"
    return RouteFacts(
        name=facts.route,
        owner=owner,
        model=model,
        endpoint=facts.endpoint,
        host=host,
        path=path,
        deployment=deployment,
        api_version=api_version,
        stream=sent_as.stream,
        partial_images=sent_as.partial_images if sent_as.stream else None,
    )


def _host(hostname: str | None, port: int | None) -> str | None:
    if not hostname:
        return None
    name = IP_MARK if _is_ip(hostname) else hostname
    return f"{name}:{port}" if port else name


def reproduction(facts: JobFacts, route: RouteSettings | None, sent_as: SentAs) -> Reproduction:
    """A curl command and an openai SDK snippet that send the same shape to the same route,
    with ``PROMPT`` for the prompt and the key read from ``$IMAGE_ROUTE_KEY``."""
    shape = facts.request
    edit = facts.endpoint == "edits"
    body: dict[str, Any] = {"prompt": PROMPT_PLACEHOLDER}
    for name in ("n", "size", "quality", "output_format", "output_compression", "background"):
        if shape.get(name) is not None:
            body[name] = shape[name]
    if not edit and shape.get("moderation") is not None:
        body["moderation"] = shape["moderation"]
    if sent_as.stream:
        body["stream"] = True
        body["partial_images"] = sent_as.partial_images or 0
    owner = route.owner if route else "openai"
    notes = [f"PROMPT stands for the job's prompt ({shape.get('prompt_chars', '?')} characters)"]
    if route is None:
        notes.append(f"the route {facts.route!r} is no longer configured: its URL is unknown")
        base, scheme_host = "/v1", "https://ROUTE_HOST"
    else:
        parts = urlsplit(route.base_url)
        hostname = parts.hostname or HOST_PLACEHOLDER
        if _is_ip(hostname):
            hostname = HOST_PLACEHOLDER
            notes.append("ROUTE_HOST stands for the route's host, an IP address")
        elif ":" in hostname:
            hostname = f"[{hostname}]"
        port = f":{parts.port}" if parts.port else ""
        scheme_host = f"{parts.scheme}://{hostname}{port}"
        base = parts.path.rstrip("/")
    inputs = _inputs(shape) if edit else []
    if inputs:
        notes.append(
            "INPUT-k files stand for the job's input images: "
            + "; ".join(f"{name} ({describe})" for name, describe in inputs)
        )
    endpoint = "edits" if edit else "generations"
    if owner == "azure" and route is not None:
        url = f"{scheme_host}/openai/deployments/{route.deployment}/images/{endpoint}"
        auth = f"api-key: {KEY_PLACEHOLDER}"
        query = ["--url-query", f"api-version={route.api_version}"]
        model = route.deployment or "gpt-image-2"
    else:
        url = f"{scheme_host}{base}/images/{endpoint}"
        auth = f"Authorization: Bearer {KEY_PLACEHOLDER}"
        query = []
        model = route.model if route else "gpt-image-2"
        body = {"model": model, **body}
    curl = ["curl", "-sS", "-N", url, *query, "-H", auth]
    if edit:
        for name, value in body.items():
            shown = ("true" if value else "false") if isinstance(value, bool) else str(value)
            curl += ["-F", f"{name}={shown}"]
        for name, _ in inputs:
            field_name = "mask" if name.startswith("MASK") else "image[]"
            curl += ["-F", f"{field_name}=@{name}"]
    else:
        curl += ["-H", "Content-Type: application/json", "-d", _json(body)]
    curl_text = " ".join(_quote(word) for word in curl)
    python = _python_snippet(owner, route, scheme_host, base, model, body, inputs, edit)
    return Reproduction(curl=curl_text, python=python, notes=tuple(notes))


def _inputs(shape: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for index, image in enumerate(shape.get("images") or ()):
        found.append((f"INPUT-{index}.{image.get('format', 'png')}", _describe(image)))
    mask = shape.get("mask")
    if mask:
        found.append((f"MASK.{mask.get('format', 'png')}", _describe(mask)))
    return found


def _describe(image: Mapping[str, Any]) -> str:
    return f"{image.get('format')}, {image.get('width')}x{image.get('height')}"


def _python_snippet(
    owner: str,
    route: RouteSettings | None,
    scheme_host: str,
    base: str,
    model: str,
    body: Mapping[str, Any],
    inputs: Sequence[tuple[str, str]],
    edit: bool,
) -> str:
    if owner == "azure" and route is not None:
        client = (
            "from openai import AzureOpenAI\n"
            f"client = AzureOpenAI(azure_endpoint={scheme_host!r}, "
            f"api_version={route.api_version!r}, api_key=os.environ['IMAGE_ROUTE_KEY'])\n"
        )
    else:
        client = (
            "from openai import OpenAI\n"
            f"client = OpenAI(base_url={scheme_host + base!r}, "
            "api_key=os.environ['IMAGE_ROUTE_KEY'])\n"
        )
    arguments = {"model": model, **{k: v for k, v in body.items() if k != "model"}}
    lines = [f"    {name}={value!r}," for name, value in arguments.items()]
    if edit:
        images = [name for name, _ in inputs if not name.startswith("MASK")]
        masks = [name for name, _ in inputs if name.startswith("MASK")]
        opened = ", ".join(f"open({name!r}, 'rb')" for name in images)
        lines.insert(0, f"    image=[{opened}],")
        if masks:
            lines.insert(1, f"    mask=open({masks[0]!r}, 'rb'),")
    call = "client.images.edit(" if edit else "client.images.generate("
    return "import os\n" + client + "result = " + call + "\n" + "\n".join(lines) + "\n)\n"


def _json(body: Mapping[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False)


def _quote(word: str) -> str:
    # The key's placeholder stays a shell variable, in double quotes; the rest is quoted safe.
    if KEY_PLACEHOLDER in word:
        return '"' + word.replace('"', '\\"') + '"'
    return shlex.quote(word)


def _camel_keys(record: Mapping[str, Any]) -> dict[str, Any]:
    def camel(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(part[:1].upper() + part[1:] for part in rest)

    return {camel(str(key)): value for key, value in record.items()}
