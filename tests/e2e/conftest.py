"""The whole product end to end: devhost running function_app.py, the simulator, Azurite.

One stack per test module (child processes on free ports, scaled time). A missing Azurite is a
failure under CI=true (loopserver.testing.missing_service), a skip with instructions elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localrun.azurite import azurite_bin
from localrun.stack import LocalStack
from loopserver.testing import missing_service
from rules.settings import StorageSettings

from . import documented

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "a red apple on a white background, studio light"


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """One stack per module; a module sets ``STACK = {...}`` for LocalStack options."""
    if azurite_bin(ROOT) is None:
        missing_service("Azurite", "run `make setup` (npm ci installs azurite 3.35.0)")
    options: dict[str, Any] = {"time_scale": 25.0, **getattr(request.module, "STACK", {})}
    state = tmp_path_factory.mktemp("stack")
    if options.pop("persistent_azurite", False):
        options["azurite_location"] = state / "azurite"
    local = LocalStack(
        ROOT, state_dir=state, azurite_port=0, simulator_port=0, devhost_port=0, **options
    )
    with local:
        yield local


class Api:
    """The service's HTTP API as a caller sees it, plus the simulator's admin API."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.http = httpx.Client(
            base_url=stack.devhost_url,
            headers={"x-functions-key": stack.function_key},
            timeout=30.0,
            # Every answer of a documented operation is held against the OpenAPI document.
            event_hooks={"response": [documented.check]},
        )
        self.sim = httpx.Client(base_url=stack.simulator_url, timeout=30.0)

    def start(self, *, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
        return self.http.post("/api/images", json=body, headers=headers)

    def status(self, job_id: str, *, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.get(f"/api/images/{job_id}", headers=headers)

    def cancel(self, job_id: str, *, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post(f"/api/images/{job_id}/cancel", headers=headers)

    def fault(self, **spec: Any) -> None:
        response = self.sim.post("/_sim/faults", json=spec)
        assert response.status_code == 201, response.text

    def ledger_mark(self) -> int:
        entries = self.sim.get("/_sim/ledger").json()
        return max((e["seq"] for e in entries), default=0)

    def ledger(self, since: int) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.sim.get("/_sim/ledger").json()
        return [e for e in entries if e["seq"] > since]

    def metadata(self, final: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(final["metadataUrl"]).json()
        return data

    def blobs(self, job_id: str) -> list[str]:
        """Every blob in the job's folder (the app itself never lists: a test's question)."""
        from azure.storage.blob import ContainerClient

        container = ContainerClient.from_connection_string(
            self.stack.storage_connection_string, StorageSettings().container
        )
        with container:
            return sorted(container.list_blob_names(name_starts_with=f"{job_id}/"))

    def blob_text(self, name: str) -> str:
        """One blob of the images container as text (a test's look at what was stored)."""
        from azure.storage.blob import ContainerClient

        container = ContainerClient.from_connection_string(
            self.stack.storage_connection_string, StorageSettings().container
        )
        with container:
            data: bytes = container.download_blob(name).readall()
        return data.decode(errors="replace")

    def poll(
        self, job_id: str, *, timeout_s: float = 120.0, headers: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every status answer until the job ends (fast polling: tests want to see each state)."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            response = self.status(job_id, headers=headers)
            assert response.status_code in (200, 202), response.text
            seen.append(response.json())
            if response.status_code == 200:
                return seen
            assert response.headers["retry-after"]
            time.sleep(0.03)
        raise AssertionError(f"job {job_id} did not end in {timeout_s}s: {seen[-1]}")


@pytest.fixture(scope="module")
def api(stack: LocalStack) -> Api:
    return Api(stack)
