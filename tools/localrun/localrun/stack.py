"""Azurite + simulator + devhost, wired to each other, started and stopped as one.

    with LocalStack(root, time_scale=10) as stack:
        stack.devhost_url, stack.function_key, stack.simulator_url

Ports default to the documented ones (Azurite blob 10000, simulator 8089, devhost 7071); tests
pass 0 to take free ports. devhost runs function_app.py unchanged; the stack only overrides the
settings that depend on where the other two listen (route base URLs, the storage connection
string), through the environment, which wins over local.settings.json as with Core Tools.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from localrun.azurite import azurite_blob, connection_string
from localrun.processes import ChildProcess
from loopserver import free_port


class LocalStack:
    def __init__(
        self,
        root: Path,
        *,
        state_dir: Path | None = None,
        azurite_port: int = 10000,
        simulator_port: int = 8089,
        devhost_port: int = 7071,
        time_scale: float = 10.0,
        simulator_config: Path | None = None,
        azurite_location: Path | None = None,
        extra_env: dict[str, str] | None = None,
        virtual_time: bool = False,
    ) -> None:
        self.root = root
        self.state_dir = state_dir or root / ".state"
        self.azurite_port = azurite_port or free_port()
        self.simulator_port = simulator_port or free_port()
        self.devhost_port = devhost_port or free_port()
        self.time_scale = time_scale
        self.simulator_config = simulator_config
        self.azurite_location = azurite_location
        self.extra_env = extra_env or {}
        self.virtual_time = virtual_time
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

    def app_env(self) -> dict[str, str]:
        """The environment devhost runs the app with: the caller's, plus where things listen."""
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
        # A value may name where the simulator listens (a route of one's own on it).
        env.update(
            {k: v.replace("{simulator_url}", self.simulator_url) for k, v in self.extra_env.items()}
        )
        return env

    def start(self) -> LocalStack:
        logs = self.state_dir / "logs"
        try:
            self.azurite = azurite_blob(
                self.root,
                port=self.azurite_port,
                location=self.azurite_location,
                log_path=logs / "azurite.log",
            )
            self.azurite.start()
            simulator_argv = [
                sys.executable,
                "-m",
                "simulator",
                "--port",
                str(self.simulator_port),
                "--time-scale",
                str(self.time_scale),
            ]
            if self.simulator_config is not None:
                simulator_argv += ["--config", str(self.simulator_config)]
            self.simulator = ChildProcess(
                "simulator",
                simulator_argv,
                port=self.simulator_port,
                cwd=self.root,
                log_path=logs / "simulator.log",
            )
            self.simulator.start()
            self.devhost = self.devhost_process()
            self.devhost.start()
        except BaseException:
            self.stop()
            raise
        return self

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
            log_path=self.state_dir / "logs" / "devhost.log",
        )

    def restart_azurite(self, *, down_s: float) -> None:
        """Stop Azurite, stay down for ``down_s``, start it again on the same port and data
        (a storage outage; needs ``azurite_location`` for the data to survive)."""
        assert self.azurite is not None
        self.azurite.stop()
        time.sleep(down_s)
        self.azurite = azurite_blob(
            self.root,
            port=self.azurite_port,
            location=self.azurite_location,
            log_path=self.state_dir / "logs" / "azurite.log",
        )
        self.azurite.start()

    def crash_devhost(self) -> None:
        """SIGKILL devhost, as a crash or `kill -9` would, then start it again on its state."""
        assert self.devhost is not None
        self.devhost.kill_hard()
        self.devhost = self.devhost_process()
        self.devhost.start()

    def stop(self) -> None:
        for child in (self.devhost, self.simulator, self.azurite):
            if child is not None:
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
