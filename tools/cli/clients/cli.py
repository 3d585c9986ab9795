"""Start an image job and follow it: ``python -m clients.cli generate --prompt "..." --wait``.

The CLI does what every client of the service should do: start the job, get its id at once, then
poll the status URL at the pace the service asks (Retry-After), show each state change as it
happens, and on the end say where the image is, how long each clock took, or what failed where.
It never starts a second job because the first is slow.

    python -m clients.cli generate --url http://127.0.0.1:7071 --key KEY \\
        --prompt "a red apple" --size 1024x1024 --quality low --wait --out apple.png
    python -m clients.cli status JOB_ID --url ... --key ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

TIMING_ROWS = (
    ("connect_ms", "connect"),
    ("first_byte_ms", "first byte"),
    ("first_partial_image_ms", "first partial image"),
    ("final_image_ms", "final image"),
    ("download_ms", "download"),
    ("upload_ms", "upload"),
)


class JobClient:
    """The service's HTTP API, with the function key sent as ``x-functions-key``."""

    def __init__(self, base_url: str, key: str | None, client: httpx.Client | None = None):
        self._base = base_url.rstrip("/")
        headers = {"x-functions-key": key} if key else {}
        self._http = client or httpx.Client(timeout=30.0)
        self._headers = headers

    def start(self, request: dict[str, Any]) -> httpx.Response:
        return self._http.post(f"{self._base}/api/images", json=request, headers=self._headers)

    def status(self, job_id: str) -> httpx.Response:
        return self._http.get(f"{self._base}/api/images/{job_id}", headers=self._headers)

    def download(self, url: str) -> bytes:
        response = self._http.get(url)
        response.raise_for_status()
        return response.content


def follow(
    client: JobClient,
    job_id: str,
    *,
    on_change: Callable[[dict[str, Any]], None],
    timeout_s: float = 3600.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll until the job ends; call ``on_change`` for every new state (and new preview).

    A poll that fails (a 5xx, a dropped connection) is not the job failing: it is tried again
    at the same pace, up to the deadline. The job is never started again.
    """
    deadline = monotonic() + timeout_s
    last: tuple[str, int, int] | None = None
    while True:
        try:
            response = client.status(job_id)
        except httpx.TransportError:
            if monotonic() > deadline:
                raise
            sleep(2.0)
            continue
        if response.status_code == 404:
            raise SystemExit(f"job {job_id}: not found")
        if response.status_code >= 500 and monotonic() <= deadline:
            sleep(_retry_after(response))
            continue
        response.raise_for_status()
        status: dict[str, Any] = response.json()
        seen = (status["state"], status.get("attempt") or 0, len(status.get("previews") or []))
        if seen != last:
            on_change(status)
            last = seen
        if response.status_code == 200:
            return status
        if monotonic() > deadline:
            raise SystemExit(f"job {job_id}: still {status['state']} after {timeout_s:g}s")
        sleep(_retry_after(response))


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.05, min(float(response.headers.get("retry-after", "2")), 30.0))
    except ValueError:
        return 2.0


def print_change(console: Console, started: float) -> Callable[[dict[str, Any]], None]:
    def show(status: dict[str, Any]) -> None:
        elapsed = time.monotonic() - started
        extra = ""
        if status.get("previews"):
            extra = f" ({len(status['previews'])} preview(s))"
        if status.get("retry"):
            extra = f" (retry at {status['retry']['at']}: {status['retry']['reason']})"
        console.print(
            f"[dim]{elapsed:7.1f}s[/dim]  [bold]{status['state']}[/bold]"
            f"  attempt {status.get('attempt') or '-'}  {status['stateText']}{extra}"
        )

    return show


def print_result(console: Console, status: dict[str, Any]) -> None:
    timings = status.get("timings") or {}
    table = Table(title=f"job {status['id']}: {status['state']}")
    table.add_column("clock")
    table.add_column("ms from send", justify="right")
    for key, label in TIMING_ROWS:
        value = timings.get(key)
        table.add_row(label, "-" if value is None else f"{value:,}")
    console.print(table)
    if status.get("image"):
        image = status["image"]
        console.print(
            f"image: {image['width']}x{image['height']} {image['contentType']}, "
            f"{image['bytes']:,} bytes"
        )
        console.print(f"image URL: {image['url']}")
    if status.get("metadataUrl"):
        console.print(f"metadata: {status['metadataUrl']}")
    if status.get("error"):
        console.print(f"[red]error[/red]: {json.dumps(status['error'])}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clients.cli", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--url", default=os.environ.get("IMAGEJOBS_URL", "http://127.0.0.1:7071"))
    parser.add_argument(
        "--key",
        default=os.environ.get("IMAGEJOBS_KEY"),
        help="function key (default: $IMAGEJOBS_KEY)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="start a job")
    generate.add_argument("--prompt", required=True)
    for name in ("size", "quality", "output_format", "background", "moderation", "route"):
        generate.add_argument(f"--{name.replace('_', '-')}", dest=name)
    for name in ("n", "partial_images", "output_compression"):
        generate.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int)
    generate.add_argument("--wait", action="store_true", help="poll until the job ends")
    generate.add_argument("--out", help="with --wait: save the image to this file")
    generate.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds to keep polling (default 3600)"
    )
    status = commands.add_parser("status", help="show a job's status")
    status.add_argument("job_id")
    args = parser.parse_args(argv)

    console = Console()
    client = JobClient(args.url, args.key)
    if args.command == "status":
        response = client.status(args.job_id)
        console.print_json(response.text)
        return 0 if response.status_code in (200, 202) else 1

    fields = ("prompt", "size", "quality", "output_format", "background", "moderation", "route")
    request: dict[str, Any] = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    for name in ("n", "partial_images", "output_compression"):
        if getattr(args, name) is not None:
            request[name] = getattr(args, name)
    started = time.monotonic()
    response = client.start(request)
    if response.status_code != 202:
        console.print(f"[red]not started[/red] (HTTP {response.status_code}): {response.text}")
        return 1
    job = response.json()
    console.print(f"job [bold]{job['id']}[/bold] accepted; status at {job['statusUrl']}")
    if not args.wait:
        return 0
    final = follow(
        client, job["id"], on_change=print_change(console, started), timeout_s=args.timeout
    )
    print_result(console, final)
    if final["state"] != "saved":
        return 2
    if args.out and final.get("image"):
        with open(args.out, "wb") as out:
            out.write(client.download(final["image"]["url"]))
        console.print(f"saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
