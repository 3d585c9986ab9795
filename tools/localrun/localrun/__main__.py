"""`python -m localrun run` (the whole stack, foreground) and `python -m localrun demo`.

run:  Azurite, the simulator and devhost on their documented ports (or --azurite-port,
      --simulator-port, --devhost-port), in real time unless --time-scale says otherwise (the
      simulator and the service divide their waits alike), playing --scenario (the simulator's
      config and matching app settings: localrun.scenarios); prints the URLs and the function
      key. A port that is taken fails the run at once, naming it. Ctrl-C, SIGTERM or closing the
      terminal (SIGHUP) stops all of it and leaves no process behind; so does a child that
      stops on its own (e.g. devhost refusing a bad setting at start), with its reason printed.
demo: the same stack on free ports (time scale 10), one image job end to end with the CLI
      client (its state changes, its timings, where the image is), then everything stopped.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO

from localrun.processes import ChildFailed
from localrun.scenarios import SCENARIOS
from localrun.stack import LocalStack, PortInUse

ROOT = Path(__file__).resolve().parents[3]  # the repository root: the app, its settings, Azurite

# Exit statuses of `run`: 0 stopped by a signal, 1 a child stopped on its own, 2 could not start.
STOPPED, CHILD_EXITED, NOT_STARTED = 0, 1, 2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def state_lock(state: Path) -> IO[bytes] | None:
    """An exclusive hold on ``state`` for this process's life (the kernel drops it when the
    process ends, however it ends); None when another stack holds it. Two stacks on one state
    folder would share devhost's database and Azurite's data, and lose each other's images."""
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle = (state / "run.lock").open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    # Azurite keeps its data under the state folder too, so jobs devhost remembers keep their
    # images.
    lock = state_lock(args.state)
    if lock is None:
        print(
            f"localrun: cannot start: another local stack uses the state folder {args.state} "
            "(its jobs, images and logs): stop it, or give this one a folder of its own: "
            "make run STATE=.state-2 (python -m localrun run --state ...)",
            file=sys.stderr,
        )
        return NOT_STARTED
    stack = LocalStack(
        ROOT,
        state_dir=args.state,
        azurite_port=args.azurite_port,
        simulator_port=args.simulator_port,
        devhost_port=args.devhost_port,
        time_scale=args.time_scale,
        scenario=args.scenario,
        azurite_location=args.state / "azurite",
    )
    try:
        stack.start()
    except PortInUse as exc:
        print(f"localrun: cannot start: {exc}.", file=sys.stderr)
        print(
            "  Ports: make run AZURITE_PORT=... SIMULATOR_PORT=... DEVHOST_PORT=... "
            "(python -m localrun run --azurite-port ... --simulator-port ... --devhost-port ...)",
            file=sys.stderr,
        )
        return NOT_STARTED
    except ChildFailed as exc:
        print(f"localrun: cannot start: {exc}", file=sys.stderr)
        print("localrun: stopped everything it had started.", file=sys.stderr)
        return NOT_STARTED
    try:
        print(f"Azurite (blob):  http://127.0.0.1:{stack.azurite_port}/devstoreaccount1")
        print(f"simulator:       {stack.simulator_url}  (time scale {stack.time_scale:g})")
        print(f"scenario:        {stack.scenario.name}: {stack.scenario.summary}")
        print(f"functions:       {stack.devhost_url}/api/images")
        print(f"web page:        {stack.devhost_url}/api/ui  (paste the function key there)")
        print(f"function key:    {stack.function_key}")
        print(f"logs:            {stack.log_dir}")
        print("Ctrl-C stops everything.", flush=True)
        while not stop.wait(0.5):
            exited = stack.exited()
            if exited:
                for child in exited:
                    print(
                        f"localrun: {child.name} stopped on its own (exit status {child.status})"
                        + (f": {child.reason}" if child.reason else "")
                        + (f" (log: {child.log_path})" if child.log_path else ""),
                        file=sys.stderr,
                    )
                print("localrun: stopping everything.", file=sys.stderr)
                return CHILD_EXITED
    finally:
        stack.stop()
        print("stopped.", flush=True)
    return STOPPED


@contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP end the demo as Ctrl-C does (KeyboardInterrupt), so its `with`
    blocks stop the stack; the default action would kill the process and orphan nothing only
    thanks to the orphan guard."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS[1:]}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def demo(args: argparse.Namespace) -> int:
    from clients.cli import main as cli

    state = Path(tempfile.mkdtemp(prefix="imagejobs-demo-"))
    try:
        with (
            signals_raise(),
            LocalStack(
                ROOT,
                state_dir=state,
                azurite_port=0,
                simulator_port=0,
                devhost_port=0,
                time_scale=args.time_scale,
                scenario=args.scenario,
            ) as stack,
        ):
            print(
                f"stack up: simulator {stack.simulator_url} (time scale {args.time_scale:g}), "
                f"functions {stack.devhost_url}",
                flush=True,
            )
            out = ROOT / ".local" / "demo-image.png"
            out.parent.mkdir(exist_ok=True)
            # The key goes by environment, not on a command line that `ps` shows.
            os.environ["IMAGEJOBS_KEY"] = stack.function_key
            code = cli(
                [
                    "--url",
                    stack.devhost_url,
                    "generate",
                    "--prompt",
                    args.prompt,
                    "--size",
                    args.size,
                    "--quality",
                    args.quality,
                    "--wait",
                    "--out",
                    str(out),
                ]
            )
            if code != 0:
                print(f"demo failed; logs in {stack.log_dir}", file=sys.stderr)
                return code
        shutil.rmtree(state, ignore_errors=True)
        print(
            "The demo's stack is stopped, so the links above are gone; the image is kept at "
            f"{out.relative_to(ROOT)}. `make run` keeps a stack up."
        )
        return 0
    except ChildFailed as exc:
        print(f"demo: cannot start: {exc}", file=sys.stderr)
        return NOT_STARTED
    except BaseException:
        print(f"demo failed; logs in {state / 'logs'}", file=sys.stderr)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localrun")
    commands = parser.add_subparsers(dest="command", required=True)
    scenarios = ", ".join(f"{s.name} ({s.summary})" for s in SCENARIOS.values())
    run_parser = commands.add_parser("run", help="the whole local stack, in the foreground")
    run_parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="divide the simulator's and the service's waits alike (default 1: real time)",
    )
    run_parser.add_argument(
        "--scenario", choices=sorted(SCENARIOS), default="default", help=scenarios
    )
    run_parser.add_argument("--azurite-port", type=int, default=10000)
    run_parser.add_argument("--simulator-port", type=int, default=8089)
    run_parser.add_argument("--devhost-port", type=int, default=7071)
    run_parser.add_argument(
        "--state",
        type=Path,
        default=ROOT / ".state",
        help="devhost's state, Azurite's data and the logs (default .state)",
    )
    demo_parser = commands.add_parser("demo", help="one image job end to end")
    demo_parser.add_argument("--time-scale", type=float, default=10.0)
    demo_parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="default")
    demo_parser.add_argument("--prompt", default="a red apple on a white background")
    demo_parser.add_argument("--size", default="1024x1024")
    demo_parser.add_argument("--quality", default="low")
    args = parser.parse_args(argv)
    if args.time_scale < 1:
        parser.error("--time-scale must be at least 1 (1: real time)")
    return run(args) if args.command == "run" else demo(args)


if __name__ == "__main__":
    sys.exit(main())
