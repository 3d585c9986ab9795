"""The packet itself: the route, the attempts with their clocks, the facts put together, and
sanitized once more as a whole (rules.evidence)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from rules.evidence.facts import (
    Infrastructure,
    JobFacts,
    JobMetadata,
    MetadataAttempt,
    ReturnedError,
)
from rules.evidence.reproduction import Reproduction, reproduction
from rules.evidence.sanitize import IP_MARK, _is_ip, sanitize, sanitize_json
from rules.job_records import JobState
from rules.outcome import SentAs, Timings
from rules.redaction import Secrets, redact
from rules.settings import RouteSettings

# The packet's own schema version (``v``), for tools that read packets kept in tickets.
EVIDENCE_VERSION = 1
# The service's version: pyproject.toml's, which is not deployed (tests/rules/test_evidence.py
# keeps the two equal).
SERVICE_VERSION = "0.1.0"
# Upstream text made fit for the packet: redacted with the job's secrets, then sanitized.
Cleaner = Callable[[str | None], str | None]
# What the packet never holds, said in the packet itself so a reader need not guess.
WITHHELD = (
    "keys and tokens (the reproduction reads the key from $IMAGE_ROUTE_KEY)",
    "the prompt (its length only; the reproduction says PROMPT)",
    "images, previews and input images (sizes and formats only)",
    "IP addresses (shown as [ip]; a route host that is one as ROUTE_HOST)",
    "query strings, fragments and user info of links (SAS signatures, ?code=)",
    "caller ids",
)


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


def _camel_keys(record: Mapping[str, Any]) -> dict[str, Any]:
    def camel(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(part[:1].upper() + part[1:] for part in rest)

    return {camel(str(key)): value for key, value in record.items()}
