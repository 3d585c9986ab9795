"""The whole product end to end: devhost running function_app.py, the simulator, Azurite.

One stack per test module (child processes on free ports, scaled time). A missing Azurite is a
failure under CI=true (tests.support.missing_service), a skip with instructions elsewhere.
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
from tests.support import missing_service

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "a red apple on a white background, studio light"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    if azurite_bin(ROOT) is None:
        missing_service("Azurite", "run `make setup` (npm ci installs azurite 3.35.0)")
    local = LocalStack(
        ROOT,
        state_dir=tmp_path_factory.mktemp("stack"),
        azurite_port=0,
        simulator_port=0,
        devhost_port=0,
        time_scale=25.0,
    )
    with local:
        yield local


class Api:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.http = httpx.Client(
            base_url=stack.devhost_url,
            headers={"x-functions-key": stack.function_key},
            timeout=30.0,
        )

    def start(self, **body: Any) -> httpx.Response:
        return self.http.post("/api/images", json=body)

    def status(self, job_id: str) -> httpx.Response:
        return self.http.get(f"/api/images/{job_id}")

    def poll(self, job_id: str, *, timeout_s: float = 120.0) -> list[dict[str, Any]]:
        """Every status answer until the job ends (fast polling: tests want to see each state)."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            response = self.status(job_id)
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
