"""The route's rate-limit headers, read: durations, numbers and the hint the governor uses.

OpenAI sends ``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests`` and
``x-ratelimit-reset-requests`` (a Go-style duration: ``12ms``, ``1s``, ``6m0s``) on every answer;
Azure OpenAI sends limit and remaining only, and at times ``-1`` for all of them
(docs/reference/gpt-image-2-api.md, "Headers"). The ``-images`` names follow the same pattern for
an images-per-minute window (the simulator sends them; UNCERTAIN for the real services).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from rules.route_records import RateLimitHint

# A number (``1``, ``1.5``, ``.5``, ``1.``; never ``1.2.3``, which float() refuses) and its unit.
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|h|m|s)")


def number(text: str | None) -> float | None:
    """A finite number, or None (``inf`` and ``nan`` are not waits)."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_duration(text: str | None) -> float | None:
    """OpenAI's reset durations: ``12ms``, ``1s``, ``6m0s``, ``1.5s``; None for -1 or junk."""
    if not text:
        return None
    text = text.strip()
    plain = number(text)
    if plain is not None:
        return plain if plain >= 0 else None
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(v + u for v, u in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(value) * scale[unit] for value, unit in parts)


def _count(headers: Mapping[str, str], name: str) -> int | None:
    value = number(headers.get(name))
    # -1 is Azure's "not said"; a count is a whole number from 0.
    return int(value) if value is not None and value >= 0 and value == int(value) else None


def hint_from_headers(
    headers: Mapping[str, str], observed_at: float, *, window_s: float
) -> RateLimitHint | None:
    """What the headers of an answer seen at ``observed_at`` (epoch s) say about the route's
    limits; None when they say nothing usable. Without a reset header the remaining count is
    held for a window (``window_s``): the most cautious reading."""
    lowered = {name.lower(): value for name, value in headers.items()}
    limit_requests = _count(lowered, "x-ratelimit-limit-requests")
    limit_images = _count(lowered, "x-ratelimit-limit-images")
    remaining_requests = _count(lowered, "x-ratelimit-remaining-requests")
    remaining_images = _count(lowered, "x-ratelimit-remaining-images")
    if all(
        value is None
        for value in (limit_requests, limit_images, remaining_requests, remaining_images)
    ):
        return None
    reset = parse_duration(lowered.get("x-ratelimit-reset-requests"))
    remaining = remaining_requests
    if remaining_images is not None:
        remaining = remaining_images if remaining is None else min(remaining, remaining_images)
    return RateLimitHint(
        observed_at=observed_at,
        until=observed_at + (reset if reset is not None else window_s),
        remaining=remaining,
        limit_requests=limit_requests or None,
        limit_images=limit_images or None,
    )
