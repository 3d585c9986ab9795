"""`python -m devhost`: run the function app in the current directory, as `func start` would.

    python -m devhost [--app function_app] [--host 127.0.0.1] [--port 7071] [--state DIR]
                      [--virtual-time]
    python -m devhost keys [--state DIR]      # print the default function key (creates the file)

The state directory (default `.state/devhost`, git-ignored) holds the SQLite store and the key
file, so orchestrations and keys survive a restart, and a `kill -9`.

It runs the same DevHost the tests start in-process (loopserver's BackgroundServer) and waits for
SIGINT/SIGTERM in the main thread, rather than loopserver.serve_forever: the timers must start only
after the listener is open (a run_on_startup timer may call the durable client at once), and
serve_forever offers no hook after the socket is bound.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from devhost.keys import KeyFileError, load_or_create_keys

DEFAULT_STATE = Path(".state") / "devhost"


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m devhost",
        description="Run a Python v2 function app locally with real Durable semantics.",
        epilog="`python -m devhost keys [--state DIR]` prints the default function key.",
    )
    p.add_argument("--app", default="function_app", help="module of the app (default function_app)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7071, help="port (default 7071, 0 = any free port)")
    p.add_argument("--state", type=Path, default=DEFAULT_STATE, help="state directory")
    p.add_argument(
        "--virtual-time",
        action="store_true",
        help="durable timers fire at once and the orchestration clock jumps ahead (tests)",
    )
    return p


def _keys(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m devhost keys", description="Print the default function key."
    )
    p.add_argument("--state", type=Path, default=DEFAULT_STATE, help="state directory")
    args = p.parse_args(argv)
    try:
        keys, _created = load_or_create_keys(args.state)
    except KeyFileError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(keys.default_function_key)
    return 0


def _serve(argv: Sequence[str]) -> int:
    args = _serve_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="[%(asctime)s] %(name)s %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    # Imported here so that `keys` works without importing the SDKs.
    from devhost.server import DevHost

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("devhost").info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    host = DevHost(
        args.app,
        app_dir=Path.cwd(),
        host=args.host,
        port=args.port,
        state_dir=args.state,
        virtual_time=args.virtual_time,
    )
    host.start()
    print(f"devhost: {host.url}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        host.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "keys":
        return _keys(args[1:])
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
