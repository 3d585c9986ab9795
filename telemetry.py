"""The app's own telemetry to Application Insights through OpenTelemetry (the Azure Monitor distro).

    telemetry.configure()   # function_app.py, at import: nothing happens unless
                            # APPLICATIONINSIGHTS_CONNECTION_STRING is set

The Functions host already reports every invocation (requests, its own logs, the Durable
instances). What only the app knows goes out from here:

- the ``imagejobs`` loggers' records, the one ``image_job_finished`` event per job among them
  (activities/finish.py): its ``imagejob_*`` fields arrive as ``customDimensions``;
- every call to a route (httpx) as a dependency, with the route's name and the route's request
  id (``imagejob_route``, ``imagejob_request_id``), so that a 429 or a slow first byte is found
  per route and joined to its job's event.

Nothing of it is sampled away: the app's traces are kept at ratio 1.0 (the distro's default is
a rate limit of 5 traces a second), and log records are never dropped with a sampled-out trace
(``enable_trace_based_sampling_for_logs`` off): the job event is a log record. Before anything
is exported, a span processor and a log record processor take out every secret the app holds
(route keys, the job id secret, a storage connection string) and anything key-like
(rules.redaction.scrub_keys). The prompt never reaches a logger or a span: the job event is
built from the job's metadata, which never holds it, and no request body is recorded.

The Python worker's own switches (PYTHON_ENABLE_OPENTELEMETRY,
PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY) stay off: with them the worker would configure the
distro itself, a second export without these processors (rules.platform_settings.NEVER_SET).
Why the distro and not the host's OpenTelemetry mode: docs/monitoring.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.trace import Status

from rules.errors import SettingsInvalid
from rules.platform_settings import TelemetrySettings
from rules.redaction import KEY_MARK, scrub_keys
from rules.settings import AppSettings

# The loggers whose records are exported (activities, the HTTP edge, batches: all ``imagejobs.*``).
LOGGER = "imagejobs"
# Attributes the app adds to each route call's dependency (customDimensions in Application
# Insights), beside the job event's ``imagejob_*`` fields.
ROUTE_ATTRIBUTE = "imagejob_route"
REQUEST_ID_ATTRIBUTE = "imagejob_request_id"
DEPENDENCY_ATTRIBUTES = (ROUTE_ATTRIBUTE, REQUEST_ID_ATTRIBUTE)
# Every trace the app starts is kept.
SAMPLING_RATIO = 1.0
# The distro's instrumentations, all off: httpx is instrumented here, with hooks; the Azure SDK's
# spans (every Blob call, held status polls re-read every 0.1 s) would cost more than they tell.
DISTRO_INSTRUMENTATIONS = (
    "azure_sdk",
    "django",
    "fastapi",
    "flask",
    "httpx",
    "httpx2",
    "psycopg2",
    "requests",
    "urllib",
    "urllib3",
)
# A secret shorter than this is not looked for (it would match by chance).
_SHORTEST_SECRET = 8

_configured = False


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Send the app's telemetry to Application Insights when the connection string is set;
    True when it did. Once per process (a second call does nothing)."""
    global _configured
    environ = os.environ if env is None else env
    settings = TelemetrySettings.from_env(environ)
    if _configured or not settings.enabled:
        return _configured
    # Imported here: an app without telemetry never loads the exporter and the instrumentation.
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    names = secret_settings(environ)
    scrubber = Scrubber(lambda: secret_values(environ, names))
    configure_azure_monitor(
        connection_string=settings.connection_string,
        logger_name=LOGGER,
        sampling_ratio=SAMPLING_RATIO,
        enable_trace_based_sampling_for_logs=False,
        # The host reports its own live metrics and performance counters.
        enable_live_metrics=False,
        enable_performance_counters=False,
        instrumentation_options={name: {"enabled": False} for name in DISTRO_INSTRUMENTATIONS},
        span_processors=[ScrubbingSpanProcessor(scrubber)],
        log_record_processors=[ScrubbingLogProcessor(scrubber)],
    )
    hooks = RouteHooks(route_names(environ))
    HTTPXClientInstrumentor().instrument(
        request_hook=hooks.request,
        response_hook=hooks.response,
        async_request_hook=hooks.async_request,
        async_response_hook=hooks.async_response,
    )
    # The job event is logged at INFO; the worker's root logger is at INFO too, a local host's
    # may not be.
    logging.getLogger(LOGGER).setLevel(logging.INFO)
    # The exporter logs each transmission at INFO: noise in the host's log. Failures still show.
    logging.getLogger("azure.monitor.opentelemetry").setLevel(logging.WARNING)
    _configured = True
    return True


def secret_settings(env: Mapping[str, str]) -> tuple[str, ...]:
    """The names of the settings that hold a secret: each route's key setting, the job id
    secret, a storage connection string (its account key)."""
    names = ["IMAGE_JOB_ID_SECRET", "IMAGES_STORAGE_CONNECTION_STRING"]
    try:
        routes = list(AppSettings.from_env(env).routes.values())
    except SettingsInvalid:
        routes = []  # the app does not start on such settings; nothing of a route to look for
    names += [route.key_setting for route in routes if route.key_setting]
    return tuple(names)


def secret_values(env: Mapping[str, str], names: Iterable[str]) -> list[str]:
    """The secrets' values now (a rotated Key Vault secret is looked for as soon as the host
    has it), without the ones too short to look for."""
    return [value for name in names if len(value := env.get(name, "")) >= _SHORTEST_SECRET]


def route_names(env: Mapping[str, str]) -> Callable[[str], str | None]:
    """The route a URL belongs to: the route whose base URL is the longest prefix of it."""
    try:
        bases = sorted(
            ((route.base_url, name) for name, route in AppSettings.from_env(env).routes.items()),
            key=lambda pair: -len(pair[0]),
        )
    except SettingsInvalid:
        bases = []

    def route_of(url: str) -> str | None:
        return next((name for base, name in bases if url.startswith(base)), None)

    return route_of


class Scrubber:
    """Takes the app's secrets and anything key-like out of text before it is exported."""

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        self._secrets = secrets

    def clean(self, text: str) -> str:
        for secret in self._secrets():
            if secret in text:
                text = text.replace(secret, KEY_MARK)
        return scrub_keys(text)

    def clean_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.clean(value)
        if isinstance(value, list | tuple):
            return type(value)(self.clean_value(item) for item in value)
        return value

    def clean_attributes(self, attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The attributes with every string cleaned; None when nothing changed."""
        if not attributes:
            return None
        cleaned = {key: self.clean_value(value) for key, value in attributes.items()}
        return cleaned if cleaned != dict(attributes) else None


class ScrubbingSpanProcessor(SpanProcessor):
    """Cleans an ended span's attributes, its events' attributes and its status text before the
    exporter's processor (registered after this one) sees it.

    An ended span is read-only through the SDK's API, so the cleaned attributes replace the
    span's own mapping (``_attributes``, ``_events``, ``_status``); the exporting processor gets
    the same object next."""

    def __init__(self, scrubber: Scrubber) -> None:
        self._scrubber = scrubber

    def on_end(self, span: ReadableSpan) -> None:
        cleaned = self._scrubber.clean_attributes(span.attributes)
        if cleaned is not None:
            span._attributes = BoundedAttributes(attributes=cleaned, immutable=True)
        events = []
        changed = False
        for event in span.events:
            event_attributes = self._scrubber.clean_attributes(event.attributes)
            if event_attributes is not None:
                changed = True
                event = Event(event.name, event_attributes, event.timestamp)
            events.append(event)
        if changed:
            span._events = tuple(events)
        description = span.status.description
        if description and self._scrubber.clean(description) != description:
            span._status = Status(span.status.status_code, self._scrubber.clean(description))


class ScrubbingLogProcessor(LogRecordProcessor):
    """Cleans a log record's body and attributes before the exporter's processor sees it."""

    def __init__(self, scrubber: Scrubber) -> None:
        self._scrubber = scrubber

    def on_emit(self, log_record: Any) -> None:
        record = log_record.log_record
        if isinstance(record.body, str):
            record.body = self._scrubber.clean(record.body)
        cleaned = self._scrubber.clean_attributes(record.attributes)
        if cleaned is not None:
            for key, value in cleaned.items():
                record.attributes[key] = value

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class RouteHooks:
    """The httpx instrumentation's hooks: each route call's span gets the route's name (from its
    URL) and, once the headers are in, the route's request id."""

    def __init__(self, route_of: Callable[[str], str | None]) -> None:
        self._route_of = route_of

    def request(self, span: Any, request: Any) -> None:
        route = self._route_of(str(request.url))
        if route is not None and span.is_recording():
            span.set_attribute(ROUTE_ATTRIBUTE, route)

    def response(self, span: Any, request: Any, response: Any) -> None:
        from activities.upstream_errors import request_id

        found = request_id(response.headers)
        if found and span.is_recording():
            span.set_attribute(REQUEST_ID_ATTRIBUTE, found)

    async def async_request(self, span: Any, request: Any) -> None:
        self.request(span, request)

    async def async_response(self, span: Any, request: Any, response: Any) -> None:
        self.response(span, request, response)
