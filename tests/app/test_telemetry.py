"""telemetry.py without a network: what its processors take out, what its hooks add.

The exporter's own path (a real job, a loopback ingestion endpoint) is tests/e2e/test_telemetry.py.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

import telemetry
from rules.platform_settings import TelemetrySettings
from rules.redaction import KEY_MARK

ENV = {
    "IMAGE_ROUTES": "azure,openai",
    "IMAGE_ROUTE_AZURE_BASE_URL": "https://res.openai.azure.com",
    "IMAGE_ROUTE_AZURE_DEPLOYMENT": "gpt-image-2",
    "IMAGE_ROUTE_AZURE_KEY": "azure-route-key-0123456789abcdef",
    "IMAGE_ROUTE_OPENAI_BASE_URL": "https://api.openai.com/v1",
    "IMAGE_ROUTE_OPENAI_KEY_SETTING": "OPENAI_KEY_ELSEWHERE",
    "OPENAI_KEY_ELSEWHERE": "openai-route-key-0123456789abcdef",
    "IMAGES_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net",
    "IMAGE_JOB_ID_SECRET": "job-id-secret-0123456789abcdef",
}
SECRETS = (
    ENV["IMAGE_ROUTE_AZURE_KEY"],
    ENV["OPENAI_KEY_ELSEWHERE"],
    ENV["IMAGE_JOB_ID_SECRET"],
)


def scrubber(env: dict[str, str] = ENV) -> telemetry.Scrubber:
    names = telemetry.secret_settings(env)
    return telemetry.Scrubber(lambda: telemetry.secret_values(env, names))


def test_nothing_is_configured_without_a_connection_string():
    assert TelemetrySettings.from_env({}).enabled is False
    assert (
        TelemetrySettings.from_env({"APPLICATIONINSIGHTS_CONNECTION_STRING": " "}).enabled is False
    )
    assert telemetry.configure({}) is False
    assert "InstrumentationKey" not in repr(
        TelemetrySettings.from_env(
            {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"}
        )
    )


def test_the_secrets_looked_for_are_every_route_key_and_the_job_id_secret():
    names = telemetry.secret_settings(ENV)
    assert {"IMAGE_ROUTE_AZURE_KEY", "OPENAI_KEY_ELSEWHERE", "IMAGE_JOB_ID_SECRET"} <= set(names)
    assert sorted(telemetry.secret_values(ENV, names)) == sorted(SECRETS)
    # A rotated key is looked for as soon as the setting holds it.
    rotated = {**ENV, "IMAGE_ROUTE_AZURE_KEY": "rotated-route-key-0123456789"}
    assert "rotated-route-key-0123456789" in telemetry.secret_values(rotated, names)


@pytest.mark.parametrize("secret", SECRETS)
def test_a_span_loses_every_secret_before_export(secret: str):
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(telemetry.ScrubbingSpanProcessor(scrubber()))
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /images/generations") as span:
        span.set_attribute("url.full", f"https://gw.example/images?code={secret}")
        span.set_attribute("http.request.header.authorization", [f"Bearer {secret}"])
        span.set_attribute("plain", "nothing to hide")
        span.add_event("exception", {"exception.message": f"refused key {secret}"})
        span.set_status(Status(StatusCode.ERROR, f"sk-proj-{secret}"))
    (done,) = exported.get_finished_spans()
    text = repr(dict(done.attributes or {})) + repr(done.events[0].attributes)
    text += done.status.description or ""
    assert secret not in text
    # The secret is marked, or the link's query string is cut whole (rules.redaction).
    url = str(done.attributes["url.full"])  # type: ignore[index]
    assert KEY_MARK in url or "?" not in url
    assert done.attributes["plain"] == "nothing to hide"  # type: ignore[index]
    assert done.status.status_code is StatusCode.ERROR


def test_a_log_record_loses_every_secret_and_anything_key_like():
    exported = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider()
    provider.add_log_record_processor(telemetry.ScrubbingLogProcessor(scrubber()))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exported))
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    log = logging.getLogger("imagejobs.test-telemetry")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = LoggingHandler(logger_provider=provider)
    log.addHandler(handler)
    try:
        log.info(
            "route said %s and sk-abcdefghijklmnop",
            SECRETS[0],
            extra={"imagejob_note": f"Bearer {SECRETS[1]}", "imagejob_cost_usd": 0.04},
        )
    finally:
        log.removeHandler(handler)
    (record,) = exported.get_finished_logs()
    body = str(record.log_record.body)
    attributes = dict(record.log_record.attributes or {})
    assert SECRETS[0] not in body
    assert "sk-abcdefghijklmnop" not in body
    assert SECRETS[1] not in repr(attributes)
    assert attributes["imagejob_cost_usd"] == 0.04


def test_a_long_job_event_is_kept_whole():
    text = "image_job_finished " + "x" * 6000
    assert scrubber().clean(text) == text


class FakeSpan:
    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}

    def is_recording(self) -> bool:
        return True

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value


def test_a_route_call_is_named_by_its_route_and_carries_the_route_request_id():
    hooks = telemetry.RouteHooks(telemetry.route_names(ENV))
    span = FakeSpan()
    request = SimpleNamespace(
        url=httpx.URL(
            "https://res.openai.azure.com/openai/deployments/gpt-image-2/images/generations"
        )
    )
    hooks.request(span, request)
    hooks.response(
        span, request, SimpleNamespace(headers=httpx.Headers({"apim-request-id": "r-1"}))
    )
    assert span.attributes == {
        telemetry.ROUTE_ATTRIBUTE: "azure",
        telemetry.REQUEST_ID_ATTRIBUTE: "r-1",
    }
    other = FakeSpan()
    hooks.request(other, SimpleNamespace(url=httpx.URL("https://elsewhere.example/x")))
    hooks.response(other, request, SimpleNamespace(headers=httpx.Headers({})))
    assert other.attributes == {}
