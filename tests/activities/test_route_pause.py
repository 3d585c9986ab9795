"""An attempt and its route's governor: a 429's pause left for every attempt of the route, an
admitted attempt that does not send into it, and an attempt sent back to the governor that
leaves no record, so that its next run sends (tests/e2e/test_route_model.py, end to end)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace

import httpx
import pytest

from rules.outcome import FailureKind
from rules.route_records import CoolDown
from storage.protocol import progress_name, route_cool_down_name
from tests.fakes import InMemoryStore

from .test_generate import attempt, job, png, serving, stream_of

PAUSE = route_cool_down_name("azure")


def counting() -> tuple[list[httpx.Request], Callable[[httpx.Request], httpx.Response]]:
    """A route that serves an image to every request, and the requests it received."""
    seen: list[httpx.Request] = []
    route = serving(stream_of(png(1024, 1024)))

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return route(request)

    return seen, handler


def refused(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        429,
        headers={"retry-after-ms": "30000"},
        json={"error": {"type": "requests", "code": "rate_limit_exceeded", "message": "x"}},
    )


def put_pause(store: InMemoryStore, until: float) -> None:
    pause = CoolDown(route="azure", until=until, reason="the route answered 429")
    store.put(name=PAUSE, data=json.dumps(pause.to_json()).encode(), content_type="j")


def test_an_attempt_that_came_too_late_leaves_no_record_and_its_next_run_sends():
    store = InMemoryStore()
    seen, route = counting()
    now = time.time()

    late = attempt(replace(job(), send_at=now - 10, send_by=now - 5), store, route)
    again = attempt(replace(job(), send_at=now, send_by=now + 60), store, route)

    assert late.failure is not None
    assert late.failure.kind is FailureKind.ADMISSION_EXPIRED
    assert late.failure.sent is False
    # The orchestrator runs the same attempt again: a record of this run would answer it.
    assert again.ok, again.failure
    assert len(seen) == 1


def test_a_429_leaves_the_routes_pause_and_an_admitted_attempt_does_not_send_into_it():
    store = InMemoryStore()
    before = time.time()
    result = attempt(job(), store, refused)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.RATE_LIMITED
    raw = store.get(name=PAUSE)
    assert raw is not None
    pause = CoolDown.from_json(raw)
    assert pause.route == "azure"
    assert before + 30 <= pause.until <= time.time() + 30

    # Another job, admitted to go now by a governor that had not heard of the 429 yet.
    seen, route = counting()
    other = replace(job(), job_id="job-2", send_at=time.time(), send_by=time.time() + 60)
    held = attempt(other, store, route)
    assert held.failure is not None
    assert held.failure.kind is FailureKind.ADMISSION_EXPIRED
    assert held.failure.sent is False
    assert "429" in held.failure.message
    assert seen == []
    assert store.get(name=progress_name("job-2", 1)) is None

    # Once the pause is over, the same attempt is sent.
    put_pause(store, time.time() - 1)
    assert attempt(other, store, route).ok
    assert len(seen) == 1


def test_a_shorter_pause_does_not_cut_a_longer_one():
    store = InMemoryStore()
    later = time.time() + 600
    put_pause(store, later)
    attempt(job(), store, refused)
    raw = store.get(name=PAUSE)
    assert raw is not None
    assert CoolDown.from_json(raw).until == pytest.approx(later, abs=0.001)


@pytest.mark.parametrize("marker", [b"not json", b'{"v": 99, "route": "azure"}'])
def test_a_pause_that_cannot_be_read_leaves_the_admission_standing(marker: bytes):
    store = InMemoryStore()
    store.put(name=PAUSE, data=marker, content_type="j")
    seen, route = counting()
    assert attempt(job(), store, route).ok
    assert len(seen) == 1
