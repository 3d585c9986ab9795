"""One webhook attempt: signed as Standard Webhooks says, recorded in webhooks.json, and sent
only to an address the rules allow, checked on the connect itself (a name that resolves to
loopback is refused, however it looked at start)."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks import Webhook

from activities.webhooks import Seams, deliver, webhook_client
from rules.job_records import JobState, Outcome
from rules.webhook_events import job_event
from rules.webhooks import (
    DeliveryAttempt,
    WebhookDelivery,
    WebhookLog,
    WebhookSettings,
    WebhookTarget,
    caller_secret,
    whsec,
)
from storage.protocol import webhooks_name
from tests.fakes import InMemoryStore
from tests.webhook_receiver import Receiver

MASTER = b"test-only-webhook-secret-0123"
HOOKS = WebhookSettings(secret=MASTER, retry_waits_s=(5.0, 30.0), max_attempts=3)
LOCAL = WebhookSettings(
    secret=MASTER, allow_http=True, allow_loopback=True, retry_waits_s=(5.0,), max_attempts=3
)
CALLER = "digest-alice"
CREATED = "2026-05-07T13:46:00.000Z"
NOW = datetime(2026, 5, 7, 13, 47, 0, tzinfo=UTC)
URL = "https://hooks.example.com/in?token=sekret"


def delivery(url: str = URL, attempts: tuple[DeliveryAttempt, ...] = ()) -> WebhookDelivery:
    target = WebhookTarget(url, "https://svc.example.com/api/images")
    event = job_event("img-1", Outcome(JobState.SAVED, attempt=1), target, NOW)
    return WebhookDelivery("img-1", CREATED, CALLER, target, event, attempts)


class Seen:
    """A MockTransport handler that answers with ``statuses`` in turn and keeps each request."""

    def __init__(self, *statuses: int | Exception) -> None:
        self.statuses = list(statuses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.statuses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, text="x" * 10)


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


def seams(handler: Seen, store: InMemoryStore) -> Seams:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return Seams(client=client, store=store, now=lambda: NOW, sleep=lambda _s: None)


def recorded(store: InMemoryStore) -> WebhookLog:
    return WebhookLog.from_json(store.blobs[webhooks_name("img-1")][0])


def test_a_delivery_is_signed_for_the_caller_and_recorded(store: InMemoryStore):
    seen = Seen(204)
    attempt = deliver(delivery(), HOOKS, seams(seen, store))
    assert attempt.ok
    assert attempt.attempt == 1
    assert attempt.at == "2026-05-07T13:47:00.000Z"
    request = seen.requests[0]
    assert str(request.url) == URL
    assert request.headers["content-type"] == "application/json"
    body = request.content.decode()
    receiver = Webhook(whsec(caller_secret(MASTER, CALLER)))
    # The library's 5-minute tolerance: verified against the attempt's own clock.
    signed = int(request.headers["webhook-timestamp"])
    assert signed == int(NOW.timestamp())
    expected = receiver.sign(request.headers["webhook-id"], NOW, body)
    assert request.headers["webhook-signature"] == expected
    assert request.headers["webhook-id"] == "msg_img-1_saved"
    assert json.loads(body)["type"] == "image.saved"
    log = recorded(store)
    assert log.target == "https://hooks.example.com"
    assert log.deliveries[0].state.value == "delivered"
    assert log.deliveries[0].next_attempt_at is None
    assert "sekret" not in store.blobs[webhooks_name("img-1")][0].decode()


def test_a_500_is_recorded_with_the_next_attempt_and_the_same_id(store: InMemoryStore):
    seen = Seen(500, 200)
    first = deliver(delivery(), HOOKS, seams(seen, store))
    assert first.status_code == 500
    assert not first.ok
    log = recorded(store)
    assert log.deliveries[0].state.value == "delivering"
    assert log.deliveries[0].next_attempt_at == "2026-05-07T13:47:05.000Z"
    second = deliver(delivery(attempts=(first,)), HOOKS, seams(seen, store))
    assert second.attempt == 2
    assert second.ok
    ids = {r.headers["webhook-id"] for r in seen.requests}
    assert ids == {"msg_img-1_saved"}  # receivers dedupe on it
    bodies = {r.content for r in seen.requests}
    assert len(bodies) == 1  # the same event, byte for byte
    log = recorded(store)
    assert [a.status_code for a in log.deliveries[0].attempts] == [500, 200]
    assert log.deliveries[0].state.value == "delivered"


def test_the_last_attempt_that_fails_ends_the_delivery(store: InMemoryStore):
    earlier = (
        DeliveryAttempt(1, "t1", 3, status_code=503),
        DeliveryAttempt(2, "t2", 3, status_code=503),
    )
    attempt = deliver(delivery(attempts=earlier), HOOKS, seams(Seen(503), store))
    assert attempt.attempt == 3
    record = recorded(store).deliveries[0]
    assert record.state.value == "failed"
    assert record.next_attempt_at is None
    assert len(record.attempts) == 3


@pytest.mark.parametrize(
    ("raised", "error"),
    [
        (httpx.ReadTimeout("timed out"), "timeout: no answer within 10 s"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "ConnectError: [Errno 111]"),
        (httpx.ConnectError(f"cannot reach {URL}"), "ConnectError: the connection failed"),
    ],
)
def test_a_transport_failure_is_an_error_without_the_url(
    store: InMemoryStore, raised: Exception, error: str
):
    attempt = deliver(delivery(), HOOKS, seams(Seen(raised), store))
    assert attempt.status_code is None
    assert attempt.error is not None
    assert attempt.error.startswith(error)
    assert "sekret" not in attempt.error


def test_a_record_that_cannot_be_written_does_not_fail_the_delivery(store: InMemoryStore):
    store.fail("webhooks.json", 5)
    attempt = deliver(delivery(), HOOKS, seams(Seen(200), store))
    assert attempt.ok
    assert webhooks_name("img-1") not in store.blobs


def test_without_a_secret_nothing_is_sent(store: InMemoryStore):
    seen = Seen()
    attempt = deliver(delivery(), WebhookSettings(), seams(seen, store))
    assert seen.requests == []
    assert attempt.error is not None
    assert attempt.error.startswith("refused:")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        running.secret = whsec(caller_secret(MASTER, CALLER))
        yield running


def test_the_guarded_client_connects_to_the_address_it_checked(
    store: InMemoryStore, receiver: Receiver
):
    """A name that resolves to loopback, where loopback is allowed: the connection goes to the
    checked address, the request keeps its host name and query."""
    port = int(receiver.url.split(":")[2].split("/")[0])
    url = f"http://hooks.test:{port}/hook?token=t"
    resolver = {"hooks.test": ["127.0.0.1"]}
    client = webhook_client(LOCAL, ssl.create_default_context(), lambda h, _p: resolver[h])
    with client:
        attempt = deliver(delivery(url), LOCAL, Seams(client=client, store=store))
    assert attempt.status_code == 200
    (seen,) = receiver.deliveries
    assert seen.verified
    assert seen.query == "token=t"
    assert seen.headers["host"] == f"hooks.test:{port}"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.7",
        "169.254.169.254",
        "::1",
        # IPv6 forms of a forbidden IPv4 address: NAT64, 6to4, mapped, compatible, Teredo.
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::7f00:1",
        "2002:a9fe:a9fe::",
        "::ffff:a9fe:a9fe",
        "::7f00:1",
        "2001:0:4136:e378:8000:63bf:5601:5656",
    ],
)
def test_a_name_that_resolves_to_a_forbidden_address_is_refused_not_retried(
    store: InMemoryStore, receiver: Receiver, address: str
):
    hooks = WebhookSettings(secret=MASTER, allow_http=True)  # loopback not allowed
    url = "http://innocent.example.com:8080/hook"
    client = webhook_client(hooks, ssl.create_default_context(), lambda _h, _p: [address])
    with client:
        attempt = deliver(delivery(url), hooks, Seams(client=client, store=store))
    assert attempt.error is not None
    assert attempt.error.startswith("refused: the host resolves to")
    assert recorded(store).deliveries[0].state.value == "refused"
    assert receiver.deliveries == []


def test_port_0_is_refused_at_delivery_too(store: InMemoryStore):
    resolved: list[str] = []

    def resolver(host: str, _port: int) -> list[str]:
        resolved.append(host)
        return ["93.184.216.34"]

    client = webhook_client(HOOKS, ssl.create_default_context(), resolver)
    with client:
        attempt = deliver(delivery("https://hooks.example.com:0/in"), HOOKS, Seams(client, store))
    assert attempt.error is not None
    assert attempt.error.startswith("refused: the target has a port that is not one")
    assert resolved == []


@pytest.mark.parametrize("host", ["[64:ff9b::a9fe:a9fe]", "[2002:a9fe:a9fe::]", "[::7f00:1]"])
def test_an_ipv6_literal_embedding_a_refused_ipv4_is_refused_at_delivery(
    store: InMemoryStore, host: str
):
    """A delivery started before the rule (its URL was taken then) is refused now."""
    client = webhook_client(HOOKS, ssl.create_default_context(), lambda h, _p: [h.strip("[]")])
    with client:
        attempt = deliver(delivery(f"https://{host}/in"), HOOKS, Seams(client, store))
    assert attempt.error is not None
    assert attempt.error.startswith("refused: the target names a")


def test_one_forbidden_address_among_several_refuses_the_target(store: InMemoryStore):
    client = webhook_client(
        HOOKS, ssl.create_default_context(), lambda _h, _p: ["93.184.216.34", "127.0.0.1"]
    )
    with client:
        attempt = deliver(delivery(), HOOKS, Seams(client=client, store=store))
    assert attempt.error == "refused: the host resolves to a loopback address"


def test_a_name_that_does_not_resolve_is_retried(store: InMemoryStore):
    def nowhere(_host: str, _port: int) -> list[str]:
        raise OSError("Name or service not known")

    client = webhook_client(HOOKS, ssl.create_default_context(), nowhere)
    with client:
        attempt = deliver(delivery(), HOOKS, Seams(client=client, store=store))
    assert attempt.error == "ConnectError: the host name did not resolve"
    assert recorded(store).deliveries[0].state.value == "delivering"


def test_the_client_follows_no_redirect_and_no_proxy_setting():
    with webhook_client(HOOKS, ssl.create_default_context()) as client:
        assert client.follow_redirects is False  # a 3xx is a failed attempt, never followed
        assert client.trust_env is False
        assert client.timeout.connect == HOOKS.timeout_s


def test_httpx_logs_a_webhook_request_by_its_origin_only(
    store: InMemoryStore, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.INFO, logger="httpx"):
        deliver(delivery(), HOOKS, seams(Seen(200), store))
        httpx.Client(transport=httpx.MockTransport(lambda _r: httpx.Response(200))).get(
            "https://elsewhere.example.com/p?q=1"
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("https://hooks.example.com/[redacted]" in line for line in lines)
    assert not any("sekret" in line for line in lines)
    assert any("https://elsewhere.example.com/p?q=1" in line for line in lines)  # others as is
