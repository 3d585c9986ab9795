"""The simulator as an object a test or a tool starts in-process, on a free loopback port.

with Simulator(time_scale=100) as sim:
    client = OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)
    client.images.generate(model="gpt-image-2", prompt="a red apple", size="1024x1024")
    assert billable_count(sim.ledger()) == 1

AzureOpenAI(azure_endpoint=sim.azure_endpoint, api_version="2025-04-01-preview", api_key="k")
OpenAI(base_url=sim.azure_v1_base_url, api_key="k")     # Azure's v1 path, model = deployment
"""

from __future__ import annotations

import dataclasses
from types import TracebackType
from typing import Any

from loopserver import BackgroundServer
from simulator.app import build_app
from simulator.config import SimulatorConfig
from simulator.faults import FaultQueue
from simulator.ledger import LedgerEntry
from simulator.state import SimState

__all__ = ["Simulator"]


class Simulator:
    """One simulator on ``host:port`` (port 0: a free one) running in a background thread."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        time_scale: float | None = None,
    ) -> None:
        config = config or SimulatorConfig()
        if time_scale is not None:
            config = dataclasses.replace(config, time_scale=time_scale)
        self.config = config
        self.state = SimState(config)
        self._server = BackgroundServer(build_app(self.state), host=host, port=port)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Simulator:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- where it answers ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return self._server.url

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``OpenAI(...)``."""
        return f"{self.url}/v1"

    @property
    def azure_endpoint(self) -> str:
        """``azure_endpoint`` for ``AzureOpenAI(...)`` (the deployment path)."""
        return self.url

    @property
    def azure_v1_base_url(self) -> str:
        """``base_url`` for ``OpenAI(...)`` against Azure's v1 path."""
        return f"{self.url}/openai/v1"

    # --- what it did -----------------------------------------------------------------------------

    def ledger(self, since: int | None = None) -> list[LedgerEntry]:
        """Copies of the ledger's entries, oldest first."""
        return self.state.ledger.entries(since)

    def batches(self) -> list[dict[str, Any]]:
        """Every batch as its ``Batch`` JSON object, newest first (``GET /_sim/batches``)."""
        return self.state.batches.list_json()

    @property
    def faults(self) -> FaultQueue:
        """The fault queue: ``sim.faults.add(parse_fault({...}))``."""
        return self.state.faults

    def reset(self) -> None:
        """Clear the ledger, queued faults, rate-limit windows, files and batches."""
        self.state.reset()
