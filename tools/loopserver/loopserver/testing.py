"""Helpers every test area shares: polling instead of sleeping, free ports, and the CI rule.

The CI rule: a test that needs a local service (Azurite, a subprocess) fails when that service is
missing and CI=true, and only skips on a developer's machine where it says how to get the service.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from loopserver import free_port

__all__ = ["free_port", "in_ci", "missing_service", "wait_until"]

T = TypeVar("T")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_service(what: str, how_to_get_it: str) -> None:
    """Fail under CI, skip elsewhere: a missing service is never a silent pass in CI."""
    message = f"{what} is not available: {how_to_get_it}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def wait_until(
    condition: Callable[[], T | bool | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``condition`` until it returns something truthy and return that; else fail."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last  # type: ignore[return-value]
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")
