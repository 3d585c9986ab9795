"""One webhook attempt: sign the event, POST it, record the attempt in ``{id}/webhooks.json``.

The POST goes through ``guarded_transport``: its connections are made by ``GuardedBackend``,
which resolves the target's host itself, refuses it when any address it resolves to is one
deliveries never go to (rules.webhooks.address_problem: loopback unless allowed, private,
link-local, reserved), and connects to an address it checked. Checking and connecting on the
same resolution leaves no gap for a name that resolves elsewhere a moment later; TLS still
verifies the certificate against the host name. Redirects are not followed, no proxy from the
environment is used, the answer's body is never read.

Nothing logged names more of the target than its origin (a path or query may carry a token),
and the signing secret is derived at each attempt (rules.webhooks.caller_secret), never stored
or logged.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpcore
import httpx

from rules.timing import iso_utc
from rules.webhooks import (
    REFUSED,
    DeliveryAttempt,
    DeliveryRecord,
    WebhookDelivery,
    WebhookLog,
    WebhookSettings,
    address_problem,
    caller_secret,
    delivery_record,
    next_wait_s,
    retries_after,
    signed_headers,
    target_origin,
    url_problem,
)
from storage.protocol import JSON, ImageStore, webhooks_name

log = logging.getLogger("imagejobs.webhooks")

USER_AGENT = "imagejobs-webhooks/1"
# Writing webhooks.json: a few quick tries; the delivery itself stands without it.
RECORD_TRIES = 3
RECORD_BACKOFF_S = 0.5

Resolver = Callable[[str, int], Sequence[str]]


class _OriginOnly(logging.Filter):
    """httpx logs every request's full URL at INFO ("HTTP Request: POST https://..."); while
    this thread posts a webhook, the URL in that line is cut to its origin (the path or query
    may carry the receiver's token). Other requests' lines are left as they are."""

    posting = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(self.posting, "active", False) and isinstance(record.args, tuple):
            record.args = tuple(
                f"{target_origin(str(arg))}/[redacted]" if isinstance(arg, httpx.URL) else arg
                for arg in record.args
            )
        return True


_ORIGIN_ONLY = _OriginOnly()
logging.getLogger("httpx").addFilter(_ORIGIN_ONLY)


class TargetRefused(Exception):
    """The target resolved to an address deliveries never go to (final: not tried again)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver), in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend with the target check on the connect itself."""

    def __init__(
        self,
        hooks: WebhookSettings,
        resolver: Resolver = resolve,
        inner: httpcore.NetworkBackend | None = None,
    ) -> None:
        self._hooks = hooks
        self._resolve = resolver
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._resolve(host, port)
        except (OSError, UnicodeError):
            raise httpcore.ConnectError("the host name did not resolve") from None
        if not addresses:
            raise httpcore.ConnectError("the host name did not resolve")
        for address in addresses:
            # A scoped IPv6 address (fe80::1%eth0) is link-local: the scope is not needed.
            problem = address_problem(ipaddress.ip_address(address.split("%", 1)[0]), self._hooks)
            if problem:
                raise TargetRefused(f"the host resolves to {problem}")
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise TargetRefused("a Unix socket is no webhook target")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def guarded_transport(
    hooks: WebhookSettings, ssl_context: ssl.SSLContext, resolver: Resolver = resolve
) -> httpx.HTTPTransport:
    """An httpx transport whose every connection goes through ``GuardedBackend``."""
    transport = httpx.HTTPTransport(verify=ssl_context, trust_env=False)
    # httpx builds its pool without a way to pass a network backend: the pool is replaced by
    # one with the guarded backend (tests/activities/test_webhooks.py drives it end to end).
    transport._pool = httpcore.ConnectionPool(
        ssl_context=ssl_context,
        max_connections=4,
        network_backend=GuardedBackend(hooks, resolver),
    )
    return transport


def webhook_client(
    hooks: WebhookSettings, ssl_context: ssl.SSLContext, resolver: Resolver = resolve
) -> httpx.Client:
    return httpx.Client(
        transport=guarded_transport(hooks, ssl_context, resolver),
        timeout=httpx.Timeout(hooks.timeout_s),
        follow_redirects=False,
        trust_env=False,
    )


@dataclass(frozen=True)
class Seams:
    """The attempt's outside worlds: the HTTP client (guarded in the app, a MockTransport in
    tests), Blob, the clock and a sleep (for the record's retries)."""

    client: httpx.Client
    store: ImageStore
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def deliver(delivery: WebhookDelivery, hooks: WebhookSettings, seams: Seams) -> DeliveryAttempt:
    """One attempt of ``delivery``'s event (its attempts so far in ``delivery.attempts``): the
    attempt as recorded, also in ``{id}/webhooks.json`` with the next attempt's time."""
    number = len(delivery.attempts) + 1
    event = delivery.event
    started = seams.now()
    clock = seams.monotonic()
    status_code, error = _post(delivery, hooks, seams.client, started)
    elapsed_ms = max(0, round((seams.monotonic() - clock) * 1000))
    attempt = DeliveryAttempt(number, iso_utc(started), elapsed_ms, status_code, error)
    schedule = delivery.schedule_by(hooks)  # as the delivery orchestration decides
    wait = next_wait_s(number, schedule) if retries_after(attempt) else None
    next_at = None
    if wait is not None:
        next_at = iso_utc(started + timedelta(milliseconds=elapsed_ms, seconds=wait))
    record = delivery_record(delivery, (*delivery.attempts, attempt), next_at)
    _record(delivery, record, seams)
    log.info(
        "webhook %s of job %s to %s: attempt %d %s%s",
        event.type.value,
        delivery.job_id,
        target_origin(delivery.target.url),
        number,
        f"answered {status_code}" if status_code is not None else f"failed ({error})",
        f"; next at {next_at}" if next_at else f"; {record.state.value}",
    )
    return attempt


def _post(
    delivery: WebhookDelivery, hooks: WebhookSettings, client: httpx.Client, started: datetime
) -> tuple[int | None, str | None]:
    """The receiver's status code, or why there is none (an error without the URL)."""
    if hooks.secret is None:
        return None, f"{REFUSED} webhooks are off on this service (no webhook secret)"
    # The URL as written, again: a rule added since the start (port 0, an IPv6 literal that
    # embeds a refused IPv4 address) holds for a delivery started before it. (httpx would send
    # port 0 to the scheme's default port.)
    problem = url_problem(delivery.target.url, hooks)
    if problem:
        return None, f"{REFUSED} the target {problem}"
    event = delivery.event
    body = event.body()
    secret = caller_secret(hooks.secret, delivery.caller)
    headers = {
        "content-type": JSON,
        "user-agent": USER_AGENT,
        **signed_headers(secret, event.webhook_id, started, body),
    }
    _ORIGIN_ONLY.posting.active = True
    try:
        # Streamed and closed unread: only the status matters, and a receiver's body may be
        # anything of any size.
        with client.stream(
            "POST", delivery.target.url, content=body.encode(), headers=headers
        ) as response:
            return response.status_code, None
    except TargetRefused as refused:
        return None, f"{REFUSED} {refused.reason}"
    except httpx.TimeoutException:
        return None, f"timeout: no answer within {hooks.timeout_s:g} s"
    except httpx.TransportError as exc:
        return None, f"{type(exc).__name__}: {_plain(exc)}"
    finally:
        _ORIGIN_ONLY.posting.active = False


def _plain(exc: BaseException) -> str:
    """An exception's text when it is short and names no URL; else its kind only."""
    text = str(exc)
    if not text or "://" in text or "?" in text or len(text) > 200:
        return "the connection failed"
    return text


def _record(delivery: WebhookDelivery, record: DeliveryRecord, seams: Seams) -> None:
    """Rewrite ``{id}/webhooks.json`` with this event's record; a record that cannot be
    written is logged, never a failed delivery (the receiver has the event either way)."""
    webhook_log = WebhookLog(
        job_id=delivery.job_id,
        job_created_at=delivery.job_created_at,
        target=target_origin(delivery.target.url),
        deliveries=(record,),
    )
    data = json.dumps(webhook_log.to_json()).encode()
    for attempt in range(1, RECORD_TRIES + 1):
        try:
            seams.store.put(name=webhooks_name(delivery.job_id), data=data, content_type=JSON)
            return
        except Exception as exc:
            if attempt == RECORD_TRIES:
                log.warning(
                    "job %s: webhooks.json not written (%s)", delivery.job_id, type(exc).__name__
                )
                return
            seams.sleep(RECORD_BACKOFF_S * attempt)
