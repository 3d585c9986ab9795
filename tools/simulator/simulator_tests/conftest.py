"""Fixtures for the simulator's server tests: simulators started in-process on free ports.

``make_sim(settings)`` builds a ``SimulatorConfig`` from the same JSON shape as a config file
(so tests exercise the loader too) and starts a Simulator that is stopped after the test.
Most tests run at a high time scale: a 22 s generation takes 22 ms.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from PIL import Image

from simulator.config import config_from_dict
from simulator.server import Simulator

FAST = 1000.0

MakeSim = Callable[..., Simulator]


@pytest.fixture
def make_sim() -> Iterator[MakeSim]:
    started: list[Simulator] = []

    def make(settings: dict[str, Any] | None = None, *, time_scale: float = FAST) -> Simulator:
        config = config_from_dict(settings or {})
        sim = Simulator(config, time_scale=time_scale).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim: MakeSim) -> Simulator:
    """Defaults at a high time scale."""
    return make_sim()


def png_bytes(
    size: tuple[int, int] = (64, 64), colour: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def drain(stream: Iterable[Any], seen: list[str]) -> None:
    """Read a stream to its end (or its error), noting each event's type on the way."""
    for event in stream:
        seen.append(event.type)
