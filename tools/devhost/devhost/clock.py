"""Where the engine gets "now" and how it waits for a durable timer.

Two clocks: the wall clock, and a virtual one for tests and `--virtual-time`, on which a timer
fires at once and time jumps ahead to the timer's fireAt, so an orchestration that waits an hour
sees `context.current_utc_datetime` one hour later without anyone waiting an hour.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
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
    """Wall clock plus an offset that jumps forward whenever a timer waits for the future.

    Time keeps flowing (so created/updated times stay ordered), but `sleep_until` never waits
    for real: pending timers are released one at a time in fireAt order, and the offset moves
    so that `now()` reaches each one's fireAt as it fires. Releasing in order matters: a
    WhenAny of a 2-hour and a 1-hour timer must see the 1-hour one first.
    """

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self._offset = offset
        self._waiting: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._pump: asyncio.Task[None] | None = None

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    async def sleep_until(self, when: datetime) -> None:
        loop = asyncio.get_running_loop()
        if when <= self.now():
            await asyncio.sleep(0)
            return
        fired: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiting, (when, next(self._order), fired))
        if self._pump is None or self._pump.done() or self._pump.get_loop() is not loop:
            self._pump = loop.create_task(self._release())
        await fired

    async def _release(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            # Let work that is ready run first, so timers scheduled together are all queued
            # before the earliest of them fires.
            for _ in range(_SETTLE_ROUNDS):
                await asyncio.sleep(0)
            when, _, fired = heapq.heappop(self._waiting)
            if fired.done() or fired.get_loop() is not loop:
                continue  # cancelled, or left over from an event loop that has ended
            gap = when - self.now()
            if gap > timedelta(0):
                self._offset += gap
            fired.set_result(None)


# Loop turns the virtual clock waits before releasing the next timer.
_SETTLE_ROUNDS = 5
