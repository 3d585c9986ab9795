"""devhost.clock: the virtual clock jumps to a timer's fireAt at once; the system clock waits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from devhost.clock import SystemClock, VirtualClock


def test_virtual_clock_jumps_ahead_to_the_timer_without_waiting() -> None:
    clock = VirtualClock()
    target = clock.now() + timedelta(hours=1)
    loop_time = asyncio.run(_elapsed_loop_time(clock, target))
    assert clock.now() >= target
    assert loop_time < 5  # an hour of virtual time is not an hour of real time


async def _elapsed_loop_time(clock: VirtualClock, target: datetime) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await clock.sleep_until(target)
    return loop.time() - start


def test_virtual_clock_never_goes_back_for_a_past_timer() -> None:
    clock = VirtualClock(offset=timedelta(days=1))
    before = clock.now()
    asyncio.run(clock.sleep_until(before - timedelta(hours=5)))
    assert clock.now() >= before


def test_clocks_are_timezone_aware_utc() -> None:
    assert SystemClock().now().tzinfo is UTC
    assert VirtualClock().now().tzinfo is UTC


def test_system_clock_returns_at_once_for_a_past_time() -> None:
    clock = SystemClock()
    asyncio.run(asyncio.wait_for(clock.sleep_until(clock.now() - timedelta(seconds=1)), 5))
    assert clock.now().year >= 2024


def test_virtual_clock_releases_waiters_in_fire_at_order() -> None:
    clock = VirtualClock()
    base = clock.now()
    order: list[str] = []

    async def wait(label: str, hours: int) -> None:
        await clock.sleep_until(base + timedelta(hours=hours))
        order.append(label)

    async def main() -> None:
        await asyncio.gather(wait("three", 3), wait("one", 1), wait("two", 2))

    asyncio.run(main())
    assert order == ["one", "two", "three"]
    assert clock.now() >= base + timedelta(hours=3)
