"""kill -9 of a devhost subprocess mid-orchestration, then a restart on the same state directory.

The orchestration `steps` runs activity one (completes) and activity two (blocks until a gate
file exists). The host is killed while two runs and after one finished; the restarted host must
finish the orchestration without running one again, and run two again (at-least-once).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devhost.keys import load_or_create_keys
from devhost_tests.example_client import EXAMPLE
from loopserver import free_port, wait_for_port
from loopserver.testing import wait_until

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.subprocess


def start_devhost(state: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "devhost", "--port", str(port), "--state", str(state)],
            cwd=EXAMPLE,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)


def test_kill_9_mid_orchestration_then_restart(tmp_path, processes):
    state = tmp_path / "state"
    steps_log = tmp_path / "steps.log"
    gate = tmp_path / "gate"
    host_log = tmp_path / "devhost.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    keys, _ = load_or_create_keys(state)
    key = {"x-functions-key": keys.default_function_key}

    processes.append(start_devhost(state, port, host_log))
    wait_for_port(port, timeout=60, alive=lambda: processes[-1].poll() is None)
    r = httpx.post(
        f"{url}/api/orchestrators/steps/kill-me",
        json={"log": str(steps_log), "gate": str(gate)},
        headers=key,
    )
    assert r.status_code == 202, r.text

    def lines() -> list[str]:
        return steps_log.read_text().splitlines() if steps_log.exists() else []

    wait_until(
        lambda: lines() == ["start one", "end one", "start two"],
        timeout=30,
        what="activity two to be running",
    )
    processes[0].send_signal(signal.SIGKILL)
    processes[0].wait(timeout=30)

    gate.write_text("open")
    processes.append(start_devhost(state, port, host_log))
    wait_for_port(port, timeout=60, alive=lambda: processes[-1].poll() is None)

    def status() -> dict[str, object]:
        body: dict[str, object] = httpx.get(f"{url}/api/status/kill-me", headers=key).json()
        return body

    done = wait_until(
        lambda: status().get("runtimeStatus") == "Completed" and status(),
        timeout=60,
        what="the orchestration to complete after the restart",
    )
    assert done["output"] == ["one done", "two done"]
    assert lines() == ["start one", "end one", "start two", "start two", "end two"]
