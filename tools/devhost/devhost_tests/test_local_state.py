"""devhost on disk and at start-up.

- The state directory (keys, the SQLite store with every instance's input, timer status) is the
  owner's alone: folders 0700, files 0600, whatever the umask, and an earlier run's wider modes
  are narrowed at start.
- A host that cannot start says why on its last line and exits non-zero (START_FAILED), rather
  than serving a broken app: an app whose import raises (function_app.py checks its settings at
  import), a port that is taken.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.__main__ import START_FAILED
from devhost.keys import key_file_path
from devhost.server import STORE_FILE, DevHost
from devhost_tests.example_client import EXAMPLE, App


def modes(root: Path) -> dict[str, int]:
    """Every path under ``root`` with its mode; a file gone between the listing and its stat
    (a timer's status written whole: its temporary file is moved into place) is left out."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o002)  # the widest common umask: group-writable, world-readable
    try:
        yield
    finally:
        os.umask(previous)


def test_the_state_directory_is_the_owners_alone(tmp_path, open_umask):
    state = tmp_path / "fresh" / "state"
    with DevHost(app_dir=EXAMPLE, state_dir=state, virtual_time=True) as host:
        app = App(host)
        started = app.start("chain", ["a secret prompt"])
        app.wait(started["id"])
        app.http.close()
        found = modes(state)  # while it runs: SQLite's -wal and -shm files exist
    assert {STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm"} <= set(found)
    assert {"secrets", "secrets/host.json"} <= set(found)
    assert {name: mode for name, mode in found.items() if (state / name).is_dir()} == {
        name: 0o700 for name in found if (state / name).is_dir()
    }
    assert {name: mode for name, mode in found.items() if (state / name).is_file()} == {
        name: 0o600 for name in found if (state / name).is_file()
    }
    # The folders devhost made above its state directory too.
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700


def test_an_earlier_runs_wider_modes_are_narrowed_at_start(tmp_path, open_umask):
    state = tmp_path / "state"
    with DevHost(app_dir=EXAMPLE, state_dir=state, virtual_time=True):
        pass
    for path in [state, state / "secrets"]:
        path.chmod(0o755)
    for path in [key_file_path(state), state / STORE_FILE]:
        path.chmod(0o644)
    with DevHost(app_dir=EXAMPLE, state_dir=state, virtual_time=True):
        found = modes(state)
    assert found["."] == found["secrets"] == 0o700
    assert found["secrets/host.json"] == found[STORE_FILE] == 0o600


BROKEN_APP = textwrap.dedent(
    """
    import azure.functions as func

    app = func.FunctionApp()

    raise ValueError("setting EXAMPLE_LIMIT (1000s) exceeds EXAMPLE_OUTER (900s)")
    """
)


def run_devhost(app_dir: Path, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devhost", "--state", str(state), *args],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.subprocess
def test_an_app_whose_import_raises_is_refused_at_start(tmp_path):
    (tmp_path / "function_app.py").write_text(BROKEN_APP)
    done = run_devhost(tmp_path, tmp_path / "state", "--port", "0")
    assert done.returncode == START_FAILED
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "devhost: cannot start: importing 'function_app' raised ValueError: "
        "setting EXAMPLE_LIMIT (1000s) exceeds EXAMPLE_OUTER (900s)"
    )
    # The app's own line is shown, so the reader finds where it raised.
    assert f'File "{tmp_path / "function_app.py"}", line 6' in done.stderr


@pytest.mark.subprocess
def test_a_taken_port_is_refused_at_start_naming_it(tmp_path):
    with DevHost(app_dir=EXAMPLE, virtual_time=True) as other:
        taken = other.port
        done = run_devhost(EXAMPLE, tmp_path / "state", "--port", str(taken))
    assert done.returncode == START_FAILED
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"devhost: cannot start: port {taken} is in use")
    assert "--port" in last
