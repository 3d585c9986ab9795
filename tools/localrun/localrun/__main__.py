"""`python -m localrun run` (the whole stack, foreground) and `python -m localrun demo`.

run:  Azurite, the simulator and devhost on their documented ports, with the settings of
      local.settings.json (or the sample); prints the URLs and the function key; Ctrl-C stops all
      of it and leaves no process behind.
demo: the same stack on free ports, one image job end to end with the CLI client (its state
      changes, its timings, where the image is), then everything stopped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from localrun.stack import LocalStack

ROOT = Path(__file__).resolve().parents[3]  # the repository root: the app, its settings, Azurite


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # Azurite keeps its data under .state/ too, so jobs devhost remembers keep their images.
    with LocalStack(
        ROOT, time_scale=args.time_scale, azurite_location=ROOT / ".state" / "azurite"
    ) as stack:
        print(f"Azurite (blob):  http://127.0.0.1:{stack.azurite_port}/devstoreaccount1")
        print(f"simulator:       {stack.simulator_url}  (time scale {stack.time_scale:g})")
        print(f"functions:       {stack.devhost_url}/api/images")
        print(f"function key:    {stack.function_key}")
        print(f"logs:            {stack.state_dir / 'logs'}")
        print("Ctrl-C stops everything.", flush=True)
        stop.wait()
    print("stopped.")
    return 0


def demo(args: argparse.Namespace) -> int:
    from clients.cli import main as cli

    state = Path(tempfile.mkdtemp(prefix="imagejobs-demo-"))
    try:
        with LocalStack(
            ROOT,
            state_dir=state,
            azurite_port=0,
            simulator_port=0,
            devhost_port=0,
            time_scale=args.time_scale,
        ) as stack:
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
                print(f"demo failed; logs in {state / 'logs'}", file=sys.stderr)
                return code
        shutil.rmtree(state, ignore_errors=True)
        print(
            "The demo's stack is stopped, so the links above are gone; the image is kept at "
            f"{out.relative_to(ROOT)}. `make run` keeps a stack up."
        )
        return 0
    except BaseException:
        print(f"demo failed; logs in {state / 'logs'}", file=sys.stderr)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localrun")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="the whole local stack, in the foreground")
    run_parser.add_argument("--time-scale", type=float, default=10.0)
    demo_parser = commands.add_parser("demo", help="one image job end to end")
    demo_parser.add_argument("--time-scale", type=float, default=10.0)
    demo_parser.add_argument("--prompt", default="a red apple on a white background")
    demo_parser.add_argument("--size", default="1024x1024")
    demo_parser.add_argument("--quality", default="low")
    args = parser.parse_args(argv)
    return run(args) if args.command == "run" else demo(args)


if __name__ == "__main__":
    sys.exit(main())
