"""What the app sends to Application Insights for a real job, caught on loopback.

The stack runs with ``APPLICATIONINSIGHTS_CONNECTION_STRING`` naming a loopback ingestion
endpoint (``IngestionEndpoint=http://127.0.0.1:PORT/``), so telemetry.py configures the Azure
Monitor exporter exactly as in Azure, and every envelope it posts lands here. A job runs end to
end; the test finds its ``image_job_finished`` event with the job's fields as custom dimensions,
the route call as a dependency carrying the route's request id, and no prompt, no route key and
no job id secret anywhere in what was sent. The exporter's calls home (statsbeat, its control
plane) are switched off by their own settings: nothing leaves the machine.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from activities.finish import EVENT
from localrun.stack import LocalStack
from loopserver import BackgroundServer
from rules.settings import SAMPLE_JOB_ID_SECRET
from telemetry import REQUEST_ID_ATTRIBUTE, ROUTE_ATTRIBUTE

from .conftest import PROMPT, Api

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

ROUTE_KEY = "telemetry-test-route-key-0123456789"
IKEY = "00000000-0000-4000-8000-000000000001"


class Ingestion:
    """A loopback Application Insights ingestion endpoint that keeps every envelope."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self._lock = threading.Lock()
        app = web.Application()
        # The exporter joins the endpoint and ``/v2.1/track`` with slashes of its own.
        app.router.add_route("*", "/{tail:.*}", self.track)
        self.server = BackgroundServer(app)

    async def track(self, request: web.Request) -> web.Response:
        if request.method != "POST" or not request.path.endswith("/v2.1/track"):
            return web.Response(status=404)
        body = await request.read()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        text = body.decode()
        items = (
            json.loads(text)
            if text.lstrip().startswith("[")
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
        with self._lock:
            self.raw.append(body)
            self.envelopes.extend(items)
        return web.json_response(
            {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
        )

    def of_type(self, base_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.envelopes if e.get("data", {}).get("baseType") == base_type]

    def everything(self) -> str:
        with self._lock:
            return "\n".join(raw.decode(errors="replace") for raw in self.raw)


@pytest.fixture(scope="module")
def ingestion() -> Iterator[Ingestion]:
    sink = Ingestion()
    with sink.server:
        yield sink


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    ingestion: Ingestion,
) -> Iterator[LocalStack]:
    from localrun.azurite import azurite_bin
    from loopserver.testing import missing_service

    root = Path(__file__).resolve().parents[2]
    if azurite_bin(root) is None:
        missing_service("Azurite", "run `make setup` (npm ci installs azurite 3.35.0)")
    url = ingestion.server.url
    extra_env = {
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            f"InstrumentationKey={IKEY};IngestionEndpoint={url}/;LiveEndpoint={url}/"
        ),
        # The exporter's own reports to Microsoft and its settings service: off, so that
        # nothing is sent anywhere but the loopback endpoint.
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        # A key the route must never see in telemetry (the simulator accepts any key).
        "IMAGE_ROUTE_OPENAI_KEY": ROUTE_KEY,
    }
    local = LocalStack(
        root,
        state_dir=tmp_path_factory.mktemp("stack"),
        azurite_port=0,
        simulator_port=0,
        devhost_port=0,
        time_scale=25.0,
        extra_env=extra_env,
    )
    with local:
        yield local


@pytest.fixture(scope="module")
def api(stack: LocalStack) -> Api:
    return Api(stack)


def wait_for(what: str, found: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"no {what} arrived in {timeout_s}s")


def test_a_job_sends_its_event_and_its_route_call_and_nothing_secret(
    api: Api, ingestion: Ingestion
):
    response = api.start(prompt=PROMPT, size="1024x1024", quality="low", route="openai")
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    final = api.poll(job_id)[-1]
    assert final["state"] == "saved", final
    metadata = api.metadata(final)

    def job_events() -> list[dict[str, Any]]:
        return [
            e
            for e in ingestion.of_type("MessageData")
            if e["data"]["baseData"].get("properties", {}).get("imagejob_event") == EVENT
            and e["data"]["baseData"]["properties"].get("imagejob_id") == job_id
        ]

    events = wait_for("job event", job_events)
    assert len(events) == 1
    data = events[0]["data"]["baseData"]
    assert data["message"].startswith(EVENT)
    dimensions = data["properties"]
    # Every field of the event that has a value arrives as a custom dimension, as a string
    # (Application Insights keeps custom dimensions as text; None is left out).
    from activities.finish import log_fields

    expected = {k: v for k, v in log_fields(metadata).items() if v is not None}
    for name, value in expected.items():
        assert f"imagejob_{name}" in dimensions, name
        assert dimensions[f"imagejob_{name}"] == str(value), name
    assert dimensions["imagejob_state"] == "saved"
    assert dimensions["imagejob_route"] == "openai"
    request_id = dimensions["imagejob_request_id"]
    assert request_id

    def route_calls() -> list[dict[str, Any]]:
        return [
            e
            for e in ingestion.of_type("RemoteDependencyData")
            if e["data"]["baseData"].get("properties", {}).get(REQUEST_ID_ATTRIBUTE) == request_id
        ]

    calls = wait_for("route call dependency", route_calls)
    call = calls[0]["data"]["baseData"]
    assert call["type"] == "HTTP"
    assert call["resultCode"] == "200"
    assert call["properties"][ROUTE_ATTRIBUTE] == "openai"
    assert "/images/generations" in call["data"]
    # Kept whole: the app's traces are not sampled.
    assert calls[0].get("sampleRate", 100.0) == 100.0

    sent = ingestion.everything()
    assert PROMPT not in sent
    assert PROMPT.split(",")[0] not in sent
    assert ROUTE_KEY not in sent
    assert SAMPLE_JOB_ID_SECRET not in sent
