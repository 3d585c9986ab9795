"""`python -m localrun run` (what `make run` runs), as a user meets it, in a process of its own.

- A taken port fails it at once, naming the port and what to do, before anything starts.
- SIGHUP (the terminal closed), SIGTERM and SIGINT stop Azurite, the simulator and devhost;
  SIGKILL of `run` itself leaves nothing behind either; a child that stops on its own stops
  the rest, with its reason.
- A bad app setting: devhost refuses to start, and `run` stops everything, printing the setting's
  message.
- Each run keeps its own logs; the time scale and the scenario reach both the simulator and the
  app.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from localrun.processes import port_free
from localrun.scenarios import SCENARIOS
from localrun_tests.conftest import ROOT, alive, linux_only, pids_with
from loopserver import free_port
from loopserver.testing import wait_until

pytestmark = [pytest.mark.subprocess, linux_only]

BANNER_END = "Ctrl-C stops everything."


@dataclass
class Run:
    process: subprocess.Popen[str]
    ports: dict[str, int]
    state: Path
    output: list[str] = field(default_factory=list)
    pump: threading.Thread | None = None

    def children(self) -> dict[str, list[int]]:
        return {
            "azurite": pids_with("--blobPort", str(self.ports["azurite"])),
            "simulator": pids_with("simulator", "--port", str(self.ports["simulator"])),
            "devhost": pids_with("devhost", "--port", str(self.ports["devhost"])),
        }

    def read_until(self, text: str, timeout: float = 90.0) -> None:
        """Wait until a line of its stdout holds ``text`` (read by a thread: no blocking read
        can outlive the timeout)."""
        assert self.process.stdout is not None
        stdout = self.process.stdout
        if self.pump is None:

            def pump() -> None:
                for line in stdout:
                    self.output.append(line.rstrip("\n"))

            self.pump = threading.Thread(target=pump, daemon=True)
            self.pump.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.output):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        time.sleep(0.2)  # the last lines, if it exited
        exited = self.process.poll() is not None and self.process.stderr is not None
        stderr = self.process.stderr.read() if exited and self.process.stderr else ""
        raise AssertionError(f"no {text!r} in {self.output} (stderr: {stderr})")

    def gone(self) -> bool:
        ports_free = all(port_free("127.0.0.1", p) for p in self.ports.values())
        return ports_free and not any(alive(p) for ps in self.children().values() for p in ps)


def start_run(state: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    ports = {"azurite": free_port(), "simulator": free_port(), "devhost": free_port()}
    argv = [
        sys.executable,
        "-m",
        "localrun",
        "run",
        "--state",
        str(state),
        "--azurite-port",
        str(ports["azurite"]),
        "--simulator-port",
        str(ports["simulator"]),
        "--devhost-port",
        str(ports["devhost"]),
        *args,
    ]
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Run(process, ports, state)


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        if run.process.poll() is None:
            run.process.kill()
        run.process.wait(timeout=30)
        for pids in run.children().values():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = [item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item]
    return dict(pairs)


def argv_of(pid: int) -> list[str]:
    return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]


def test_a_taken_port_fails_at_once_naming_it(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "localrun",
                "run",
                "--state",
                str(tmp_path),
                "--devhost-port",
                str(taken),
                "--azurite-port",
                str(free_port()),
                "--simulator-port",
                str(free_port()),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert time.monotonic() - started < 10
    assert done.returncode == 2
    assert BANNER_END not in done.stdout
    assert f"port {taken} (devhost) already in use" in done.stderr
    assert "stop it, or choose other ports" in done.stderr
    assert "DEVHOST_PORT=" in done.stderr
    assert not (tmp_path / "devhost").exists()


def test_signals_stop_everything_and_each_run_keeps_its_logs(tmp_path, runs, needs_azurite):
    state = tmp_path / "state"
    cases = [
        (signal.SIGHUP, [], "1", None),  # closing the terminal; the default: real time
        (signal.SIGTERM, ["--time-scale", "25"], "25", None),
        (signal.SIGINT, ["--scenario", "azure-gateway"], "1", "seed-004-azure.json"),
    ]
    for signum, args, scale, config in cases:
        run = start_run(state, *args)
        runs.append(run)
        run.read_until(BANNER_END)
        children = run.children()
        assert all(len(pids) == 1 for pids in children.values()), children
        [devhost], [sim] = children["devhost"], children["simulator"]
        assert environ_of(devhost)["IMAGE_TIME_SCALE"] == scale
        sim_argv = argv_of(sim)
        assert sim_argv[sim_argv.index("--time-scale") + 1] == scale
        if config:
            assert Path(sim_argv[sim_argv.index("--config") + 1]).name == config
            assert environ_of(devhost)["IMAGE_ROUTE_AZURE_DEPLOYMENT"] == "gpt-image-2-1"
        else:
            assert "--config" not in sim_argv
        azurite_argv = argv_of(children["azurite"][0])
        assert {"--skipApiVersionCheck", "--disableTelemetry"} <= set(azurite_argv)
        run.process.send_signal(signum)
        assert run.process.wait(timeout=60) == 0
        wait_until(run.gone, timeout=15, what=f"every child gone after {signum.name}")
    logs = state / "logs"
    folders = sorted(p for p in logs.iterdir() if not p.is_symlink())
    assert len(folders) == len(cases)
    assert (logs / "latest").resolve() == folders[-1].resolve()
    for folder in folders:
        assert "devhost listening on" in (folder / "devhost.log").read_text()


def test_sigkill_of_run_leaves_no_child_behind(tmp_path, runs, needs_azurite):
    run = start_run(tmp_path)
    runs.append(run)
    run.read_until(BANNER_END)
    assert all(run.children().values())
    run.process.kill()
    run.process.wait(timeout=30)
    wait_until(run.gone, timeout=15, what="every child gone after SIGKILL of run")


def test_a_child_that_stops_on_its_own_stops_the_rest(tmp_path, runs, needs_azurite):
    run = start_run(tmp_path)
    runs.append(run)
    run.read_until(BANNER_END)
    [devhost] = run.children()["devhost"]
    os.kill(devhost, signal.SIGKILL)
    assert run.process.wait(timeout=60) == 1
    assert run.process.stderr is not None
    assert "devhost stopped on its own (exit status -9)" in run.process.stderr.read()
    wait_until(run.gone, timeout=15, what="every child gone")


def test_a_bad_setting_stops_the_stack_with_the_settings_message(tmp_path, runs, needs_azurite):
    run = start_run(tmp_path, env={"IMAGE_READ_IDLE_TIMEOUT_S": "1000"})
    runs.append(run)
    assert run.process.wait(timeout=90) == 2
    out, err = run.process.communicate()
    assert BANNER_END not in out
    assert "localrun: cannot start: devhost exited with status 3" in err
    assert "IMAGE_READ_IDLE_TIMEOUT_S (1000s) exceeds IMAGE_REQUEST_TIMEOUT_S (900s)" in err
    assert "stopped everything it had started" in err
    wait_until(run.gone, timeout=15, what="every child gone")


def test_every_scenario_is_offered_on_the_command_line():
    done = subprocess.run(
        [sys.executable, "-m", "localrun", "run", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for name in SCENARIOS:
        assert name in done.stdout
    assert "default 1: real time" in done.stdout


def test_one_state_folder_serves_one_stack_at_a_time(tmp_path):
    from localrun.__main__ import state_lock

    first = state_lock(tmp_path / "state")
    assert first is not None
    assert state_lock(tmp_path / "state") is None  # a second stack would share its data
    assert state_lock(tmp_path / "other") is not None
    first.close()
    assert state_lock(tmp_path / "state") is not None
