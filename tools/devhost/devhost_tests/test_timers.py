"""NCRONTAB schedules, the TimerRequest payload and the scheduler's start-up rules."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

from devhost.timers import CronError, CronSchedule, TimerScheduler, timer_request_json

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)  # a Wednesday


def nxt(expr: str, after: datetime = T0) -> datetime:
    return CronSchedule.parse(expr).next_after(after)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("*/15 * * * * *", T0 + timedelta(seconds=15)),
        ("0 */5 * * * *", T0 + timedelta(minutes=5)),
        ("0 30 9 * * *", datetime(2024, 5, 2, 9, 30, tzinfo=UTC)),
        ("0 0 10 * * *", datetime(2024, 5, 2, 10, 0, tzinfo=UTC)),  # strictly after
        ("0 0 12 * * MON-FRI", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("0 0 12 * * SAT", datetime(2024, 5, 4, 12, tzinfo=UTC)),
        ("0 0 0 1 JAN *", datetime(2025, 1, 1, tzinfo=UTC)),
        ("0 0 0 29 2 *", datetime(2028, 2, 29, tzinfo=UTC)),
        ("5,10 0 11 * * *", datetime(2024, 5, 1, 11, 0, 5, tzinfo=UTC)),
        ("0 10/20 * * * *", T0 + timedelta(minutes=10)),
        ("0 0 12 * * 0", datetime(2024, 5, 5, 12, tzinfo=UTC)),  # 0 = Sunday
        ("0 0 12 * * 7", datetime(2024, 5, 5, 12, tzinfo=UTC)),  # 7 = Sunday too
        ("30 11 * * *", datetime(2024, 5, 1, 11, 30, tzinfo=UTC)),  # five fields: no seconds
    ],
)
def test_next_occurrence(expr, expected):
    assert nxt(expr) == expected


def test_day_of_month_and_day_of_week_must_both_match():
    # The 13th that is a Friday: September 2024.
    assert nxt("0 0 0 13 * FRI") == datetime(2024, 9, 13, tzinfo=UTC)


@pytest.mark.parametrize(
    "expr", ["* * * *", "61 * * * * *", "0 0 0 31 2 *", "a * * * * *", "*/0 * * * * *"]
)
def test_bad_schedules_are_refused_naming_the_expression(expr):
    with pytest.raises(CronError, match="NCRONTAB"):
        nxt(expr)


def test_the_timer_request_json_decodes_with_the_workers_converter():
    payload = timer_request_json(past_due=True, last=None, next_=T0, updated=T0)
    data = json.loads(payload)
    assert data["Schedule"] == {"AdjustForDST": True}
    assert data["ScheduleStatus"]["Next"].startswith("2024-05-01T10:00:00")
    request = TimerRequestConverter.decode(
        meta.Datum(type="json", value=payload), trigger_metadata=None
    )
    assert isinstance(request, func.TimerRequest)
    assert request.past_due is True


def run_scheduler(scheduler: TimerScheduler, until: asyncio.Event) -> None:
    async def main() -> None:
        await scheduler.start()
        await asyncio.wait_for(until.wait(), 10)
        await scheduler.stop()

    asyncio.run(main())


def test_run_on_startup_fires_once_at_start_not_past_due():
    seen: list[dict[str, object]] = []
    done = asyncio.Event()

    async def runner(name: str, payload: str) -> None:
        seen.append({"name": name, **json.loads(payload)})
        done.set()

    scheduler = TimerScheduler(runner)
    scheduler.add("daily", "0 0 3 * * *", run_on_startup=True, use_monitor=None)
    run_scheduler(scheduler, done)
    assert [(s["name"], s["IsPastDue"]) for s in seen] == [("daily", False)]


def test_a_missed_occurrence_runs_at_start_past_due_with_the_monitor(tmp_path):
    (tmp_path / "daily.status.json").write_text(
        json.dumps(
            {"Last": None, "Next": (T0 - timedelta(days=1)).isoformat(), "LastUpdated": None}
        )
    )
    seen: list[bool] = []
    done = asyncio.Event()

    async def runner(name: str, payload: str) -> None:
        seen.append(json.loads(payload)["IsPastDue"])
        done.set()

    scheduler = TimerScheduler(runner, status_dir=tmp_path, now=lambda: T0)
    scheduler.add("daily", "0 0 3 * * *", run_on_startup=False, use_monitor=True)
    run_scheduler(scheduler, done)
    assert seen == [True]
    status = json.loads((tmp_path / "daily.status.json").read_text())
    assert status["Next"].startswith("2024-05-02T03:00:00")


def test_the_monitor_is_off_by_default_for_schedules_faster_than_a_minute():
    async def runner(name: str, payload: str) -> None:
        return None

    scheduler = TimerScheduler(runner)
    scheduler.add("fast", "*/10 * * * * *", run_on_startup=False, use_monitor=None)
    scheduler.add("slow", "0 */5 * * * *", run_on_startup=False, use_monitor=None)
    assert [t.use_monitor for t in scheduler._timers] == [False, True]


def test_a_failing_timer_is_not_retried():
    calls: list[str] = []
    done = asyncio.Event()

    async def runner(name: str, payload: str) -> None:
        calls.append(name)
        done.set()
        raise RuntimeError("boom")

    scheduler = TimerScheduler(runner)
    scheduler.add("daily", "0 0 3 * * *", run_on_startup=True, use_monitor=False)
    run_scheduler(scheduler, done)
    assert calls == ["daily"]
