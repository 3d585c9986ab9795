"""What the simulator's pictures cost to make: per size and format, and for 50 streams at once.

Run: ``.venv/bin/python -m simulator.bench_images [--repeat 3]``. Prints a Markdown table for
docs/simulator-images.md. Figures are CPU milliseconds of one render with a cold cache (median of
``--repeat`` different prompts), the size of the encoded file, and then the whole CPU cost of 50
concurrent 2048x2048 PNG streams with two partial images each (50 different prompts, so nothing
comes from the cache), rendered on a thread pool as the server does.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from simulator.images import ImageRenderer
from simulator.validation import ImageRequest, parse_generation

CASES: tuple[tuple[str, str, str], ...] = (
    ("1024x1024", "png", "opaque"),
    ("1024x1024", "jpeg", "opaque"),
    ("1024x1024", "webp", "opaque"),
    ("2048x2048", "png", "opaque"),
    ("2048x2048", "png", "transparent"),
    ("2048x2048", "jpeg", "opaque"),
    ("2048x2048", "webp", "opaque"),
    ("3840x2160", "png", "opaque"),
    ("3840x2160", "jpeg", "opaque"),
    ("3840x2160", "webp", "opaque"),
)


def _request(prompt: str, size: str, fmt: str, background: str) -> ImageRequest:
    body = {
        "prompt": prompt,
        "size": size,
        "output_format": fmt,
        "background": background,
        "quality": "high",
        "stream": True,
        "partial_images": 2,
    }
    return parse_generation(body, owner="openai", model="gpt-image-2", models={"gpt-image-2"})


def _cpu_ms(action: object) -> float:
    assert callable(action)
    start = time.process_time()
    action()
    return (time.process_time() - start) * 1000


def per_size(repeat: int) -> list[str]:
    rows = [
        "| size | format | background | final (CPU ms) | partial (CPU ms) | cached (ms) | bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, fmt, background in CASES:
        finals, partials, hits = [], [], []
        length = 0
        for attempt in range(repeat):
            renderer = ImageRenderer()
            req = _request(f"bench prompt {attempt}", size, fmt, background)
            finals.append(_cpu_ms(lambda r=renderer, q=req: r.final(q, 0)))
            partials.append(_cpu_ms(lambda r=renderer, q=req: r.partial(q, 0, 1)))
            start = time.perf_counter()
            length = len(renderer.final(req, 0))
            hits.append((time.perf_counter() - start) * 1000)
        rows.append(
            f"| {size} | {fmt} | {background} | {statistics.median(finals):.0f} | "
            f"{statistics.median(partials):.0f} | {statistics.median(hits):.3f} | "
            f"{length / 1e6:.2f} MB |"
        )
    return rows


def fifty_streams(workers: int) -> list[str]:
    renderer = ImageRenderer()
    requests = [_request(f"stream {i}", "2048x2048", "png", "opaque") for i in range(50)]

    def one_stream(req: ImageRequest) -> int:
        sizes = [len(renderer.partial(req, 0, k)) for k in range(req.partial_images)]
        return sum(sizes) + len(renderer.final(req, 0))

    cpu_start, wall_start = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        total_bytes = sum(pool.map(one_stream, requests))
    cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    stats = renderer.stats()
    return [
        f"50 concurrent 2048x2048 PNG streams, 2 partials each, {workers} render threads: "
        f"{cpu:.1f} s CPU, {wall:.1f} s wall, {total_bytes / 1e6:.0f} MB encoded, "
        f"cache {stats.entries} entries / {stats.bytes / 2**20:.0f} MiB (bounded at 256 MiB).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    for line in [*per_size(args.repeat), "", *fifty_streams(args.workers)]:
        print(line)


if __name__ == "__main__":
    main()
