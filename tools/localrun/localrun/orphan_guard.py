"""`python -m localrun.orphan_guard PARENT_PID -- PROGRAM ARGS...`: run PROGRAM so that it dies
with the process that started it.

On Linux it asks the kernel (prctl PR_SET_PDEATHSIG) to send SIGTERM to this process when the
thread that forked it ends, then replaces itself with PROGRAM (execvp: same pid, same process
group; the request survives exec, PROGRAM being no set-user-ID binary). So a stack whose parent is
killed with SIGKILL, or crashes, leaves no Azurite, simulator or devhost behind. If the parent
died before the request was made, PROGRAM is never started.

Elsewhere (macOS) there is no such request: PROGRAM is exec'd as is, and only the parent's own
signal handling (SIGINT, SIGTERM, SIGHUP) stops it.

A shim rather than `preexec_fn`: Python code between fork and exec is unsafe in a process with
threads (the tests' stacks run beside server threads), and `prctl` here runs after a clean exec.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1


def ask_for_death_signal(signum: int = signal.SIGTERM) -> bool:
    """PR_SET_PDEATHSIG on Linux; False where the kernel has no such request."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Exec PROGRAM (never returns then); 2 for a bad command line, 1 if the parent is gone."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[1] != "--":
        print(
            "usage: python -m localrun.orphan_guard PARENT_PID -- PROGRAM [ARGS...]",
            file=sys.stderr,
        )
        return 2
    parent, program = int(args[0]), args[2:]
    ask_for_death_signal()
    if os.getppid() == parent:
        os.execvp(program[0], program)  # noqa: S606 - the caller's argv, by design
    return 1  # the parent is gone already: nobody would stop PROGRAM


if __name__ == "__main__":
    sys.exit(main())
