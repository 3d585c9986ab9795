"""How long a generation takes, in the real service's seconds, and how a time scale shrinks it.

Every timeout and retry rule of the project is judged against these numbers, so the model is
calibrated to the field reports in docs/reference (gpt-image-2-api.md, field report B) rather than
to what is convenient:

- Azure 1024x1024 ``low``: about 22 s;
- 2048x2048 ``high``: 200-250 s;
- complex (long) prompts at 1024x1024 ``medium``: up to about 2 minutes;
- low quality, square sizes and jpeg are fastest; 4K takes more than 60 s even at ``low``.

Time grows as ``base[quality] * (megapixels / 1.048576) ** pixel_exponent``: with bases 22/45/90 s
and exponent 0.66 that gives 22 s (1024 low) and about 228 s (2048 high), then +-9 % jitter.

Field report B shows a 2048x2048 ``high`` stream with ``partial_images: 2`` succeeding behind
Azure's 60 s gateway, so the first partial must arrive well inside the first minute: partials are
spread from ``first_partial_fraction`` to ``last_partial_fraction`` of the total.

``TimeScale`` divides every wait AND every reported duration by one factor, so a scaled run shows
numbers consistent with its own clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from simulator.validation import ImageRequest

_REFERENCE_PIXELS = 1024 * 1024


@dataclass(frozen=True)
class GenerationPlan:
    """One generation's timeline, in real-service seconds from the moment the request arrived.

    ``first_byte_s``: when the service first sends anything (the first partial of a stream, else
    the whole response). ``partial_at_s``: one time per partial image that will be sent, ascending,
    all before ``total_s``; it can hold fewer entries than requested when the final image comes
    first (``LatencyParams.final_before_partials_chance``).
    """

    first_byte_s: float
    total_s: float
    partial_at_s: tuple[float, ...]


@dataclass(frozen=True)
class LatencyParams:
    """The calibration. Defaults follow the API reference; every number is a setting."""

    base_s: dict[str, float] = field(
        default_factory=lambda: {"low": 22.0, "medium": 45.0, "high": 90.0}
    )
    pixel_exponent: float = 0.66
    # Non-square sizes cost a little more ("square sizes are fastest").
    non_square_factor: float = 1.05
    format_factor: dict[str, float] = field(
        default_factory=lambda: {"png": 1.0, "webp": 1.0, "jpeg": 0.93}
    )
    # A long prompt ("complex") multiplies time by up to this factor: 45 s -> 120 s at 1024 medium.
    max_prompt_factor: float = 2.67
    prompt_chars_saturation: int = 4000
    # More images per request take longer, though they are not made one after another.
    per_extra_image_factor: float = 0.25
    per_input_image_s: float = 2.0
    jitter: float = 0.09
    first_partial_fraction: float = 0.18
    last_partial_fraction: float = 0.80
    # UNCERTAIN in the API reference: "the final image may arrive before all requested partials".
    final_before_partials_chance: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        if not 0 < self.first_partial_fraction <= self.last_partial_fraction < 1:
            raise ValueError("partial fractions must satisfy 0 < first <= last < 1")
        if not 0 <= self.final_before_partials_chance <= 1:
            raise ValueError("final_before_partials_chance must be in [0, 1]")


class LatencyModel:
    """Plans generations: ``plan(request, rng, speed=...)`` -> ``GenerationPlan``."""

    def __init__(self, params: LatencyParams | None = None) -> None:
        self.params = params or LatencyParams()

    def expected_total_s(self, request: ImageRequest) -> float:
        """The total without jitter (what the calibration promises on average)."""
        p = self.params
        base = p.base_s[request.quality]
        total: float = base * (request.pixels / _REFERENCE_PIXELS) ** p.pixel_exponent
        if request.width != request.height:
            total *= p.non_square_factor
        total *= p.format_factor.get(request.output_format, 1.0)
        saturation = min(1.0, request.prompt_chars / p.prompt_chars_saturation)
        total *= 1.0 + (p.max_prompt_factor - 1.0) * saturation
        total *= 1.0 + p.per_extra_image_factor * (request.n - 1)
        total += p.per_input_image_s * request.input_images
        return total

    def plan(
        self, request: ImageRequest, rng: random.Random, *, speed: float = 1.0
    ) -> GenerationPlan:
        """A jittered timeline. ``speed`` is the route's multiplier: 2.0 runs twice as fast."""
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        p = self.params
        total = self.expected_total_s(request) * rng.uniform(1 - p.jitter, 1 + p.jitter) / speed

        count = request.partial_images if request.stream else 0
        times: list[float] = []
        for index in range(count):
            share = index / (count - 1) if count > 1 else 0.0
            fraction = p.first_partial_fraction + share * (
                p.last_partial_fraction - p.first_partial_fraction
            )
            times.append(total * fraction)
        if times and rng.random() < p.final_before_partials_chance:
            times = times[: rng.randrange(len(times))]

        first_byte = times[0] if times else total
        return GenerationPlan(first_byte_s=first_byte, total_s=total, partial_at_s=tuple(times))


@dataclass(frozen=True)
class TimeScale:
    """``--time-scale F``: real-service seconds to the seconds a scaled run sleeps and reports."""

    factor: float = 1.0

    def __post_init__(self) -> None:
        if not self.factor > 0:
            raise ValueError(f"time scale factor must be > 0, got {self.factor}")

    def wait(self, real_s: float) -> float:
        """Seconds to actually sleep for ``real_s`` of service time."""
        return real_s / self.factor

    def report(self, real_s: float) -> float:
        """The value to put in headers and messages for ``real_s`` of service time."""
        return real_s / self.factor
