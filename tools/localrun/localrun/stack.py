"""Azurite + simulator + devhost, wired to each other, started and stopped as one.

    with LocalStack(root, time_scale=10) as stack:
        stack.devhost_url, stack.function_key, stack.simulator_url

Ports default to the documented ones (Azurite blob 10000, simulator 8089, devhost 7071); tests
pass 0 to take free ports. A port that is taken already (an older stack, `func start`) fails the
start at once, naming it, before anything is started (PortInUse). devhost runs function_app.py
unchanged; the stack only overrides the settings that depend on the other two: where they listen
(route base URLs, the storage connection string), the time scale, and what the simulator's
scenario accepts (deployment, key, API version, gateway idle limit: localrun.scenarios), through
the environment, which wins over local.settings.json as with Core Tools.

Each start writes its logs to a folder of its own, `{state}/logs/{YYYYmmdd-HHMMSS}-{pid}/`
(`azurite.log`, `simulator.log`, `devhost.log`), with `{state}/logs/latest` pointing at it and
`{state}/logs/devhost.log` (and the others) at `latest/devhost.log`; the last KEEP_RUNS runs are
kept. State and logs are the owner's alone (0700 folders, 0600 files).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

from devhost.private import private_dir
from devhost.settings import apply_local_settings
from localrun.azurite import azurite_blob, connection_string
from localrun.processes import ChildProcess, port_free
from localrun.scenarios import SCENARIOS, Scenario, matching_settings
from loopserver import free_port
from simulator.config import SimulatorConfig, load_config

# How many runs' log folders are kept under {state}/logs.
KEEP_RUNS = 20
# The logs of a run, one per child.
LOG_NAMES = ("azurite.log", "simulator.log", "devhost.log")


class PortInUse(RuntimeError):
    """A port the stack would listen on is taken; ``ports`` maps each taken port to its user."""

    def __init__(self, ports: dict[int, str]) -> None:
        self.ports = ports
        named = ", ".join(f"{port} ({who})" for port, who in ports.items())
        plural = "s" if len(ports) > 1 else ""
        super().__init__(
            f"port{plural} {named} already in use, most likely by another local stack "
            "(`make run` in another terminal or worktree) or `func start`: stop it, or choose "
            "other ports"
        )


@dataclass(frozen=True)
class Exited:
    """A child that stopped on its own: its name, exit status and its log's last line."""

    name: str
    status: int
    reason: str | None
    log_path: Path | None


class LocalStack:
    def __init__(
        self,
        root: Path,
        *,
        state_dir: Path | None = None,
        azurite_port: int = 10000,
        simulator_port: int = 8089,
        devhost_port: int = 7071,
        time_scale: float = 1.0,
        scenario: str | Scenario = "default",
        simulator_config: Path | None = None,
        azurite_location: Path | None = None,
        extra_env: dict[str, str] | None = None,
        virtual_time: bool = False,
        with_devhost: bool = True,
    ) -> None:
        self.root = root
        self.state_dir = state_dir or root / ".state"
        self.azurite_port = azurite_port or free_port()
        self.simulator_port = simulator_port or free_port()
        self.devhost_port = devhost_port or free_port()
        self.time_scale = time_scale
        self.scenario = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
        # A config of the caller's own (bench_retries) wins over the scenario's.
        self.simulator_config = simulator_config or self.scenario.simulator_config
        self.azurite_location = azurite_location
        self.extra_env = extra_env or {}
        self.virtual_time = virtual_time
        # False: Azurite and the simulator only, for a caller that runs the app's code in a
        # process of its own (bench.memory measures one).
        self.with_devhost = with_devhost
        self.log_dir = new_log_dir(self.state_dir / "logs")
        self.azurite: ChildProcess | None = None
        self.simulator: ChildProcess | None = None
        self.devhost: ChildProcess | None = None

    @property
    def simulator_url(self) -> str:
        return f"http://127.0.0.1:{self.simulator_port}"

    @property
    def devhost_url(self) -> str:
        return f"http://127.0.0.1:{self.devhost_port}"

    @property
    def storage_connection_string(self) -> str:
        return connection_string(self.azurite_port)

    @property
    def devhost_state(self) -> Path:
        return self.state_dir / "devhost"

    @property
    def function_key(self) -> str:
        out = subprocess.run(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "devhost", "keys", "--state", str(self.devhost_state)],
            cwd=self.root,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def ports(self) -> dict[int, str]:
        return {
            self.azurite_port: "Azurite",
            self.simulator_port: "simulator",
            self.devhost_port: "devhost",
        }

    def check_ports(self) -> None:
        """Raise PortInUse naming every port of this stack that something else holds."""
        taken = {
            port: who for port, who in self.ports().items() if not port_free("127.0.0.1", port)
        }
        if taken:
            raise PortInUse(taken)

    def app_env(self) -> dict[str, str]:
        """The environment devhost runs the app with: the caller's, plus where things listen,
        the time scale, and the settings that make the app's routes agree with the simulator's
        scenario (localrun.scenarios.matching_settings)."""
        env = dict(os.environ)
        env.update(
            {
                "IMAGE_ROUTE_AZURE_BASE_URL": self.simulator_url,
                "IMAGE_ROUTE_OPENAI_BASE_URL": f"{self.simulator_url}/v1",
                "IMAGES_STORAGE_CONNECTION_STRING": self.storage_connection_string,
                "AzureWebJobsStorage": self.storage_connection_string,
                # The service runs on the simulator's clock: its estimates, limits and waits are
                # divided by the same factor, so every comparison between them still holds.
                "IMAGE_TIME_SCALE": f"{self.time_scale:g}",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(matching_settings(self.simulator_config_object(), self.app_settings(env)))
        # A value may name where the simulator listens (a route of one's own on it).
        env.update(
            {k: v.replace("{simulator_url}", self.simulator_url) for k, v in self.extra_env.items()}
        )
        return env

    def simulator_config_object(self) -> SimulatorConfig:
        """The config the simulator runs with, parsed by its own loader."""
        if self.simulator_config is None:
            return SimulatorConfig()
        return load_config(self.simulator_config)

    def app_settings(self, env: dict[str, str]) -> dict[str, str]:
        """The settings the app will see under ``env``: local.settings.json (or the sample)
        below the environment, read as devhost reads them."""
        seen = dict(env)
        apply_local_settings(self.root, environ=seen, log=_QUIET)
        return seen

    def start(self) -> LocalStack:
        self.check_ports()
        try:
            self._prepare_logs()
            if self.azurite_location is not None:
                private_dir(self.azurite_location)
            self.azurite = self.azurite_process()
            self.azurite.start()
            simulator_argv = [
                sys.executable,
                "-m",
                "simulator",
                "--port",
                str(self.simulator_port),
                "--time-scale",
                f"{self.time_scale:g}",
            ]
            if self.simulator_config is not None:
                simulator_argv += ["--config", str(self.simulator_config)]
            self.simulator = ChildProcess(
                "simulator",
                simulator_argv,
                port=self.simulator_port,
                cwd=self.root,
                log_path=self.log_dir / "simulator.log",
            )
            self.simulator.start()
            if self.with_devhost:
                self.devhost = self.devhost_process()
                self.devhost.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare_logs(self) -> None:
        private_dir(self.state_dir)
        if self.log_dir.exists():  # another stack took the name since: a fresh one
            self.log_dir = new_log_dir(self.log_dir.parent)
        private_dir(self.log_dir)
        logs = self.log_dir.parent
        # latest -> this run's folder; {name}.log -> latest/{name}.log: one path to `tail -f`.
        links = {"latest": self.log_dir.name, **{n: f"latest/{n}" for n in LOG_NAMES}}
        for link, target in links.items():
            with contextlib.suppress(FileNotFoundError):
                (logs / link).unlink()
            with contextlib.suppress(OSError):  # a file system without symlinks: no pointer
                (logs / link).symlink_to(target)
        runs = sorted(p for p in self.log_dir.parent.iterdir() if p.is_dir() and not p.is_symlink())
        for old in runs[:-KEEP_RUNS]:
            shutil.rmtree(old, ignore_errors=True)

    def azurite_process(self) -> ChildProcess:
        return azurite_blob(
            self.root,
            port=self.azurite_port,
            location=self.azurite_location,
            log_path=self.log_dir / "azurite.log",
        )

    def devhost_process(self) -> ChildProcess:
        """A devhost child on this stack's port and state (also used to restart it)."""
        argv = [
            sys.executable,
            "-m",
            "devhost",
            "--port",
            str(self.devhost_port),
            "--state",
            str(self.devhost_state),
        ]
        if self.virtual_time:
            argv.append("--virtual-time")
        return ChildProcess(
            "devhost",
            argv,
            port=self.devhost_port,
            env=self.app_env(),
            cwd=self.root,
            log_path=self.log_dir / "devhost.log",
        )

    def children(self) -> list[ChildProcess]:
        return [c for c in (self.devhost, self.simulator, self.azurite) if c is not None]

    def exited(self) -> list[Exited]:
        """The children that have stopped on their own (a crash, a kill from outside)."""
        found = []
        for child in self.children():
            status = child.exit_status()
            if status is not None:
                found.append(Exited(child.name, status, child.last_log_line(), child.log_path))
        return found

    def restart_azurite(self, *, down_s: float) -> None:
        """Stop Azurite, stay down for ``down_s``, start it again on the same port and data
        (a storage outage; needs ``azurite_location`` for the data to survive)."""
        assert self.azurite is not None
        self.azurite.stop()
        time.sleep(down_s)
        self.azurite = self.azurite_process()
        self.azurite.start()

    def crash_devhost(self) -> None:
        """SIGKILL devhost, as a crash or `kill -9` would, then start it again on its state."""
        assert self.devhost is not None
        self.devhost.kill_hard()
        self.devhost = self.devhost_process()
        self.devhost.start()

    def stop(self) -> None:
        for child in self.children():
            child.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def new_log_dir(logs: Path) -> Path:
    """A run's log folder (not created): named by its start time, so the names sort by time,
    and by the process; `-2`, `-3` for a second stack of the same process in the same second."""
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    candidate, n = logs / stamp, 1
    while candidate.exists():
        n += 1
        candidate = logs / f"{stamp}-{n}"
    return candidate


_QUIET = logging.getLogger("localrun.settings")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
