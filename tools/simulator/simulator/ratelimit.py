"""Request and image windows per route or deployment, and the headers they show, in each style.

A client's retry policy reads ``x-ratelimit-*`` and ``retry-after`` headers, so the simulator has to
send them as the real services do (docs/reference/gpt-image-2-api.md, "Headers"):

- ``openai``: ``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``,
  ``x-ratelimit-reset-requests`` (durations in Go's style: ``12ms``, ``1s``, ``6m0s``); a denial
  also carries ``retry-after`` (whole seconds, rounded up) and ``retry-after-ms``;
- ``azure``: limit and remaining only, and on denial ``retry-after`` / ``retry-after-ms``;
- ``azure_minus_one``: every ``x-ratelimit-*`` value is ``-1`` and a denial carries no retry hint
  at all, as Azure has been seen to do.

The image window's headers are named ``x-ratelimit-*-images``. UNCERTAIN: the reference confirms the
``-requests`` and ``-tokens`` names only; gpt-image-2's limit is counted in images per minute and
the simulator has no token window, so it does not invent ``-tokens`` values.

Time: ``clock`` returns service seconds (under a time scale F the server passes a clock that runs F
times faster than the wall clock), windows are in service seconds, and every duration shown to the
client goes through ``report`` (``TimeScale.report``), so a scaled run sees waits that match its own
wall clock.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from simulator.errors import RateWindow, format_duration

__all__ = ["RateDecision", "RateLimitRule", "RateLimiter"]

HeaderStyle = Literal["openai", "azure", "azure_minus_one"]
_STYLES = ("openai", "azure", "azure_minus_one")


@dataclass(frozen=True)
class RateLimitRule:
    """Limits per window; None disables that window (one of the two must be set)."""

    requests_per_minute: int | None = None
    images_per_minute: int | None = None
    header_style: HeaderStyle = "openai"
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if self.header_style not in _STYLES:
            raise ValueError(f"header_style must be one of {_STYLES}, got {self.header_style!r}")
        for name in ("requests_per_minute", "images_per_minute"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if self.requests_per_minute is None and self.images_per_minute is None:
            raise ValueError(
                "set requests_per_minute, images_per_minute or both "
                "(for no limit, set rate_limit itself to null)"
            )
        if not self.window_s > 0:
            raise ValueError(f"window_s must be > 0, got {self.window_s}")


@dataclass(frozen=True)
class RateDecision:
    """The verdict for one request. ``retry_after_s`` is already a reported (scaled) value.

    On a denial, ``window`` names the window that denied it (the one with the longest wait when
    both do), with its ``limit``, ``used`` (what the window holds now) and ``requested`` (1 for
    requests, the request's n for images): what the 429 message reports. ``wait_s`` is the
    reported wait even where the header style gives the client none.
    """

    allowed: bool
    headers: dict[str, str] = field(default_factory=dict)
    retry_after_s: float | None = None
    window: RateWindow | None = None
    limit: int | None = None
    used: int | None = None
    requested: int | None = None
    wait_s: float | None = None


class RateLimiter:
    """A sliding window of accepted requests (denied ones do not count). Thread-safe."""

    def __init__(
        self,
        rule: RateLimitRule,
        clock: Callable[[], float],
        *,
        report: Callable[[float], float] = lambda seconds: seconds,
    ) -> None:
        self.rule = rule
        self._clock = clock
        self._report = report
        self._lock = threading.Lock()
        self._accepted: deque[tuple[float, int]] = deque()

    def acquire(self, images: int) -> RateDecision:
        """Count one request for ``images`` images if both windows allow it."""
        if images < 1:
            raise ValueError(f"a request makes at least one image, got {images}")
        with self._lock:
            now = self._clock()
            self._expire(now)
            denial = self._denial(now, images)
            if denial is None:
                self._accepted.append((now, images))
            headers = self._headers(now)
        if denial is None:
            return RateDecision(True, headers, None)
        window, wait, limit, used, requested = denial
        shown = self._report(wait)
        retry_after: float | None = None
        if self.rule.header_style != "azure_minus_one":
            headers["retry-after"] = str(max(1, math.ceil(shown)))
            headers["retry-after-ms"] = str(max(1, math.ceil(shown * 1000)))
            retry_after = shown
        return RateDecision(
            False,
            headers,
            retry_after,
            window=window,
            limit=limit,
            used=used,
            requested=requested,
            wait_s=shown,
        )

    def reset(self) -> None:
        with self._lock:
            self._accepted.clear()

    # --- window arithmetic --------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        while self._accepted and self._accepted[0][0] <= now - self.rule.window_s:
            self._accepted.popleft()

    def _denial(self, now: float, images: int) -> tuple[RateWindow, float, int, int, int] | None:
        """None when the request fits now; else (window, service seconds to wait, limit, used,
        requested) of the window that holds it back longest."""
        denials: list[tuple[float, RateWindow, int, int, int]] = []
        rpm = self.rule.requests_per_minute
        if rpm is not None and len(self._accepted) + 1 > rpm:
            blocking = self._accepted[len(self._accepted) - rpm]
            wait = blocking[0] + self.rule.window_s - now
            denials.append((wait, "requests", rpm, len(self._accepted), 1))
        ipm = self.rule.images_per_minute
        if ipm is not None:
            used = sum(count for _, count in self._accepted)
            if used + images > ipm:
                # A request for more images than the window holds never fits: wait a window.
                wait = self.rule.window_s
                freed = 0
                for stamp, count in self._accepted:
                    freed += count
                    if images <= ipm and used - freed + images <= ipm:
                        wait = stamp + self.rule.window_s - now
                        break
                denials.append((wait, "images", ipm, used, images))
        if not denials:
            return None
        wait, window, limit, used, requested = max(denials, key=lambda denial: denial[0])
        return window, max(wait, 0.0), limit, used, requested

    def _headers(self, now: float) -> dict[str, str]:
        style = self.rule.header_style
        headers: dict[str, str] = {}
        windows = (
            ("requests", self.rule.requests_per_minute, len(self._accepted)),
            ("images", self.rule.images_per_minute, sum(c for _, c in self._accepted)),
        )
        newest = self._accepted[-1][0] if self._accepted else None
        for suffix, limit, used in windows:
            if limit is None:
                continue
            if style == "azure_minus_one":
                headers[f"x-ratelimit-limit-{suffix}"] = "-1"
                headers[f"x-ratelimit-remaining-{suffix}"] = "-1"
                continue
            headers[f"x-ratelimit-limit-{suffix}"] = str(limit)
            headers[f"x-ratelimit-remaining-{suffix}"] = str(max(0, limit - used))
            if style == "openai":
                until_full = 0.0 if newest is None else newest + self.rule.window_s - now
                headers[f"x-ratelimit-reset-{suffix}"] = format_duration(
                    self._report(max(0.0, until_full))
                )
        return headers
