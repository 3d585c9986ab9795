"""Where the engine gets "now" and how it waits for a durable timer.

Two clocks: the wall clock, and a virtual one for tests and `--virtual-time`, on which a timer
fires at once and time jumps ahead to the timer's fireAt, so an orchestration that waits an hour
sees `context.current_utc_datetime` one hour later without anyone waiting an hour.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current UTC time (timezone-aware)."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return once `now()` >= `when`."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        # Sleep in bounded slices so a clock change or a very long timer never oversleeps.
        while True:
            remaining = (when - self.now()).total_seconds()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 60.0))


class VirtualClock:
    """Wall clock plus an offset that jumps forward whenever someone waits for the future.

    Time keeps flowing (so created/updated times stay ordered), but `sleep_until` never waits:
    it moves the offset so that `now()` is at least `when`, then returns.
    """

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self._offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    async def sleep_until(self, when: datetime) -> None:
        gap = when - self.now()
        if gap > timedelta(0):
            self._offset += gap
        # Yield once so that a timer firing "at once" still lets other ready work run first.
        await asyncio.sleep(0)
