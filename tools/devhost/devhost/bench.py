"""Benchmark: how fast devhost accepts and runs orchestrations (`python -m devhost.bench`).

It starts `python -m devhost` as a subprocess on the example app of the tests
(devhost_tests/example_app, a fresh state directory, wall-clock time) and measures, over HTTP:
- POST-to-202 latency: sequential POSTs to the app's HTTP starter (`/api/orchestrators/chain`,
  which calls the SDK's `client.start_new` and `create_check_status_response`), p50 and p99;
- orchestrations per second: N orchestrations of one activity each, started with a fixed number of
  concurrent callers, from the first POST until the last one is Completed.
A measurement, not a test: nothing here asserts a speed. The figures go in docs/devhost.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from devhost.keys import HostKeys, load_or_create_keys
from loopserver import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_APP = ROOT / "devhost_tests" / "example_app"


@dataclass(frozen=True)
class Result:
    latency_p50_ms: float
    latency_p99_ms: float
    latency_samples: int
    orchestrations: int
    concurrency: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.orchestrations / self.seconds

    def lines(self) -> list[str]:
        return [
            f"POST-to-202 latency (n={self.latency_samples}, sequential): "
            f"p50 {self.latency_p50_ms:.1f} ms, p99 {self.latency_p99_ms:.1f} ms",
            f"orchestrations of one activity: {self.orchestrations} in {self.seconds:.2f} s "
            f"with {self.concurrency} concurrent callers = {self.per_second:.1f}/s",
        ]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def _latency(client: httpx.AsyncClient, samples: int) -> list[float]:
    out: list[float] = []
    for _ in range(samples):
        t0 = time.perf_counter()
        r = await client.post("/api/orchestrators/chain", json=["latency"])
        out.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 202:
            raise RuntimeError(f"start answered {r.status_code}: {r.text[:200]}")
    return out


async def _throughput(
    client: httpx.AsyncClient, keys: HostKeys, count: int, concurrency: int
) -> float:
    prefix = f"bench-{uuid.uuid4().hex[:8]}-"
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def caller() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            r = await client.post(f"/api/orchestrators/chain/{prefix}{i}", json=["bench"])
            if r.status_code != 202:
                raise RuntimeError(f"start answered {r.status_code}: {r.text[:200]}")

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    # The client's default x-functions-key header (the function key) would win over ?code=.
    system = {"x-functions-key": keys.durable_system_key}
    params = {
        "instanceIdPrefix": prefix,
        "runtimeStatus": "Completed",
        "top": str(count + 1),
    }
    while True:
        r = await client.get(
            "/runtime/webhooks/durabletask/instances", params=params, headers=system
        )
        if r.status_code != 200:
            raise RuntimeError(f"listing answered {r.status_code}: {r.text[:200]}")
        if len(r.json()) >= count:
            return time.perf_counter() - t0
        await asyncio.sleep(0.02)


async def _measure(url: str, keys: HostKeys, samples: int, count: int, concurrency: int) -> Result:
    headers = {"x-functions-key": keys.default_function_key}
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=60, limits=limits
    ) as client:
        await _latency(client, 20)  # warm-up: imports, first SQLite pages, connection pool
        latencies = await _latency(client, samples)
        seconds = await _throughput(client, keys, count, concurrency)
    return Result(
        latency_p50_ms=statistics.median(latencies),
        latency_p99_ms=_percentile(latencies, 0.99),
        latency_samples=samples,
        orchestrations=count,
        concurrency=concurrency,
        seconds=seconds,
    )


def run(samples: int = 200, count: int = 200, concurrency: int = 8) -> Result:
    """Start a devhost subprocess on the example app, measure, stop it."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="devhost-bench-") as tmp:
        state = Path(tmp) / "state"
        keys, _ = load_or_create_keys(state)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", "devhost", "--port", str(port), "--state", str(state)]
        with open(Path(tmp) / "devhost.log", "wb") as log:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                args, cwd=EXAMPLE_APP, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            try:
                # devhost opens its port once the app is indexed and the engine has started; a
                # child that exits first ends the wait at once.
                wait_for_port(port, timeout=60, alive=lambda: proc.poll() is None)
                return asyncio.run(
                    _measure(f"http://127.0.0.1:{port}", keys, samples, count, concurrency)
                )
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devhost.bench", description=__doc__)
    p.add_argument("--samples", type=int, default=200, help="sequential POSTs for the latency")
    p.add_argument("--count", type=int, default=200, help="orchestrations for the throughput")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent callers")
    args = p.parse_args(argv)
    result = run(args.samples, args.count, args.concurrency)
    for line in result.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
