"""``python -m simulator --host 127.0.0.1 --port 8089 [--config FILE] [--time-scale F]``.

Prints the URLs to point clients at, then serves until Ctrl-C (no traceback on the way out).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys

from loopserver import serve_forever
from simulator.app import build_app
from simulator.config import ConfigError, SimulatorConfig, load_config
from simulator.state import SimState


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="A local gpt-image-2 service (OpenAI and Azure)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    parser.add_argument("--port", type=int, default=8089, help="port to listen on (0: any free)")
    parser.add_argument("--config", help="JSON settings file (docs/simulator.md)")
    parser.add_argument(
        "--time-scale",
        type=float,
        help="divide every wait and every reported duration by this factor",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config) if args.config else SimulatorConfig()
        if args.time_scale is not None:
            if not args.time_scale > 0:
                raise ConfigError(f"--time-scale must be > 0, got {args.time_scale}")
            config = dataclasses.replace(config, time_scale=args.time_scale)
    except ConfigError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    url = f"http://{args.host}:{args.port}"
    deployments = ", ".join(d.name for d in config.deployments) or "(none)"
    print(f"gpt-image-2 simulator on {url} (time scale {config.time_scale:g})")
    print(f"  OpenAI:    OpenAI(base_url='{url}/v1', api_key=...)")
    print(f"  Azure:     AzureOpenAI(azure_endpoint='{url}', api_version=..., api_key=...)")
    print(f"  Azure v1:  OpenAI(base_url='{url}/openai/v1', api_key=...)  model = deployment")
    print(f"  deployments: {deployments}")
    print("  batches:   client.files / client.batches on each of them (image generations)")
    print(f"  admin:     {url}/_sim/health, /_sim/faults, /_sim/ledger, /_sim/batches, /_sim/reset")
    sys.stdout.flush()
    # serve_forever stops on SIGINT itself; a second Ctrl-C during shutdown must not print a
    # traceback either.
    with contextlib.suppress(KeyboardInterrupt):
        serve_forever(build_app(SimState(config)), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
