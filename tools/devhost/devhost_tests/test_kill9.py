"""kill -9 of a devhost subprocess mid-orchestration, then a restart on the same state directory.

The orchestration `steps` runs activity one (completes) and activity two (blocks until a gate
file exists). The host is killed while two runs and after one finished; the restarted host must
finish the orchestration without running one again, and run two again (at-least-once).

The entity test kills the host while a batch of the Counter entity blocks in `add_gated`: after
the restart that batch runs again and every operation counts exactly once.
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


def test_kill_9_mid_entity_batch_then_restart(tmp_path, processes):
    """Each entity operation is applied exactly once across a kill -9 in the middle of a batch:
    the batch in flight runs again after the restart, the batches before it do not."""
    state = tmp_path / "state"
    ops_log = tmp_path / "ops.log"
    gate = tmp_path / "gate"
    host_log = tmp_path / "devhost.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    keys, _ = load_or_create_keys(state)
    key = {"x-functions-key": keys.default_function_key}

    def send(op: str, value: object) -> None:
        r = httpx.post(f"{url}/api/entities/Counter/kill/{op}", json=value, headers=key)
        assert r.status_code == 202, r.text

    def counter() -> object:
        return httpx.get(f"{url}/api/entities/Counter/kill", headers=key).json()["state"]

    def starts() -> int:
        return ops_log.read_text().count("start add_gated") if ops_log.exists() else 0

    processes.append(start_devhost(state, port, host_log))
    wait_for_port(port, timeout=60, alive=lambda: processes[-1].poll() is None)
    for _ in range(3):
        send("add", 1)
    wait_until(lambda: counter() == 3, timeout=30, what="the first three adds")
    send("add", 1)
    send("add_gated", {"amount": 10, "log": str(ops_log), "gate": str(gate)})
    send("add", 1)
    wait_until(lambda: starts() == 1, timeout=30, what="add_gated to be running")
    # An orchestration's signal and calls queue behind the batch in flight.
    r = httpx.post(f"{url}/api/orchestrators/entity_calls/kill-calls", json="kill", headers=key)
    assert r.status_code == 202, r.text
    processes[0].send_signal(signal.SIGKILL)
    processes[0].wait(timeout=30)

    gate.write_text("open")
    processes.append(start_devhost(state, port, host_log))
    wait_for_port(port, timeout=60, alive=lambda: processes[-1].poll() is None)

    def status() -> dict[str, object]:
        body: dict[str, object] = httpx.get(f"{url}/api/status/kill-calls", headers=key).json()
        return body

    done = wait_until(
        lambda: status().get("runtimeStatus") == "Completed" and status(),
        timeout=60,
        what="the orchestration's entity calls to be answered after the restart",
    )
    # 3 + 1 + 10 + 1 before the orchestration's +1 signal and +2 call: each exactly once.
    assert done["output"] == {
        "after_add": 18,
        "value": 18,
        "error": "the counter refuses",
        "both": [28, 128],
    }
    assert counter() == 128
    assert starts() == 2  # the batch in flight ran again; its results were recorded once
