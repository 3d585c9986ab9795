"""Helpers for localrun's own tests: processes found by their command line, Azurite or a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localrun.azurite import azurite_bin
from loopserver.testing import missing_service

ROOT = Path(__file__).resolve().parents[3]


def pids_with(*words: str) -> list[int]:
    """Processes whose command line holds every one of ``words`` as an argument (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = {a.decode(errors="replace") for a in argv}
        if all(word in args for word in words):
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def needs_azurite() -> None:
    if azurite_bin(ROOT) is None:
        missing_service("Azurite", "run `make setup` (npm ci installs azurite 3.35.0)")


linux_only = pytest.mark.skipif(
    not Path("/proc/self/cmdline").exists(), reason="reads processes from /proc (Linux)"
)
