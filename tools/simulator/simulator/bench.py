"""Benchmark: many concurrent large streams through one simulator process.

    python -m simulator.bench                      # 50 x 2048x2048 high PNG streams, time scale 5
    python -m simulator.bench --streams 8 --size 1024x1024 --time-scale 100 --format jpeg

The simulator runs as a subprocess (``python -m simulator``) so its peak memory can be read from
``/proc/<pid>/status`` (VmHWM) without the client's buffers mixed in. The client reads every
stream with httpx, chunk by chunk, never holding a whole payload, and counts bytes and events.
Reported: wall time, images/s, MB/s received, and the simulator's resident memory before and at
its peak. No pass/fail: the command and its last result go in docs/simulator.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from loopserver import free_port, wait_for_port

COMPLETED = b"event: image_generation.completed"
PARTIAL = b"event: image_generation.partial_image"


@dataclasses.dataclass
class StreamResult:
    received: int = 0
    partials: int = 0
    completed: bool = False
    status: int = 0


def _status_kb(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM); 0 where /proc is not available."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def _one(client: httpx.AsyncClient, url: str, body: dict[str, object]) -> StreamResult:
    result = StreamResult()
    tail = b""
    async with client.stream("POST", url, json=body) as response:
        result.status = response.status_code
        async for chunk in response.aiter_bytes():
            result.received += len(chunk)
            # Find event names across chunk boundaries; the tail is shorter than a marker, so
            # nothing is counted twice, and no payload is kept.
            data = tail + chunk
            result.partials += data.count(PARTIAL)
            result.completed = result.completed or COMPLETED in data
            tail = data[-(len(PARTIAL) - 1) :]
    return result


async def _run(base_url: str, args: argparse.Namespace) -> tuple[float, list[StreamResult]]:
    limits = httpx.Limits(max_connections=args.streams + 10)
    timeout = httpx.Timeout(None, connect=10)
    headers = {"Authorization": "Bearer sk-bench"}
    async with httpx.AsyncClient(limits=limits, timeout=timeout, headers=headers) as client:
        url = f"{base_url}/v1/images/generations"
        started = time.perf_counter()
        results = await asyncio.gather(
            *(
                _one(
                    client,
                    url,
                    {
                        "model": "gpt-image-2",
                        "prompt": f"benchmark picture {index if args.distinct else 0}",
                        "size": args.size,
                        "quality": args.quality,
                        "output_format": args.format,
                        "stream": True,
                        "partial_images": args.partials,
                    },
                )
                for index in range(args.streams)
            )
        )
        return time.perf_counter() - started, list(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.bench", description=__doc__)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--size", default="2048x2048")
    parser.add_argument("--quality", default="high")
    parser.add_argument("--format", default="png")
    parser.add_argument("--partials", type=int, default=2)
    parser.add_argument("--time-scale", type=float, default=5.0)
    parser.add_argument("--config", help="simulator settings file passed to python -m simulator")
    parser.add_argument(
        "--distinct",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a different prompt per stream, so no picture comes from the cache (default)",
    )
    args = parser.parse_args(argv)

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "simulator", "--port", str(port)]
    command += ["--time-scale", str(args.time_scale)]
    if args.config:
        command += ["--config", args.config]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        command, stdout=subprocess.DEVNULL, env=env
    )
    try:
        wait_for_port(port, alive=lambda: process.poll() is None)
        rss_before = _status_kb(process.pid, "VmRSS")
        wall, results = asyncio.run(_run(base_url, args))
        peak = _status_kb(process.pid, "VmHWM")
    finally:
        process.terminate()
        process.wait(timeout=30)

    completed = sum(1 for r in results if r.completed)
    received_mb = sum(r.received for r in results) / 1e6
    print(
        f"streams: {args.streams} x {args.size} {args.quality} {args.format}, "
        f"partial_images {args.partials}, time scale {args.time_scale:g}, "
        f"{'distinct prompts' if args.distinct else 'one prompt'}"
    )
    print(
        f"completed: {completed}/{args.streams} (statuses: {sorted({r.status for r in results})})"
    )
    print(f"partials received: {sum(r.partials for r in results)}")
    print(f"wall: {wall:.1f} s")
    print(f"throughput: {completed / wall:.2f} images/s, {received_mb / wall:.1f} MB/s")
    print(f"received: {received_mb:.0f} MB")
    print(f"simulator RSS: {rss_before / 1024:.0f} MB idle, peak {peak / 1024:.0f} MB (VmHWM)")
    return 0 if completed == args.streams else 1


if __name__ == "__main__":
    sys.exit(main())
