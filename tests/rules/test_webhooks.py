"""Webhook rules: which URLs a job may name and which addresses a delivery may reach, the
per-caller secret and the Standard Webhooks signature (checked with the standardwebhooks
library, as a receiver would), the retry schedule, the event, and the records."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from rules.dedup import fingerprint
from rules.errors import RequestInvalid, SettingsInvalid
from rules.job_records import JobState, Outcome
from rules.outcome import Failure, FailureKind, Layer, StoredImage
from rules.records import RecordUnreadable
from rules.request import parse_job_request
from rules.settings import AppSettings
from rules.webhook_events import job_event
from rules.webhooks import (
    SAMPLE_WEBHOOK_SECRET,
    DeliveryAttempt,
    DeliveryState,
    EventType,
    WebhookDelivery,
    WebhookLog,
    WebhookSettings,
    WebhookTarget,
    address_problem,
    caller_secret,
    delivery_record,
    next_wait_s,
    parse_webhook_url,
    retries_after,
    signed_headers,
    target_origin,
    url_problem,
    whsec,
)

from .conftest import ENV

SECRET = b"test-only-webhook-secret-0123"
HOOKS = WebhookSettings(secret=SECRET)
LOCAL = WebhookSettings(secret=SECRET, allow_http=True, allow_loopback=True)
NOW = datetime(2026, 5, 7, 13, 46, 12, 345_000, tzinfo=UTC)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/in",
        "https://hooks.example.com:8443/in?token=abc&x=1",
        "https://HOOKS.Example.COM./in",
        "https://93.184.216.34/hook",
        "https://[2606:4700::6810:85e5]/hook",
        "https://a_b.example.com/x",
    ],
)
def test_public_https_targets_are_taken(url: str):
    assert url_problem(url, HOOKS) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/in", "https://"),
        ("ftp://hooks.example.com/in", "https://"),
        ("hooks.example.com/in", "https://"),
        ("https:///in", "host"),
        ("https://user:pass@hooks.example.com/in", "user name"),
        ("https://hooks.example.com/in#frag", "fragment"),
        ("https://hooks.example.com:99999/in", "port"),
        ("https://hooks.exämple.com/in", "ASCII"),
        ("https://hooks.example.com/in x", "spaces"),
        ("https://localhost/in", "loopback"),
        ("https://api.localhost/in", "loopback"),
        ("https://127.0.0.1/in", "loopback"),
        ("https://[::1]/in", "loopback"),
        ("https://[::ffff:127.0.0.1]/in", "loopback"),
        ("https://10.1.2.3/in", "private"),
        ("https://192.168.0.10/in", "private"),
        ("https://172.16.0.1/in", "private"),
        ("https://100.64.0.1/in", "private"),
        ("https://169.254.169.254/metadata", "link-local"),
        ("https://[fe80::1]/in", "link-local"),
        ("https://[fd00::1]/in", "private"),
        ("https://0.0.0.0/in", "unspecified"),
        ("https://224.0.0.1/in", "multicast"),
        ("https://127.1/in", "a.b.c.d"),
        ("https://2130706433/in", "a.b.c.d"),
        ("https://0x7f.1/in", "a.b.c.d"),
        ("https://intranet/in", "fully qualified"),
        ("https://bad..example.com/in", "neither"),
        ("https://-bad.example.com/in", "neither"),
        ("https://" + "a" * 2050 + ".com/", "2048"),
    ],
)
def test_what_a_target_must_not_be(url: str, why: str):
    problem = url_problem(url, HOOKS)
    assert problem is not None
    assert why in problem


# Every IPv6 form that embeds an IPv4 address, each with a blocked one inside: judged as that
# IPv4 address, at start (url_problem) and after resolving (address_problem).
EMBEDDED_BLOCKED = [
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 well-known prefix, 169.254.169.254
    ("64:ff9b::7f00:1", "loopback"),  # NAT64, 127.0.0.1
    ("64:ff9b::a00:1", "private"),  # NAT64, 10.0.0.1
    ("64:ff9b:1:a9fe:a9:fe00::", "link-local"),  # local-use NAT64 /48, 169.254.169.254
    ("64:ff9b:1::7f00:1", "loopback"),  # local-use NAT64 /96, 127.0.0.1
    ("2002:a9fe:a9fe::", "link-local"),  # 6to4
    ("2002:7f00:1::1", "loopback"),  # 6to4
    ("2002:c0a8:1::", "private"),  # 6to4, 192.168.0.1
    ("::ffff:169.254.169.254", "link-local"),  # IPv4-mapped
    ("::ffff:a9fe:a9fe", "link-local"),  # IPv4-mapped, hex
    ("::169.254.169.254", "link-local"),  # IPv4-compatible
    ("::7f00:1", "loopback"),  # IPv4-compatible
    ("::a00:1", "private"),  # IPv4-compatible
    # Teredo: server 65.54.227.120, client (obfuscated) 169.254.169.169 / 127.0.0.1.
    ("2001:0:4136:e378:8000:63bf:5601:5656", "link-local"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),
]


@pytest.mark.parametrize(("address", "why"), EMBEDDED_BLOCKED)
def test_an_ipv6_form_embedding_a_blocked_ipv4_is_judged_as_that_ipv4(address: str, why: str):
    for problem in (
        url_problem(f"https://[{address}]/x", HOOKS),
        url_problem(f"http://[{address}]:9/x", WebhookSettings(secret=b"s", allow_http=True)),
        address_problem(ipaddress.ip_address(address), HOOKS),
    ):
        assert problem is not None
        assert why in problem


@pytest.mark.parametrize(
    "address", ["64:ff9b::808:808", "2002:808:808::", "::ffff:8.8.8.8", "2606:4700::1111"]
)
def test_an_ipv6_form_embedding_a_public_ipv4_is_taken(address: str):
    assert url_problem(f"https://[{address}]/x", HOOKS) is None
    assert address_problem(ipaddress.ip_address(address), HOOKS) is None


def test_an_embedded_loopback_is_taken_where_loopback_is():
    assert url_problem("http://[64:ff9b::7f00:1]:9/x", LOCAL) is None
    assert url_problem("http://[::ffff:127.0.0.1]:9/x", LOCAL) is None
    # Never link-local, however it is written.
    assert "link-local" in (url_problem("http://[64:ff9b::a9fe:a9fe]/x", LOCAL) or "")


@pytest.mark.parametrize("port", ["0", "00", "000"])
def test_port_0_is_refused(port: str):
    problem = url_problem(f"https://example.com:{port}/x", HOOKS)
    assert problem is not None
    assert "port" in problem


def test_loopback_and_http_only_where_settings_allow_them():
    assert url_problem("http://127.0.0.1:8123/hook", LOCAL) is None
    assert url_problem("http://localhost:8123/hook", LOCAL) is None
    assert url_problem("https://[::1]:8123/hook", LOCAL) is None
    # Never private or link-local, whatever is allowed.
    assert "private" in (url_problem("http://10.0.0.1/hook", LOCAL) or "")
    assert "link-local" in (url_problem("http://169.254.169.254/", LOCAL) or "")
    assert "https://" in (url_problem("http://hooks.example.com/", HOOKS) or "")


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:4700::6810:85e5", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:93.184.216.34", True),
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("fe80::1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address to refuse, not one to bind
        ("255.255.255.255", False),
        ("ff02::1", False),
    ],
)
def test_the_address_rule_a_delivery_applies_after_resolving(address: str, allowed: bool):
    assert (address_problem(ipaddress.ip_address(address), HOOKS) is None) is allowed


def test_the_start_request_field_is_named_in_every_refusal():
    assert parse_webhook_url({"prompt": "x"}, HOOKS) is None
    assert parse_webhook_url({"webhookUrl": None}, HOOKS) is None
    url = "https://hooks.example.com/in?token=t"
    assert parse_webhook_url({"webhookUrl": url}, HOOKS) == url
    cases = [
        ({"webhookUrl": 42}, HOOKS, "invalid_type"),
        ({"webhookUrl": "https://127.0.0.1/"}, HOOKS, "invalid_value"),
        ({"webhookUrl": url}, WebhookSettings(), "unsupported"),  # webhooks off
    ]
    for body, hooks, code in cases:
        with pytest.raises(RequestInvalid) as refused:
            parse_webhook_url(body, hooks)
        assert refused.value.field == "webhookUrl"
        assert refused.value.code == code
        assert "token" not in refused.value.message


def test_the_field_passes_request_validation(settings: AppSettings):
    body = {"prompt": "a red apple", "webhookUrl": "https://hooks.example.com/in"}
    assert parse_job_request(body, settings).prompt == "a red apple"


def test_the_fingerprint_covers_the_webhook_only_where_there_is_one(settings: AppSettings):
    request = parse_job_request({"prompt": "a red apple"}, settings)
    assert fingerprint(request) == fingerprint(request, None)  # ids of earlier jobs stand
    one = fingerprint(request, "https://hooks.example.com/a")
    assert one != fingerprint(request)
    assert one != fingerprint(request, "https://hooks.example.com/b")


def test_settings_from_the_environment():
    hooks = AppSettings.from_env(ENV).webhooks
    assert not hooks.enabled
    env = {
        **ENV,
        "IMAGE_WEBHOOK_SECRET": "a-secret-of-enough-length",
        "IMAGE_WEBHOOK_ALLOW_HTTP": "true",
        "IMAGE_WEBHOOK_ALLOW_LOOPBACK": "true",
        "IMAGE_WEBHOOK_RETRY_WAITS_S": "10,100",
        "IMAGE_WEBHOOK_MAX_ATTEMPTS": "3",
        "IMAGE_TIME_SCALE": "10",
    }
    hooks = AppSettings.from_env(env).webhooks
    assert hooks.enabled
    assert hooks.allow_http
    assert hooks.allow_loopback
    assert hooks.retry_waits_s == (1.0, 10.0)  # scaled with the service's time
    assert hooks.max_attempts == 3
    assert hooks.timeout_s == 10.0  # network seconds: not scaled
    assert "a-secret" not in repr(hooks)


@pytest.mark.parametrize(
    ("extra", "setting"),
    [
        ({"IMAGE_WEBHOOK_SECRET": "short"}, "IMAGE_WEBHOOK_SECRET"),
        (
            {"IMAGE_WEBHOOK_SECRET": SAMPLE_WEBHOOK_SECRET, "WEBSITE_INSTANCE_ID": "x"},
            "IMAGE_WEBHOOK_SECRET",
        ),
        (
            {"IMAGE_WEBHOOK_ALLOW_LOOPBACK": "true", "WEBSITE_INSTANCE_ID": "x"},
            "IMAGE_WEBHOOK_ALLOW_LOOPBACK",
        ),
        (
            {"IMAGE_WEBHOOK_ALLOW_HTTP": "true", "WEBSITE_INSTANCE_ID": "x"},
            "IMAGE_WEBHOOK_ALLOW_HTTP",
        ),
        ({"IMAGE_WEBHOOK_ALLOW_HTTP": "yes"}, "IMAGE_WEBHOOK_ALLOW_HTTP"),
        ({"IMAGE_WEBHOOK_RETRY_WAITS_S": "5,x"}, "IMAGE_WEBHOOK_RETRY_WAITS_S"),
        ({"IMAGE_WEBHOOK_RETRY_WAITS_S": "5,0"}, "IMAGE_WEBHOOK_RETRY_WAITS_S"),
        ({"IMAGE_WEBHOOK_MAX_ATTEMPTS": "0"}, "IMAGE_WEBHOOK_MAX_ATTEMPTS"),
        ({"IMAGE_WEBHOOK_TIMEOUT_S": "inf"}, "IMAGE_WEBHOOK_TIMEOUT_S"),
    ],
)
def test_a_bad_setting_is_named_never_echoed(extra: dict[str, str], setting: str):
    with pytest.raises(SettingsInvalid) as refused:
        WebhookSettings.from_env(extra)
    assert refused.value.setting == setting
    assert SAMPLE_WEBHOOK_SECRET not in str(refused.value)


def test_each_caller_has_its_own_derived_secret():
    alice, bob = caller_secret(SECRET, "digest-alice"), caller_secret(SECRET, "digest-bob")
    assert len(alice) == 32
    assert alice == caller_secret(SECRET, "digest-alice")
    assert alice != bob
    assert alice != caller_secret(b"another-master-secret-0000", "digest-alice")
    assert whsec(alice).startswith("whsec_")


def test_a_signature_verifies_with_the_standardwebhooks_library():
    secret = caller_secret(SECRET, "digest-alice")
    body = json.dumps({"type": "image.saved", "timestamp": "t", "data": {"id": "img-1"}})
    sent_at = datetime.now(UTC)
    headers = signed_headers(secret, "msg_img-1_saved", sent_at, body)
    assert headers["webhook-id"] == "msg_img-1_saved"
    assert headers["webhook-timestamp"] == str(int(sent_at.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    receiver = Webhook(whsec(secret))
    assert receiver.verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        receiver.verify(body.replace("img-1", "img-2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(whsec(caller_secret(SECRET, "digest-bob"))).verify(body, headers)
    # A timestamp in another zone is the same moment.
    local = sent_at.astimezone(timezone(timedelta(hours=5)))
    assert signed_headers(secret, "msg_img-1_saved", local, body) == headers
    # An old signature is refused by receivers (5 minutes): a retry is signed anew.
    stale = signed_headers(secret, "msg_img-1_saved", sent_at - timedelta(minutes=10), body)
    with pytest.raises(WebhookVerificationError, match="too old"):
        receiver.verify(body, stale)


def test_the_retry_schedule_backs_off_caps_and_ends():
    waits = [next_wait_s(attempt, HOOKS) for attempt in range(1, 9)]
    assert waits == [5.0, 30.0, 120.0, 600.0, 3600.0, 3600.0, 3600.0, None]


def test_what_is_tried_again():
    assert retries_after(DeliveryAttempt(1, "t", 10, status_code=500))
    assert retries_after(DeliveryAttempt(1, "t", 10, status_code=401))
    assert retries_after(DeliveryAttempt(1, "t", 10, error="timeout: no answer"))
    assert not retries_after(DeliveryAttempt(1, "t", 10, status_code=204))
    refused = DeliveryAttempt(1, "t", 1, error="refused: the host resolves to a loopback address")
    assert not retries_after(refused)


def test_only_the_origin_of_a_target_is_shown():
    assert target_origin("https://hooks.example.com/T0/B0/secret?token=abc") == (
        "https://hooks.example.com"
    )
    assert target_origin("http://127.0.0.1:8123/hook?t=1") == "http://127.0.0.1:8123"
    assert target_origin("https://[::1]:9/x") == "https://[::1]:9"


TARGET = WebhookTarget("https://hooks.example.com/in?token=t", "https://svc.example.com/api/images")
IMAGE = StoredImage("img-1/image.png", "image/png", 2048, 1024, 1024)


def test_the_saved_event_says_what_ended_and_how_never_what_was_asked():
    outcome = Outcome(JobState.SAVED, attempt=1, images=(IMAGE,), cost_usd=0.01)
    event = job_event("img-1", outcome, TARGET, NOW)
    assert event.type is EventType.SAVED
    assert event.webhook_id == "msg_img-1_saved"
    assert event.timestamp == "2026-05-07T13:46:12.345Z"
    body = json.loads(event.body())
    assert set(body) == {"type", "timestamp", "data"}
    data = body["data"]
    assert data["id"] == "img-1"
    assert data["state"] == "saved"
    assert data["statusUrl"] == "https://svc.example.com/api/images/img-1"
    assert data["image"] == {
        "contentType": "image/png",
        "bytes": 2048,
        "width": 1024,
        "height": 1024,
    }
    assert data["failure"] is None
    assert data["error"] is None
    assert "blob" not in event.body()
    assert "url" not in json.dumps(data["images"]).lower()
    assert "token" not in event.body()


def test_the_failed_event_carries_the_error_without_its_text():
    error = Failure(
        kind=FailureKind.REJECTED,
        layer=Layer.ROUTE,
        message="rejected: 'a red apple' is not allowed",
        sent=True,
        http_status=400,
        code="moderation_blocked",
    )
    outcome = Outcome(JobState.FAILED, attempt=1, failure="returned_error", error=error)
    data = json.loads(job_event("img-1", outcome, TARGET, NOW).body())["data"]
    assert data["failure"] == "returned_error"
    assert data["error"] == {
        "layer": "route",
        "kind": "rejected",
        "httpStatus": 400,
        "type": None,
        "code": "moderation_blocked",
    }
    assert "apple" not in json.dumps(data)
    cancelled = job_event("img-2", Outcome(JobState.CANCELLED, attempt=1), TARGET, NOW)
    assert cancelled.type is EventType.CANCELLED
    assert cancelled.webhook_id == "msg_img-2_cancelled"


def test_delivery_records_round_trip_and_say_where_the_delivery_stands():
    event = job_event("img-1", Outcome(JobState.SAVED, attempt=1), TARGET, NOW)
    delivery = WebhookDelivery("img-1", "2026-05-07T13:46:00.000Z", "digest", TARGET, event)
    failed = DeliveryAttempt(1, "t1", 12, status_code=500)
    ok = DeliveryAttempt(2, "t2", 8, status_code=200)
    again = WebhookDelivery.from_json(json.loads(json.dumps(delivery.to_json())))
    assert again == delivery
    retrying = delivery_record(delivery, (failed,), "t-next")
    assert retrying.state is DeliveryState.DELIVERING
    assert retrying.next_attempt_at == "t-next"
    assert delivery_record(delivery, (failed, ok), None).state is DeliveryState.DELIVERED
    assert delivery_record(delivery, (failed,), None).state is DeliveryState.FAILED
    refused = DeliveryAttempt(1, "t", 1, error="refused: the host resolves to a loopback address")
    assert delivery_record(delivery, (refused,), None).state is DeliveryState.REFUSED
    log = WebhookLog("img-1", "created", "https://hooks.example.com", (retrying,))
    assert WebhookLog.from_json(json.loads(json.dumps(log.to_json()))) == log
    assert retrying.answer()["attempts"][0] == {
        "attempt": 1,
        "at": "t1",
        "durationMs": 12,
        "statusCode": 500,
        "error": None,
    }
    with pytest.raises(RecordUnreadable, match="newer"):
        WebhookLog.from_json({**log.to_json(), "v": 2})
    with pytest.raises(RecordUnreadable):
        WebhookDelivery.from_json({"v": 1, "job_id": "img-1"})


@pytest.mark.parametrize(
    ("field", "value"),
    [("status_code", "five hundred"), ("error", 500), ("next_attempt_at", ["t"])],
)
def test_a_webhook_log_with_an_optional_field_of_the_wrong_type_is_unreadable(
    field: str, value: object
):
    """Read with the same optional readers as the route's records (rules.records): a wrong
    type breaks the record rather than passing through into a status answer."""
    event = job_event("img-1", Outcome(JobState.SAVED, attempt=1), TARGET, NOW)
    delivery = WebhookDelivery("img-1", "created", "digest", TARGET, event)
    record = delivery_record(delivery, (DeliveryAttempt(1, "t1", 12, status_code=500),), "t2")
    data = WebhookLog("img-1", "created", "https://hooks.example.com", (record,)).to_json()
    if field == "next_attempt_at":
        data["deliveries"][0][field] = value
    else:
        data["deliveries"][0]["attempts"][0][field] = value
    with pytest.raises(RecordUnreadable, match="webhooks record: malformed"):
        WebhookLog.from_json(data)
    target = {"url": "https://hooks.example.com/x", "status_base": 7}
    with pytest.raises(RecordUnreadable, match="webhook target"):
        WebhookTarget.from_json(target)
