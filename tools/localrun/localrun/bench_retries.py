"""Benchmark: the same faults through a plain loop around the official SDK and through this service.

    python -m localrun.bench_retries        (make bench-retries)

For each scenario the simulator's ledger is reset, the jobs are run one way, the ledger is read;
then the same again the other way. Reported side by side: jobs saved, requests that reached the
route, billable generations per saved image, and 429s received. The simulator runs at time
scale 30 with a 6 requests/minute limit and Azure's 60 s gateway; the service's own estimates,
limits and waits (5/15/30 s after a 5xx, 120 s after a post-send failure, 10 s 429 backoff) are
divided by the same factor (IMAGE_TIME_SCALE), so both sides live on one clock. The plain loop
is what many apps do: one SDK call per job, SDK defaults (2 retries, its own backoff), streaming
with the request's partial_images.
"""

from __future__ import annotations

import concurrent.futures
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from localrun.stack import LocalStack

ROOT = Path(__file__).resolve().parents[3]  # the repository root: the app, its settings, Azurite
SCALE = 30.0
PROMPT = "a lighthouse on a cliff at dusk, oil painting"


@dataclass(frozen=True)
class Scenario:
    name: str
    jobs: int
    body: dict[str, Any]
    faults: list[dict[str, Any]]


SCENARIOS = [
    Scenario(
        "burst of 12 jobs, 6 requests/min limit",
        12,
        {"size": "1024x1024", "quality": "low", "partial_images": 1},
        [],
    ),
    Scenario(
        "2K high, partial_images 0, Azure 60 s gateway",
        4,
        {"size": "2048x2048", "quality": "high", "partial_images": 0},
        [],
    ),
    Scenario(
        "server_error mid-stream on 3 of 6 streams",
        6,
        {"size": "1024x1024", "quality": "low", "partial_images": 2},
        [{"kind": "mid_stream_error", "after_partials": 1, "count": 3}],
    ),
    Scenario(
        "4K high (3840x2160), Azure 60 s gateway",
        2,
        {"size": "3840x2160", "quality": "high", "partial_images": 1},
        [],
    ),
    Scenario(
        "safety rejection mid-stream on 3 of 6 streams",
        6,
        {"size": "1024x1024", "quality": "low", "partial_images": 1},
        [
            {
                "kind": "mid_stream_error",
                "after_partials": 0,
                "error_type": "image_generation_user_error",
                "code": "moderation_blocked",
                "message": "Your request was rejected by the safety system.",
                "count": 3,
            }
        ],
    ),
]

SIMULATOR_CONFIG = {
    "time_scale": SCALE,
    "deployments": {
        "gpt-image-2": {
            "model": "gpt-image-2",
            "rate_limit": {
                "requests_per_minute": 6,
                "images_per_minute": 6,
                "header_style": "openai",
                "window_s": 60,
            },
        }
    },
}

# The service's waits and limits follow the stack's time scale (IMAGE_TIME_SCALE, set by
# LocalStack); these only give the burst room to drain and the pollers a short Retry-After.
SERVICE_ENV = {
    "IMAGE_RETRY_RATE_LIMIT_MAX_ATTEMPTS": "12",
    "IMAGE_STATUS_RETRY_AFTER_S": "1",
}


@dataclass
class Outcome:
    saved: int
    requests: int
    billable: int
    rate_limited: int

    def row(self) -> str:
        per_image = f"{self.billable / self.saved:.2f}" if self.saved else "n/a"
        return (
            f"{self.saved} | {self.requests} | {self.billable} | {per_image} | {self.rate_limited}"
        )


def ledger_outcome(sim: httpx.Client, saved: int) -> Outcome:
    """Read the ledger once every generation that started has ended upstream: one cut off by
    a gateway runs on, and is billed when it finishes."""
    deadline = time.monotonic() + 600 / SCALE
    while True:
        entries = sim.get("/_sim/ledger").json()
        running = [e for e in entries if e["generation_started"] and not e["upstream_done_at"]]
        if not running or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return Outcome(
        saved=saved,
        requests=len(entries),
        billable=sum(1 for e in entries if e["billable"]),
        rate_limited=sum(1 for e in entries if e["status"] == 429),
    )


def sdk_loop(stack: LocalStack, scenario: Scenario) -> int:
    from openai import AzureOpenAI, OpenAIError

    client = AzureOpenAI(
        azure_endpoint=stack.simulator_url, api_key="bench-key", api_version="2025-04-01-preview"
    )

    def one(index: int) -> bool:
        try:
            stream = client.images.generate(
                model="gpt-image-2",
                prompt=f"{PROMPT} #{index}",
                stream=True,
                **scenario.body,
            )
            return any(event.type == "image_generation.completed" for event in stream)
        except OpenAIError:
            return False

    with concurrent.futures.ThreadPoolExecutor(scenario.jobs) as pool:
        return sum(pool.map(one, range(scenario.jobs)))


def service(stack: LocalStack, scenario: Scenario, key: str) -> int:
    http = httpx.Client(base_url=stack.devhost_url, headers={"x-functions-key": key}, timeout=30.0)
    ids = [
        http.post("/api/images", json={"prompt": f"{PROMPT} #{i}", **scenario.body}).json()["id"]
        for i in range(scenario.jobs)
    ]
    saved = 0
    for job in ids:
        while True:
            answer = http.get(f"/api/images/{job}")
            if answer.status_code == 200:
                saved += answer.json()["state"] == "saved"
                break
            time.sleep(0.2)
    return saved


def main() -> int:
    state = Path(tempfile.mkdtemp(prefix="bench-retries-"))
    config = state / "simulator.json"
    config.write_text(json.dumps(SIMULATOR_CONFIG))
    rows = []
    with LocalStack(
        ROOT,
        state_dir=state,
        azurite_port=0,
        simulator_port=0,
        devhost_port=0,
        time_scale=SCALE,
        simulator_config=config,
        extra_env=SERVICE_ENV,
    ) as stack:
        sim = httpx.Client(base_url=stack.simulator_url, timeout=30.0)
        key = stack.function_key
        for scenario in SCENARIOS:
            results = []
            for way in (sdk_loop, service):
                sim.post("/_sim/reset")
                time.sleep(60 / SCALE)  # let the rate-limit window empty
                for fault in scenario.faults:
                    sim.post("/_sim/faults", json=fault).raise_for_status()
                saved = way(stack, scenario) if way is sdk_loop else service(stack, scenario, key)
                results.append(ledger_outcome(sim, saved))
            rows.append((scenario, results))
    print(
        "| scenario | jobs | way | saved | requests | billable | billable per saved image | 429s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for scenario, (plain, ours) in rows:
        print(f"| {scenario.name} | {scenario.jobs} | SDK loop | {plain.row()} |")
        print(f"| | | this service | {ours.row()} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
