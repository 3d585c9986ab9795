"""Webhooks: a job's ``webhookUrl`` is told of the job's end, signed the Standard Webhooks way.

    hooks = WebhookSettings.from_env(os.environ, time_scale)   # AppSettings.webhooks
    url = parse_webhook_url(body, hooks)                        # None, or RequestInvalid (400)
    secret = caller_secret(hooks.secret, caller_digest)         # 32 bytes, per caller
    headers = signed_headers(secret, event.webhook_id, sent_at, body_text)

Everything here is pure: the rules a start request's URL must meet, the rule for an address the
delivery is about to connect to (the activity resolves the name at delivery time and applies
it to every address: a name that resolves to loopback is refused, whatever it looked like at
start), the per-caller secret, the signature (the ``standardwebhooks`` package), the retry
schedule, and the records: the delivery orchestration's input and ``{id}/webhooks.json``.

The secret is derived, never stored: an HMAC under IMAGE_WEBHOOK_SECRET of the caller's digest
(rules.dedup.caller_digest), so every job of a caller is signed with one secret that
``GET /api/webhook-secret`` hands to that caller and no per-caller record exists. A URL may
carry a token in its path or query: what is logged or shown of it is its origin only
(``target_origin``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit

from standardwebhooks import Webhook

from rules.errors import RequestInvalid, SettingsInvalid
from rules.records import (
    as_object,
    checked_version,
    optional_int,
    optional_text,
    reading,
    required,
)

# The start request's field (a job lever, like ``priority``; never sent upstream).
WEBHOOK_FIELD = "webhookUrl"
MAX_URL_CHARS = 2048
SCHEMA_VERSION = 1
# Version 2 of WebhookDelivery added ``schedule`` (DeliverySchedule): the retry waits and the
# attempts of the delivery, frozen when it starts. A version 1 delivery has none: it follows the
# settings of the moment, as it did.
DELIVERY_SCHEMA_VERSION = 2
SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret
# The sample settings' secret: public, so signatures made with it prove nothing.
SAMPLE_WEBHOOK_SECRET = "local-only-webhook-secret-change-me"  # noqa: S105 - public by design

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


@dataclass(frozen=True)
class WebhookSettings:
    """Webhook deliveries: off without a secret (a start naming ``webhookUrl`` is then a 400).

    ``secret`` is IMAGE_WEBHOOK_SECRET (a Key Vault reference in Azure), never in ``repr``.
    ``retry_waits_s`` are the waits after the 1st, 2nd, ... failed attempt (the last repeats),
    already divided by IMAGE_TIME_SCALE; ``max_attempts`` bounds the attempts of one event.
    """

    secret: bytes | None = field(default=None, repr=False)
    allow_http: bool = False
    allow_loopback: bool = False
    retry_waits_s: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 3600.0)
    max_attempts: int = 8
    # One attempt's connect and read limits (network seconds: not scaled).
    timeout_s: float = 10.0

    @property
    def enabled(self) -> bool:
        return self.secret is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str], time_scale: float = 1.0) -> WebhookSettings:
        in_azure = bool(env.get("WEBSITE_INSTANCE_ID"))
        raw = env.get("IMAGE_WEBHOOK_SECRET", "")
        secret: bytes | None = None
        if raw:
            if len(raw) < 16:
                raise SettingsInvalid(
                    "IMAGE_WEBHOOK_SECRET",
                    "set at least 16 random characters (a Key Vault reference in Azure): each "
                    "caller's signing secret is an HMAC under it",
                )
            if raw == SAMPLE_WEBHOOK_SECRET and in_azure:
                raise SettingsInvalid(
                    "IMAGE_WEBHOOK_SECRET", "is the sample's public value; set a secret of your own"
                )
            secret = raw.encode()
        # Local runs only: in Azure a loopback target is the worker itself (the host's admin
        # API included), and plain HTTP would carry the events over the internet in clear.
        allow_loopback = _flag(env, "IMAGE_WEBHOOK_ALLOW_LOOPBACK")
        allow_http = _flag(env, "IMAGE_WEBHOOK_ALLOW_HTTP")
        for name, on in (
            ("IMAGE_WEBHOOK_ALLOW_LOOPBACK", allow_loopback),
            ("IMAGE_WEBHOOK_ALLOW_HTTP", allow_http),
        ):
            if on and in_azure:
                raise SettingsInvalid(name, "is for local runs only; remove it in Azure")
        waits = _waits(env.get("IMAGE_WEBHOOK_RETRY_WAITS_S", ""), cls.retry_waits_s)
        return cls(
            secret=secret,
            allow_http=allow_http,
            allow_loopback=allow_loopback,
            retry_waits_s=tuple(wait / time_scale for wait in waits),
            max_attempts=_whole(env, "IMAGE_WEBHOOK_MAX_ATTEMPTS", cls.max_attempts),
            timeout_s=_seconds(env, "IMAGE_WEBHOOK_TIMEOUT_S", cls.timeout_s),
        )


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in ("", "true", "false"):
        raise SettingsInvalid(name, "must be true or false")
    return raw == "true"


def _waits(raw: str, default: tuple[float, ...]) -> tuple[float, ...]:
    if not raw.strip():
        return default
    try:
        waits = tuple(float(w) for w in raw.split(",") if w.strip())
    except ValueError:
        waits = ()
    if not waits or not all(math.isfinite(w) and w > 0 for w in waits):
        raise SettingsInvalid(
            "IMAGE_WEBHOOK_RETRY_WAITS_S", "must be seconds above 0 separated by commas, e.g. 5,30"
        )
    return waits


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdecimal() or int(raw) < 1:
        raise SettingsInvalid(name, "must be a whole number of at least 1")
    return int(raw)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise SettingsInvalid(name, "must be a number of seconds above 0")
    return value


# --- the target ----------------------------------------------------------------------------


def parse_webhook_url(body: object, hooks: WebhookSettings) -> str | None:
    """The start request's ``webhookUrl``, checked; None when it names none. RequestInvalid
    naming the field for anything a delivery would refuse, or when webhooks are off."""
    if not isinstance(body, Mapping) or body.get(WEBHOOK_FIELD) is None:
        return None
    value = body[WEBHOOK_FIELD]
    if not hooks.enabled:
        raise RequestInvalid(
            WEBHOOK_FIELD, "unsupported", "webhooks are off on this service (no webhook secret)"
        )
    if not isinstance(value, str):
        raise RequestInvalid(WEBHOOK_FIELD, "invalid_type", f"{WEBHOOK_FIELD} must be a string")
    problem = url_problem(value, hooks)
    if problem:
        raise RequestInvalid(WEBHOOK_FIELD, "invalid_value", f"{WEBHOOK_FIELD} {problem}")
    return value


def url_problem(url: str, hooks: WebhookSettings) -> str | None:
    """Why ``url`` cannot be a webhook target, or None. The host is judged as written: an IP
    address by ``address_problem``, a name by its form (``localhost`` is loopback); what a name
    resolves to is judged at delivery time, on every address."""
    schemes = ("https", "http") if hooks.allow_http else ("https",)
    if len(url) > MAX_URL_CHARS:
        return f"must be at most {MAX_URL_CHARS} characters"
    if not url.isascii() or not url.isprintable() or " " in url:
        return "must be a URL of printable ASCII without spaces (a host name in punycode)"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        allowed = " or ".join(f"{s}://" for s in schemes)
        return f"must start with {allowed}"
    if not parts.netloc:
        return "must name a host"
    if "@" in parts.netloc:
        return "must not carry a user name or password (put a token in the path or query)"
    if parts.fragment or url.endswith("#"):
        return "must not have a #fragment"
    try:
        port = parts.port  # raises ValueError for a port that is not one
    except ValueError:
        return "has a port that is not one"
    if port == 0:
        return "has a port that is not one (port 0 reaches no service)"
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "must name a host"
    return host_problem(host, hooks)


def host_problem(host: str, hooks: WebhookSettings) -> str | None:
    """Why a host as written (a name, or an IP address without brackets) is refused."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        problem = address_problem(address, hooks)
        return f"names {problem}" if problem else None
    name = host.lower()
    if name == "localhost" or name.endswith(".localhost"):
        return None if hooks.allow_loopback else "names a loopback host"
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return "has a host that is neither a host name nor an IP address"
    if labels[-1].isdecimal() or labels[-1].startswith("0x"):
        # 127.1, 2130706433, 0x7f.1: resolvers read these as IP addresses.
        return "has an IP address in a form other than a.b.c.d"
    if len(labels) < 2:
        return "needs a fully qualified host name"
    return None


Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 ranges that carry an IPv4 address in their low 32 bits: IPv4-compatible (::a.b.c.d,
# RFC 4291 2.5.5.1, deprecated) and the NAT64 well-known prefix (RFC 6052 2.1), through which a
# NAT64 gateway reaches that IPv4 address. IPv4-mapped (::ffff:0:0/96), 6to4 (2002::/16) and
# Teredo (2001::/32) are read by ipaddress itself.
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
# The local-use NAT64 prefix (RFC 8215): the operator picks the prefix length inside it, so the
# IPv4 address may sit at any of RFC 6052's positions after /48.
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_NAT64_LOCAL_LENGTHS = (96, 64, 56, 48)  # the usual /96 first: its reading is named


def _rfc6052_ipv4(address: ipaddress.IPv6Address, prefix_length: int) -> ipaddress.IPv4Address:
    """The IPv4 address embedded after a NAT64 prefix of ``prefix_length`` bits (RFC 6052 2.2:
    bits 64-71 are skipped)."""
    value = int(address)
    bits = [b for b in range(prefix_length, 128) if not 64 <= b < 72][:32]
    v4 = 0
    for bit in bits:
        v4 = (v4 << 1) | ((value >> (127 - bit)) & 1)
    return ipaddress.IPv4Address(v4)


def embedded_ipv4(address: Address) -> tuple[ipaddress.IPv4Address, ...]:
    """Every IPv4 address an IPv6 address stands for (IPv4-mapped and -compatible, 6to4,
    Teredo's server and client, NAT64): a connection to the IPv6 address may reach each."""
    if isinstance(address, ipaddress.IPv4Address):
        return ()
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        return address.teredo
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64_WELL_KNOWN:
        return (low,)
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are IPv6's own
        return (low,)
    if address in _NAT64_LOCAL:
        readings = dict.fromkeys(_rfc6052_ipv4(address, n) for n in _NAT64_LOCAL_LENGTHS)
        # A reading of all zeros is a prefix length not in use (0.0.0.0 is refused anyway).
        return tuple(v4 for v4 in readings if int(v4)) or tuple(readings)
    return ()


def address_problem(address: Address, hooks: WebhookSettings) -> str | None:
    """Why a delivery must not connect to ``address`` (phrased to follow "names" or "resolves
    to"), or None. Loopback only where IMAGE_WEBHOOK_ALLOW_LOOPBACK allows it; private,
    link-local (the metadata service), shared, reserved, multicast and unspecified never. An
    IPv6 address that embeds an IPv4 one (``embedded_ipv4``) is judged as that IPv4 address:
    refused when it is; an IPv4-mapped or -compatible one is that address and nothing else."""
    embedded = embedded_ipv4(address)
    for v4 in embedded:
        problem = _own_problem(v4, hooks)
        if problem:
            return f"{problem} ({v4}, embedded in the IPv6 address)"
    if isinstance(address, ipaddress.IPv6Address) and (
        address.ipv4_mapped is not None or (embedded and address in _IPV4_COMPATIBLE)
    ):
        return None  # the IPv4 address itself, judged above
    return _own_problem(address, hooks)


def _own_problem(address: Address, hooks: WebhookSettings) -> str | None:
    if address.is_loopback:
        return None if hooks.allow_loopback else "a loopback address"
    if address.is_multicast or address.is_unspecified:
        return "a multicast or unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if not address.is_global:
        return "a private or reserved address"
    return None


def target_origin(url: str) -> str:
    """What may be logged or shown of a webhook URL: scheme, host and port, never the path or
    query (either may carry a token)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme.lower()}://{host}{port}"


# --- the secret and the signature -------------------------------------------------------------


def caller_secret(master: bytes, caller_digest: str) -> bytes:
    """The signing secret of one caller (32 bytes): derived, so nothing per caller is stored.
    It changes when IMAGE_WEBHOOK_SECRET or IMAGE_JOB_ID_SECRET (under which the caller's
    digest is made) changes."""
    return hmac.new(master, f"webhook-secret\n{caller_digest}".encode(), hashlib.sha256).digest()


def whsec(secret: bytes) -> str:
    """The secret as Standard Webhooks libraries take it: ``whsec_`` and base64."""
    return SECRET_PREFIX + base64.b64encode(secret).decode()


def signed_headers(secret: bytes, webhook_id: str, sent_at: datetime, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt: ``webhook-timestamp`` is the
    attempt's moment (whole seconds), so a retry an hour later is still within a receiver's
    tolerance; ``webhook-id`` is the event's, the same on every attempt."""
    moment = sent_at.astimezone(UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(math.floor(moment.timestamp())),
        # standardwebhooks reads the datetime's fields as UTC: hand it UTC.
        "webhook-signature": Webhook(secret).sign(webhook_id, moment, body),
    }


# --- the retry schedule ---------------------------------------------------------------------


@dataclass(frozen=True)
class DeliverySchedule:
    """A delivery's retry waits and attempts, taken from the settings when it starts (the
    delivery orchestration decides by them: a settings change must not replay it differently)."""

    retry_waits_s: tuple[float, ...]
    max_attempts: int

    @classmethod
    def from_settings(cls, hooks: WebhookSettings) -> DeliverySchedule:
        return cls(retry_waits_s=hooks.retry_waits_s, max_attempts=hooks.max_attempts)

    def to_json(self) -> dict[str, Any]:
        return {"retry_waits_s": list(self.retry_waits_s), "max_attempts": self.max_attempts}

    @classmethod
    @reading("delivery schedule")
    def from_json(cls, value: object) -> DeliverySchedule:
        data = as_object(value, "delivery schedule")
        return cls(
            retry_waits_s=tuple(float(wait) for wait in data["retry_waits_s"]),
            max_attempts=int(data["max_attempts"]),
        )


def next_wait_s(attempt: int, hooks: WebhookSettings | DeliverySchedule) -> float | None:
    """The wait after failed attempt ``attempt`` (1-based) before the next, or None: no more."""
    if attempt >= hooks.max_attempts:
        return None
    waits = hooks.retry_waits_s
    return waits[min(attempt, len(waits)) - 1]


# --- the records ----------------------------------------------------------------------------


# The error of an attempt whose target resolved to an address deliveries never go to: final.
REFUSED = "refused:"


class EventType(StrEnum):
    SAVED = "image.saved"
    FAILED = "image.failed"
    CANCELLED = "image.cancelled"


class DeliveryState(StrEnum):
    """Where one event's delivery stands."""

    DELIVERING = "delivering"  # attempts go on (a durable timer runs before the next)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed
    REFUSED = "refused"  # the target resolved to an address deliveries never go to


@dataclass(frozen=True)
class WebhookTarget:
    """Where a job's events go: ``url`` as the caller gave it (it may carry a token: never
    logged, never in an answer), and the base of the job's status URL (``.../api/images``,
    without any function key): the event's ``statusUrl`` is ``{status_base}/{id}``."""

    url: str = field(repr=False)
    status_base: str | None = None

    def status_url(self, job_id: str) -> str | None:
        return f"{self.status_base}/{quote(job_id, safe='')}" if self.status_base else None

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "status_base": self.status_base}

    @classmethod
    @reading("webhook target")
    def from_json(cls, value: object) -> WebhookTarget:
        data = as_object(value, "webhook target")
        return cls(
            url=required(data, "url", "webhook target"),
            status_base=optional_text(data.get("status_base")),
        )


@dataclass(frozen=True)
class WebhookEvent:
    """One event as it is signed and sent: ``{"type", "timestamp", "data"}`` (the Standard
    Webhooks payload shape). ``timestamp`` is the event's moment (ISO 8601 UTC, ms), the same on
    every attempt; ``webhook_id`` is the event's id, the same on every attempt."""

    webhook_id: str
    type: EventType
    timestamp: str
    data: dict[str, Any]

    def body(self) -> str:
        payload = {"type": self.type.value, "timestamp": self.timestamp, "data": self.data}
        return json.dumps(payload, separators=(",", ":"))

    def to_json(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "type": self.type.value,
            "timestamp": self.timestamp,
            "data": self.data,
        }

    @classmethod
    @reading("webhook event")
    def from_json(cls, value: object) -> WebhookEvent:
        data = as_object(value, "webhook event")
        return cls(
            webhook_id=required(data, "webhook_id", "webhook event"),
            type=EventType(required(data, "type", "webhook event")),
            timestamp=required(data, "timestamp", "webhook event"),
            data=as_object(required(data, "data", "webhook event"), "webhook event"),
        )


def webhook_id(job_id: str, event: EventType) -> str:
    """The event's id: receivers dedupe on it (an attempt may arrive twice)."""
    return f"msg_{job_id}_{event.value.removeprefix('image.')}"


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST of an event: when, how long, the receiver's status code or our error."""

    attempt: int
    at: str
    duration_ms: int
    status_code: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "at": self.at,
            "duration_ms": self.duration_ms,
            "status_code": self.status_code,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeliveryAttempt:
        return cls(
            attempt=data["attempt"],
            at=data["at"],
            duration_ms=data["duration_ms"],
            status_code=optional_int(data.get("status_code")),
            error=optional_text(data.get("error")),
        )

    def answer(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "at": self.at,
            "durationMs": self.duration_ms,
            "statusCode": self.status_code,
            "error": self.error,
        }


@dataclass(frozen=True)
class WebhookDelivery:
    """The delivery orchestration's input: one event of one job, to its target.

    ``caller`` is the job's caller digest, from which the activity derives the signing secret
    at each attempt (the secret itself is never in history). ``attempts`` are the attempts
    made so far (the activity's input; empty in the orchestration's)."""

    job_id: str
    job_created_at: str
    caller: str
    target: WebhookTarget
    event: WebhookEvent
    attempts: tuple[DeliveryAttempt, ...] = ()
    # Frozen when the delivery starts (the start activity sets it); None: version 1.
    schedule: DeliverySchedule | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "job_id": self.job_id,
            "job_created_at": self.job_created_at,
            "caller": self.caller,
            "target": self.target.to_json(),
            "event": self.event.to_json(),
            "attempts": [attempt.to_json() for attempt in self.attempts],
        }
        if self.schedule is not None:  # without it, written exactly as version 1
            data.update(v=DELIVERY_SCHEMA_VERSION, schedule=self.schedule.to_json())
        return data

    def schedule_by(self, hooks: WebhookSettings) -> DeliverySchedule:
        """The schedule the delivery follows: its own, else (version 1) the settings'."""
        return self.schedule or DeliverySchedule.from_settings(hooks)

    @classmethod
    @reading("webhook delivery")
    def from_json(cls, value: object) -> WebhookDelivery:
        data = as_object(value, "webhook delivery")
        checked_version(data, "webhook delivery", DELIVERY_SCHEMA_VERSION)
        schedule = data.get("schedule")
        return cls(
            job_id=required(data, "job_id", "webhook delivery"),
            job_created_at=required(data, "job_created_at", "webhook delivery"),
            caller=required(data, "caller", "webhook delivery"),
            target=WebhookTarget.from_json(required(data, "target", "webhook delivery")),
            event=WebhookEvent.from_json(required(data, "event", "webhook delivery")),
            attempts=tuple(DeliveryAttempt.from_json(a) for a in data.get("attempts") or ()),
            schedule=DeliverySchedule.from_json(schedule) if schedule else None,
        )


@dataclass(frozen=True)
class DeliveryRecord:
    """One event's deliveries as ``{id}/webhooks.json`` and the status answer show them."""

    webhook_id: str
    type: EventType
    timestamp: str
    state: DeliveryState
    attempts: tuple[DeliveryAttempt, ...]
    next_attempt_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "type": self.type.value,
            "timestamp": self.timestamp,
            "state": self.state.value,
            "attempts": [attempt.to_json() for attempt in self.attempts],
            "next_attempt_at": self.next_attempt_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeliveryRecord:
        return cls(
            webhook_id=data["webhook_id"],
            type=EventType(data["type"]),
            timestamp=data["timestamp"],
            state=DeliveryState(data["state"]),
            attempts=tuple(DeliveryAttempt.from_json(a) for a in data["attempts"]),
            next_attempt_at=optional_text(data.get("next_attempt_at")),
        )

    def answer(self) -> dict[str, Any]:
        """The status answer's entry (camelCase)."""
        return {
            "id": self.webhook_id,
            "type": self.type.value,
            "timestamp": self.timestamp,
            "state": self.state.value,
            "attempts": [attempt.answer() for attempt in self.attempts],
            "nextAttemptAt": self.next_attempt_at,
        }


@dataclass(frozen=True)
class WebhookLog:
    """``{id}/webhooks.json``: every delivery of the job's events, rewritten after each
    attempt. ``target`` is the URL's origin only. ``job_created_at`` tells it from a record an
    earlier job under the same id left."""

    job_id: str
    job_created_at: str
    target: str
    deliveries: tuple[DeliveryRecord, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "job_id": self.job_id,
            "job_created_at": self.job_created_at,
            "target": self.target,
            "deliveries": [delivery.to_json() for delivery in self.deliveries],
        }

    @classmethod
    @reading("webhooks")
    def from_json(cls, value: object) -> WebhookLog:
        data = as_object(value, "webhooks")
        checked_version(data, "webhooks", SCHEMA_VERSION)
        return cls(
            job_id=required(data, "job_id", "webhooks"),
            job_created_at=required(data, "job_created_at", "webhooks"),
            target=required(data, "target", "webhooks"),
            deliveries=tuple(
                DeliveryRecord.from_json(d) for d in required(data, "deliveries", "webhooks")
            ),
        )


def delivery_record(
    delivery: WebhookDelivery, attempts: tuple[DeliveryAttempt, ...], next_attempt_at: str | None
) -> DeliveryRecord:
    """Where the event's delivery stands after ``attempts``."""
    last = attempts[-1] if attempts else None
    if last is not None and last.ok:
        state = DeliveryState.DELIVERED
    elif last is not None and last.error is not None and last.error.startswith(REFUSED):
        state = DeliveryState.REFUSED
    elif next_attempt_at is None and last is not None:
        state = DeliveryState.FAILED
    else:
        state = DeliveryState.DELIVERING
    event = delivery.event
    return DeliveryRecord(
        webhook_id=event.webhook_id,
        type=event.type,
        timestamp=event.timestamp,
        state=state,
        attempts=attempts,
        next_attempt_at=next_attempt_at if state is DeliveryState.DELIVERING else None,
    )


def retries_after(attempt: DeliveryAttempt) -> bool:
    """Whether a failed attempt is tried again (schedule permitting): every failure but a
    refused target. A 4xx is retried too: a receiver's wrong secret or a deploy gets fixed."""
    return not attempt.ok and not (attempt.error or "").startswith(REFUSED)
