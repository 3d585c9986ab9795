"""The stack every benchmark measures on: Azurite, the simulator and devhost on this app
(localrun.stack.LocalStack), on free ports, its state in a folder of the benchmark's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from localrun.stack import LocalStack

# The repository's root: the app devhost serves.
ROOT = Path(__file__).resolve().parents[1]


def free_port_stack(state: Path, *, time_scale: float, **options: Any) -> LocalStack:
    """A stack on free ports with its state under ``state``, every wait divided by
    ``time_scale``; ``options`` are LocalStack's own (a simulator config, extra app settings,
    Azurite's folder, no devhost)."""
    return LocalStack(
        ROOT,
        state_dir=state,
        azurite_port=0,
        simulator_port=0,
        devhost_port=0,
        time_scale=time_scale,
        **options,
    )
