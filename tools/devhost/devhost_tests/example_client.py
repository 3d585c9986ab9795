"""A small client for the example DFApp on a DevHost, shared by the example-app tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from devhost.server import DevHost
from loopserver.testing import wait_until

EXAMPLE = Path(__file__).parent / "example_app"
TERMINAL = {"Completed", "Failed", "Terminated", "Canceled"}


class App:
    """The example app's HTTP starters, called with the default function key."""

    def __init__(self, host: DevHost) -> None:
        self.host = host
        self.http = httpx.Client(
            base_url=host.url, headers={"x-functions-key": host.function_key}, timeout=30
        )

    def start(
        self, name: str, payload: Any = None, instance_id: str | None = None
    ) -> dict[str, Any]:
        path = f"/api/orchestrators/{name}" + (f"/{instance_id}" if instance_id else "")
        r = self.http.post(path, json=payload) if payload is not None else self.http.post(path)
        assert r.status_code == 202, r.text
        body: dict[str, Any] = r.json()
        return body

    def status(self, instance_id: str, history: bool = False) -> dict[str, Any]:
        r = self.http.get(f"/api/status/{instance_id}", params={"history": "1"} if history else {})
        body: dict[str, Any] = r.json()
        return body

    def wait(self, instance_id: str, until: set[str] = TERMINAL, **kw: Any) -> dict[str, Any]:
        return wait_until(
            lambda: (s := self.status(instance_id)).get("runtimeStatus") in until and s,
            what=f"{instance_id} to reach {sorted(until)}",
            **kw,
        )

    def calls(self, key: str) -> int:
        return int(self.http.get(f"/api/calls/{key}").json()["calls"])
