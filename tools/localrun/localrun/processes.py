"""Child processes that are started in their own process group and always stopped.

Each child gets its own session, so stopping it stops everything it started too (Azurite is a
node process tree). Stop sends SIGTERM, waits, then SIGKILL: nothing outlives the stack.

Nor does anything outlive the process that started it when that process is killed outright
(SIGKILL, a crash): each child is started through `localrun.orphan_guard`, which asks Linux to
send it SIGTERM when its parent goes (PR_SET_PDEATHSIG). The kernel ties that signal to the
*thread* that forked the child, so every child is forked by one long-lived spawner thread of
this module, never by the caller's thread (a test restarts Azurite from a short-lived thread).

A child is ready once its port accepts connections *and* the listening socket is the child's own
(on Linux, read from /proc): a port still held by an older stack never passes for a new child.
A child that exits first is an error naming it, its exit status and the last line of its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from devhost.private import FILE_MODE

# One thread forks every child, and lives as long as the process (see the module docstring).
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="localrun-spawner")


class ChildFailed(RuntimeError):
    """A child exited before it was ready, or did not get ready in time."""

    def __init__(self, name: str, message: str, *, reason: str | None, log_path: Path | None):
        self.name = name
        self.reason = reason
        self.log_path = log_path
        details = f": {reason}" if reason else ""
        where = f" (log: {log_path})" if log_path else ""
        super().__init__(f"{name} {message}{details}{where}")


def guarded(argv: Sequence[str]) -> list[str]:
    """``argv`` run through the orphan guard, bound to this process."""
    return [sys.executable, "-m", "localrun.orphan_guard", str(os.getpid()), "--", *argv]


class ChildProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.host = host
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, *, ready_timeout_s: float = 60.0) -> None:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            # Logs may carry request details: owner-only, appended (a restart adds to it).
            fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
            self._log = os.fdopen(fd, "ab")
        popen: dict[str, Any] = {
            "env": self.env,
            "cwd": self.cwd,
            "stdout": self._log if self._log else subprocess.DEVNULL,
            "stderr": subprocess.STDOUT if self._log else subprocess.DEVNULL,
            "start_new_session": True,
        }
        argv = guarded(self.argv)
        process = _SPAWNER.submit(lambda: subprocess.Popen(argv, **popen)).result()  # noqa: S603
        self.process = process
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ChildFailed(
                    self.name,
                    f"exited with status {process.returncode} before it listened on port "
                    f"{self.port}",
                    reason=self.last_log_line(),
                    log_path=self.log_path,
                )
            if port_open(self.host, self.port) and listens_on(process.pid, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise ChildFailed(
            self.name,
            f"did not listen on port {self.port} in {ready_timeout_s:g}s",
            reason=self.last_log_line(),
            log_path=self.log_path,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def exit_status(self) -> int | None:
        """None while it runs (or before it started), else its exit status."""
        return self.process.poll() if self.process is not None else None

    def last_log_line(self) -> str | None:
        """The last non-empty line of the child's log: where a program says why it stopped."""
        if self.log_path is None or not self.log_path.exists():
            return None
        if self._log is not None:
            self._log.flush()
        with self.log_path.open("rb") as f:
            f.seek(max(0, self.log_path.stat().st_size - 16384))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines()]
        lines = [ln for ln in lines if ln]
        return lines[-1] if lines else None

    def kill_hard(self) -> None:
        """SIGKILL the whole group at once: what a crash or `kill -9` does."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, *, grace_s: float = 5.0) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if process is not None:
            # The group may hold children that outlived their parent.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def port_free(host: str, port: int) -> bool:
    """Whether a server could bind ``host:port`` now (as the stack's servers do, with
    SO_REUSEADDR, so a port in TIME_WAIT after a stop counts as free) and nothing answers there."""
    if port_open(host, port):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _listening_inodes(port: int) -> set[str] | None:
    """Inodes of the sockets listening on ``port`` (Linux /proc/net), None without /proc."""
    found: set[str] = set()
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        return None
    for table in tables:
        with contextlib.suppress(OSError):
            for line in table.read_text().splitlines()[1:]:
                fields = line.split()
                # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the inode.
                listening = len(fields) > 9 and fields[3] == "0A"
                if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    found.add(fields[9])
    return found


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` (or a process of its group) holds the socket listening on
    ``port``. True where /proc cannot tell (not Linux): then an open port has to do."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return True
    if _holds(pid, inodes):
        return True
    return any(_holds(other, inodes) for other in _others_in_group(pid))


def _holds(pid: int, inodes: set[str]) -> bool:
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
    return False


def _others_in_group(pgid: int) -> list[int]:
    """The other processes of process group ``pgid`` (a child's own children)."""
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != pgid:
                with contextlib.suppress(OSError):
                    if os.getpgid(int(entry)) == pgid:
                        pids.append(int(entry))
    return pids
