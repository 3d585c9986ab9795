"""Child processes: ready only when the port is their own, never outliving the process that
started them, and saying why when they stop before they are ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from localrun import orphan_guard
from localrun.processes import ChildFailed, ChildProcess, listens_on, port_free
from localrun_tests.conftest import alive, linux_only
from loopserver import free_port
from loopserver.testing import wait_until


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another process (here: this one) listens on, as an older stack's would be."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]


def test_port_free_tells_a_held_port_from_a_free_one(held_port):
    assert not port_free("127.0.0.1", held_port)
    assert port_free("127.0.0.1", free_port())


@pytest.mark.subprocess
def test_a_port_held_by_another_process_never_passes_for_the_childs(tmp_path, held_port):
    # The child never listens; the port answers all along, but not from the child.
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    child = ChildProcess("sleeper", sleeper, port=held_port, log_path=tmp_path / "s.log")
    with pytest.raises(ChildFailed, match=f"sleeper did not listen on port {held_port} in 1s"):
        child.start(ready_timeout_s=1)
    assert child.exit_status() is not None  # and it was stopped


@pytest.mark.subprocess
def test_a_child_that_stops_first_is_named_with_its_last_log_line(tmp_path, held_port):
    child = ChildProcess(
        "server", http_server(held_port), port=held_port, log_path=tmp_path / "server.log"
    )
    with pytest.raises(ChildFailed) as info:
        child.start(ready_timeout_s=30)
    message = str(info.value)
    assert message.startswith(f"server exited with status 1 before it listened on port {held_port}")
    assert "Address already in use" in message
    assert str(tmp_path / "server.log") in message
    assert info.value.reason is not None
    assert "Address already in use" in info.value.reason


@pytest.mark.subprocess
@linux_only
def test_a_ready_child_holds_its_port():
    port = free_port()
    child = ChildProcess("server", http_server(port), port=port)
    child.start()
    try:
        assert listens_on(child.pid, port)
        assert not listens_on(child.pid, free_port())
    finally:
        child.stop()


@pytest.mark.subprocess
def test_a_child_started_from_a_short_lived_thread_outlives_the_thread():
    # The kernel's parent-death signal follows the thread that forked: localrun forks from one
    # long-lived thread, so a stack (re)started from a worker thread (an outage test) survives it.
    port = free_port()
    child = ChildProcess("server", http_server(port), port=port)
    starter = threading.Thread(target=child.start)
    starter.start()
    starter.join()
    try:
        time.sleep(0.5)
        assert child.exit_status() is None
        assert alive(child.pid)
    finally:
        child.stop()


PARENT = textwrap.dedent(
    """
    import sys, time
    from localrun.processes import ChildProcess

    port = int(sys.argv[1])
    child = ChildProcess(
        "server", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)], port=port
    )
    child.start()
    print(child.pid, flush=True)
    time.sleep(120)
    """
)


@pytest.mark.subprocess
@linux_only
def test_a_child_dies_with_the_process_that_started_it():
    port = free_port()
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert alive(pid)
        parent.kill()  # SIGKILL: no handler, no cleanup of its own
        parent.wait(timeout=10)
        wait_until(lambda: not alive(pid), timeout=10, what=f"child {pid} to end")
        wait_until(lambda: port_free("127.0.0.1", port), timeout=10, what="its port to be free")
    finally:
        parent.kill()
        parent.wait(timeout=10)


@pytest.mark.subprocess
def test_the_guard_starts_nothing_for_a_parent_that_is_gone(tmp_path):
    marker = tmp_path / "started"
    program = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    # Run by its own process (the guard asks the kernel for a signal on the caller's death).
    guard = [sys.executable, "-m", "localrun.orphan_guard"]
    # A parent pid that is not the guard's parent: the program must not run.
    assert subprocess.run([*guard, "1", "--", *program], check=False).returncode == 1
    assert not marker.exists()
    mine = subprocess.run([*guard, str(os.getpid()), "--", *program], check=False)
    assert mine.returncode == 0
    assert marker.exists()


def test_the_guard_refuses_a_bad_command_line(capsys):
    assert orphan_guard.main(["123"]) == 2
    assert "usage" in capsys.readouterr().err
