"""Overhead: when a poller (100 ms) and a client that honours Retry-After see the stored image,
over a direct official-SDK call of the same shape, for 1024x1024 low, 2048x2048 high and
3840x2160 high.

    python -m bench.overhead [--rounds 3] [--warmup 6]
        [--shapes 1024x1024:low:1:azure,2048x2048:high:25:openai,3840x2160:high:25:openai]
    (make bench-overhead)

Each shape is one run of ``bench.retry_after`` (a stack of its own: Azurite, the simulator,
devhost) with its own time scale: 1024x1024 low in real time (a generation of ~23 s), the two
large shapes at time scale 25 (2048x2048 high ~230 s and 3840x2160 high ~370 s of the route's
time become ~9 s and ~15 s), since in real time three rounds of them alone would take half an
hour. The direct call meets the same simulator at the same scale, so the ratio compares like with
like; what does not scale is the service's own time (its HTTP, durable and Blob round trips, the
image's decode, check and upload) and Retry-After's whole seconds, both of which weigh 25 times
more against a scaled generation than they would in real time: a scaled figure is an upper
bound of the real one. The large shapes go on the OpenAI route (``/v1``), which has no gateway:
behind Azure's 60 s gateway a streamed 3840x2160 high request is silent too long for a direct
call to survive (the service would send it unstreamed).

A measurement, not a test; results in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench import retry_after
from bench.retry_after import TARGET, RetryAfterResult
from bench.stats import table

DEFAULT_SHAPES = "1024x1024:low:1:azure,2048x2048:high:25:openai,3840x2160:high:25:openai"


@dataclass(frozen=True)
class Shape:
    size: str
    quality: str
    time_scale: float
    route: str

    @classmethod
    def parse(cls, text: str) -> Shape:
        """``SIZE:QUALITY:TIME_SCALE:ROUTE``, e.g. ``2048x2048:high:25:openai``."""
        parts = text.split(":")
        if len(parts) != 4:
            raise ValueError(f"a shape is SIZE:QUALITY:TIME_SCALE:ROUTE, not {text!r}")
        size, quality, scale, route = parts
        if route not in ("azure", "openai"):
            raise ValueError(f"route must be azure or openai, not {route!r}")
        return cls(size, quality, float(scale), route)

    def label(self) -> str:
        return f"{self.size} {self.quality}"


def parse_shapes(text: str) -> list[Shape]:
    return [Shape.parse(part) for part in text.split(",") if part.strip()]


@dataclass(frozen=True)
class Options:
    rounds: int = 3
    warmup: int = 6
    shapes: tuple[Shape, ...] = tuple(parse_shapes(DEFAULT_SHAPES))

    def of(self, shape: Shape) -> retry_after.Options:
        return retry_after.Options(
            rounds=self.rounds,
            warmup=self.warmup,
            size=shape.size,
            quality=shape.quality,
            time_scale=shape.time_scale,
            route=shape.route,
        )


@dataclass
class OverheadResult:
    options: Options
    results: list[RetryAfterResult]

    def rows(self) -> list[list[str]]:
        out = []
        for r in self.results:
            o = r.options
            seen_b, seen_c = r.seen_after_final_s("retry-after"), r.seen_after_final_s("100 ms")
            out.append(
                [
                    f"{o.size} {o.quality}",
                    f"{o.time_scale:g}",
                    o.route,
                    str(len(r.rounds)),
                    f"{r.direct_s():.2f}",
                    f"{r.took_s('retry-after'):.2f}",
                    f"{r.ratio('retry-after'):.3f}x / {r.paired_ratio('retry-after'):.3f}x",
                    f"{r.took_s('100 ms'):.2f}",
                    f"{r.ratio('100 ms'):.3f}x / {r.paired_ratio('100 ms'):.3f}x",
                    "n/a" if seen_b is None else f"{seen_b:.2f}",
                    "n/a" if seen_c is None else f"{seen_c:.2f}",
                    "met" if met(r) else "MISSED",
                ]
            )
        return out

    def lines(self) -> list[str]:
        first = self.results[0] if self.results else None
        out = [
            "overhead"
            + (f", {first.date}, {first.machine()}" if first is not None else "")
            + f"; {self.options.rounds} rounds of three jobs at once per shape (a direct SDK "
            f"call, a Retry-After client, a 100 ms poller), after {self.options.warmup} warm-up "
            "jobs; partial_images 1, streamed; no rate limit",
            "",
        ]
        out += table(
            [
                "shape",
                "time scale",
                "route",
                "rounds",
                "(a) direct s",
                "(b) Retry-After s",
                "(b)/(a) medians / paired, jitter out",
                "(c) 100 ms s",
                "(c)/(a) medians / paired, jitter out",
                "(b) seen after final s",
                "(c) seen after final s",
                f"(b) <= {TARGET:g}x",
            ],
            self.rows(),
        )
        out += [
            "",
            f"target: (b) within {TARGET:g}x of (a), the paired ratio with the simulator's jitter "
            "taken out (medians: the ratio of the medians, jitter in)",
        ]
        for r in self.results:
            out += ["", f"{r.options.shape()}, time scale {r.options.time_scale:g}:"]
            out += r.where_the_time_goes()[1:]
        return out


def met(r: RetryAfterResult) -> bool:
    return r.paired_ratio("retry-after") <= TARGET


def run(options: Options | None = None, *, log: Callable[[str], None] = print) -> OverheadResult:
    o = options or Options()
    results = []
    for shape in o.shapes:
        log(f"overhead: {shape.label()} at time scale {shape.time_scale:g} ...")
        results.append(retry_after.run(o.of(shape), log=log))
    return OverheadResult(o, results)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__)
    p.add_argument("--rounds", type=int, default=Options.rounds, help="rounds per shape")
    p.add_argument("--warmup", type=int, default=Options.warmup, help="warm-up jobs per shape")
    p.add_argument("--shapes", default=DEFAULT_SHAPES, help="SIZE:QUALITY:TIME_SCALE:ROUTE,...")
    args = p.parse_args(argv)
    options = Options(args.rounds, args.warmup, tuple(parse_shapes(args.shapes)))
    result = run(options, log=lambda line: print(line, file=sys.stderr, flush=True))
    for line in result.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
