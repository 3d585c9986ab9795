"""Timer triggers: NCRONTAB schedules and the scheduler that fires timer functions.

NCRONTAB as the Functions timer trigger reads it: six fields
`{second} {minute} {hour} {day} {month} {day-of-week}` (five fields = no seconds, second 0);
each field `*`, a value, `a-b`, `*/n`, `a-b/n`, `a/n` or a comma list of those; months and days of
the week also by three-letter English name; day of week 0-6 with 0 = Sunday (7 also Sunday).
Day of month and day of week must BOTH match (NCrontab's rule, unlike Vixie cron's "either").
Times are UTC (WEBSITE_TIME_ZONE is not honoured: Linux Consumption/Flex ignore it too).

Scheduler rules (TimerTrigger in the WebJobs extensions): `run_on_startup` fires once when the
listener starts; with `use_monitor` (default on, off for schedules more frequent than once a
minute) the last/next occurrence is kept in a status file under the state directory and a missed
occurrence runs at start with `IsPastDue=true`; a failed run is logged and never retried.
The pure part (parsing, next occurrence, the TimerRequest JSON) has no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = [
    "CronError",
    "CronSchedule",
    "TimerScheduler",
    "timer_request_json",
]

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


class CronError(ValueError):
    """An NCRONTAB expression that cannot be read; carries the expression."""

    def __init__(self, expression: str, reason: str) -> None:
        super().__init__(f"invalid NCRONTAB schedule {expression!r}: {reason}")
        self.expression = expression


def _field(
    expression: str, text: str, low: int, high: int, names: list[str] | None
) -> frozenset[int]:
    values: set[int] = set()

    def number(token: str) -> int:
        if names is not None and token.upper() in names:
            return names.index(token.upper()) + (1 if names is _MONTHS else 0)
        if not token.isdigit():
            raise CronError(expression, f"{token!r} is not a number")
        return int(token)

    for part in text.split(","):
        if not part:
            raise CronError(expression, f"empty list item in {text!r}")
        step = 1
        has_step = "/" in part
        if has_step:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(expression, f"bad step in {text!r}")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = number(a), number(b)
        else:
            start = number(part)
            end = high if has_step else start  # `a/n` runs from a to the top, every n
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(expression, f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        fields = expression.split()
        if len(fields) == 5:
            fields = ["0", *fields]
        if len(fields) != 6:
            raise CronError(expression, f"expected 6 (or 5) fields, got {len(fields)}")
        weekdays = _field(expression, fields[5], 0, 7, _DAYS)
        return cls(
            expression=expression,
            seconds=_field(expression, fields[0], 0, 59, None),
            minutes=_field(expression, fields[1], 0, 59, None),
            hours=_field(expression, fields[2], 0, 23, None),
            days=_field(expression, fields[3], 1, 31, None),
            months=_field(expression, fields[4], 1, 12, _MONTHS),
            weekdays=frozenset(d % 7 for d in weekdays),
        )

    def _day_matches(self, t: datetime) -> bool:
        weekday = (t.weekday() + 1) % 7  # Python: Monday = 0; NCRONTAB: Sunday = 0
        return t.month in self.months and t.day in self.days and weekday in self.weekdays

    def next_after(self, after: datetime) -> datetime:
        """The first occurrence strictly after `after` (UTC, whole seconds)."""
        t = after.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        day = t.replace(hour=0, minute=0, second=0)
        first = True
        for _ in range(366 * 28):  # 28 years covers every weekday/date combination
            if self._day_matches(day):
                found = self._first_time_on(day, t if first else day)
                if found is not None:
                    return found
            day += timedelta(days=1)
            first = False
        raise CronError(self.expression, "it never fires")

    def _first_time_on(self, day: datetime, not_before: datetime) -> datetime | None:
        for h in sorted(self.hours):
            for m in sorted(self.minutes):
                for s in sorted(self.seconds):
                    candidate = day.replace(hour=h, minute=m, second=s)
                    if candidate >= not_before:
                        return candidate
        return None

    def shortest_interval(self) -> timedelta:
        """Smallest gap between two occurrences in the next day (for the use_monitor default)."""
        now = datetime(2024, 1, 1, tzinfo=UTC)
        times = [self.next_after(now)]
        for _ in range(4):
            times.append(self.next_after(times[-1]))
        return min(b - a for a, b in itertools.pairwise(times))


def _fmt(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat()


def timer_request_json(
    *, past_due: bool, last: datetime | None, next_: datetime | None, updated: datetime | None
) -> str:
    """The trigger payload the host sends the Python worker for a timer function."""
    status: dict[str, Any] | None = None
    if next_ is not None:
        status = {"Last": _fmt(last), "Next": _fmt(next_), "LastUpdated": _fmt(updated)}
    return json.dumps(
        {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status, "IsPastDue": past_due}
    )


TimerRunner = Callable[[str, str], Awaitable[None]]  # (function name, TimerRequest JSON)


@dataclass
class _Timer:
    name: str
    schedule: CronSchedule
    run_on_startup: bool
    use_monitor: bool


class TimerScheduler:
    """Fires timer functions on their schedules on the running loop (wall-clock time)."""

    def __init__(
        self,
        runner: TimerRunner,
        *,
        status_dir: Path | None = None,
        log: logging.Logger | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._runner = runner
        self._status_dir = status_dir
        self._log = log or logging.getLogger("devhost.timers")
        self._now = now
        self._timers: list[_Timer] = []
        self._tasks: list[asyncio.Task[None]] = []

    def add(
        self, name: str, schedule: str, *, run_on_startup: bool, use_monitor: bool | None
    ) -> CronSchedule:
        parsed = CronSchedule.parse(schedule)
        if use_monitor is None:
            use_monitor = parsed.shortest_interval() >= timedelta(minutes=1)
        self._timers.append(_Timer(name, parsed, run_on_startup, use_monitor))
        return parsed

    def _status_path(self, name: str) -> Path | None:
        if self._status_dir is None:
            return None
        return self._status_dir / f"{name}.status.json"

    def _read_status(self, name: str) -> dict[str, Any] | None:
        path = self._status_path(name)
        if path is None or not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            self._log.warning("timer status file %s is unreadable: ignored", path)
            return None
        return data if isinstance(data, dict) else None

    def _write_status(self, name: str, last: datetime | None, next_: datetime) -> None:
        path = self._status_path(name)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"Last": _fmt(last), "Next": _fmt(next_), "LastUpdated": _fmt(self._now())}
        path.write_text(json.dumps(body), encoding="utf-8")

    async def start(self) -> None:
        for timer in self._timers:
            self._tasks.append(asyncio.create_task(self._run(timer), name=f"timer:{timer.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _fire(self, timer: _Timer, *, past_due: bool, last: datetime | None) -> datetime:
        now = self._now()
        next_ = timer.schedule.next_after(now)
        payload = timer_request_json(past_due=past_due, last=last, next_=next_, updated=now)
        try:
            await self._runner(timer.name, payload)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The runner logs the function's own failure; no retry, as the host.
            self._log.debug("timer %s run failed", timer.name, exc_info=True)
        if timer.use_monitor:
            self._write_status(timer.name, now, timer.schedule.next_after(self._now()))
        return now

    async def _run(self, timer: _Timer) -> None:
        last: datetime | None = None
        status = self._read_status(timer.name) if timer.use_monitor else None
        if status and status.get("Next"):
            missed = datetime.fromisoformat(str(status["Next"]))
            if missed <= self._now():
                self._log.info(
                    "timer %s missed its run at %s: running it now (past due)",
                    timer.name,
                    missed.isoformat(),
                )
                last = await self._fire(timer, past_due=True, last=None)
        if timer.run_on_startup:
            last = await self._fire(timer, past_due=False, last=last)
        while True:
            due = timer.schedule.next_after(self._now())
            if timer.use_monitor:
                self._write_status(timer.name, last, due)
            delay = (due - self._now()).total_seconds()
            # Sleep in slices so a wall-clock jump never makes us oversleep by much.
            while delay > 0:
                await asyncio.sleep(min(delay, 30.0))
                delay = (due - self._now()).total_seconds()
            last = await self._fire(timer, past_due=False, last=last)
