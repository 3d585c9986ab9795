"""A simulated clock for the route governor's tests: attempts that ask to be sent, come back
exactly when they are told, and report when they end. No sleeps, no wall clock: every moment is
a number on the event queue.

``Drain.run`` drives rules.route_model (the entity's operations) the way the orchestrators will:
an attempt asks at its arrival, waits for ``ask_again_at`` when queued, sends at ``start_at``
when admitted and, with a duration, reports its end. An admission with a slot claim
(rules.route_records.SlotClaim) sends only if its claim comes first, as the activity's does: a
batch attempt claims at its send time, an attempt given another's slot ``claim_delay_s`` after
its admission (its worker's start); the loser reports ``slot_taken`` and asks again. Each
admitted attempt also asks once more at once (the answer must be the same admission: asking is
idempotent), and with ``through_json`` the state is stored and read back as JSON after every
operation, as the entity's is.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rules import route_model
from rules.pacing import REFRESH_MIN_S, REFRESH_S, Pace
from rules.route_model import RouteState
from rules.route_records import Admission, AdmitRequest, AttemptReport, Priority
from rules.route_stats import calibrated

SHAPE = "gpt-image-2/1mp/low/png/plain"
# Float noise allowed on a limit (seconds); a store rounds to the millisecond.
EPS = 1e-6
CALIBRATED = calibrated(20.0, first_partial_share=None)


def ask(
    job_id: str,
    queued_since: float,
    *,
    priority: Priority = Priority.BATCH,
    images: int = 1,
    attempt: int = 1,
    shape: str = SHAPE,
    total_s: float = 20.0,
    lost_slots: int = 0,
) -> AdmitRequest:
    return AdmitRequest(
        job_id=job_id,
        attempt=attempt,
        priority=priority,
        images=images,
        shape=shape,
        calibrated=calibrated(total_s, first_partial_share=None),
        queued_since=queued_since,
        lost_slots=lost_slots,
    )


def saved(job_id: str, sent_at: float, total_s: float, **extra: object) -> AttemptReport:
    values: dict[str, object] = {
        "job_id": job_id,
        "attempt": 1,
        "shape": SHAPE,
        "failure_kind": None,
        "sent_at": sent_at,
        "total_s": total_s,
        "ended_at": sent_at + total_s,
    }
    values.update(extra)
    return AttemptReport(**values)  # type: ignore[arg-type]


def stored(state: RouteState) -> RouteState:
    """The state as the entity keeps it: written as JSON text and read back; the round trip is
    a fixed point (what is read back writes the same JSON)."""
    written = state.to_json()
    back = RouteState.from_json(json.loads(json.dumps(written)))
    assert back.to_json() == written
    return back


@dataclass(frozen=True)
class Attempt:
    """One attempt of the simulation: it first asks at ``arrives_at``; with ``runs_s`` it
    reports that long after its send (saved), else it never reports."""

    job_id: str
    arrives_at: float = 0.0
    priority: Priority = Priority.BATCH
    images: int = 1
    runs_s: float | None = None
    expected_s: float = 20.0

    def request(self, lost_slots: int = 0) -> AdmitRequest:
        return ask(
            self.job_id,
            self.arrives_at,
            priority=self.priority,
            images=self.images,
            total_s=self.expected_s,
            lost_slots=lost_slots,
        )


@dataclass(frozen=True)
class Asked:
    """One answer the route gave: when, to whom, and the state it answered from."""

    at: float
    job_id: str
    answer: Admission


# An event of the run: a test's own operation on the state at a moment (a 429's report, ...).
Event = Callable[[RouteState, float], RouteState]


@dataclass
class Drain:
    pace: Pace
    through_json: bool = False
    # Seconds before ``start_at`` a queued attempt asks again, instead of at ``ask_again_at``.
    lead_s: float | None = None
    # Seconds from an admission to the claim of a slot given from another attempt.
    claim_delay_s: float = 0.0
    state: RouteState = field(default_factory=RouteState)
    sends: dict[str, float] = field(default_factory=dict)
    ends: dict[str, float] = field(default_factory=dict)
    log: list[Asked] = field(default_factory=list)
    # Slot key -> the job whose claim came first; and the attempts that lost one.
    claims: dict[str, str] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)

    def run(
        self,
        attempts: Sequence[Attempt],
        events: Sequence[tuple[float, Event]] = (),
        max_asks: int = 50_000,
    ) -> Drain:
        queue: list[tuple[float, int, str, object]] = []
        for seq, attempt in enumerate(attempts):
            heapq.heappush(queue, (attempt.arrives_at, seq, "ask", attempt))
        for seq, (at, event) in enumerate(events, start=len(attempts)):
            heapq.heappush(queue, (at, seq, "event", event))
        asks = 0
        while queue:
            now, seq, kind, item = heapq.heappop(queue)
            if kind == "event":
                assert callable(item)
                self._store(item(self.state, now))
                continue
            if kind == "claim":
                assert isinstance(item, tuple)
                attempt, answer = item
                assert answer.claim is not None
                holder = self.claims.setdefault(answer.claim.key, attempt.job_id)
                if holder != attempt.job_id:  # not sent: it asks again, keeping its place
                    self.lost.append(attempt.job_id)
                    report = replace(
                        saved(attempt.job_id, 0.0, 0.0),
                        failure_kind="slot_taken",
                        sent_at=None,
                        total_s=None,
                        ended_at=now,
                    )
                    self._store(route_model.on_report(self.state, self.pace, report, now))
                    heapq.heappush(queue, (now, seq, "ask", attempt))
                    continue
                self._sent(attempt, max(now, answer.start_at), queue, seq)
                continue
            assert isinstance(item, Attempt)
            if kind == "report":
                report = saved(item.job_id, self.sends[item.job_id], item.runs_s or 0.0)
                self.ends[item.job_id] = now
                self._store(route_model.on_report(self.state, self.pace, report, now))
                continue
            asks += 1
            assert asks <= max_asks, "the drain does not end"
            answer = self._ask(item, now)
            if answer.admitted:
                assert item.job_id not in self.sends, f"{item.job_id} admitted twice"
                assert answer.start_at >= now
                assert answer.ask_again_at is None
                again = self._ask(item, now)
                assert again.admitted
                assert abs(again.start_at - answer.start_at) <= 5e-4  # stored to the ms
                assert again.claim == answer.claim
                if answer.claim is None:
                    self._sent(item, answer.start_at, queue, seq)
                else:
                    claim_at = now + self.claim_delay_s if answer.claim.first else answer.start_at
                    heapq.heappush(queue, (claim_at, seq, "claim", (item, answer)))
                continue
            assert answer.ask_again_at is not None
            assert now < answer.ask_again_at <= answer.start_at  # never asked to spin
            refresh = max(self.pace.window_s * REFRESH_S / 60, REFRESH_MIN_S)
            assert answer.ask_again_at <= now + refresh + 1e-9
            assert answer.position >= 1
            back = answer.ask_again_at
            if self.lead_s is not None:
                back = max(now, answer.start_at - self.lead_s)
            heapq.heappush(queue, (back, seq, "ask", item))
        return self

    def _sent(self, attempt: Attempt, at: float, queue: list[Any], seq: int) -> None:
        assert attempt.job_id not in self.sends, f"{attempt.job_id} sent twice"
        self.sends[attempt.job_id] = at
        if attempt.runs_s is not None:
            heapq.heappush(queue, (at + attempt.runs_s, seq, "report", attempt))

    def _ask(self, attempt: Attempt, now: float) -> Admission:
        request = attempt.request(lost_slots=self.lost.count(attempt.job_id))
        state, answer = route_model.on_admit(self.state, self.pace, request, now)
        self._store(state)
        self.log.append(Asked(now, attempt.job_id, answer))
        return answer

    def _store(self, state: RouteState) -> None:
        self.state = stored(state) if self.through_json else state

    @property
    def times(self) -> list[float]:
        return sorted(self.sends.values())


def most_in_a_window(times: list[float], window: float, weights: list[int] | None = None) -> int:
    """The most sends (or images) any half-open window of ``window`` seconds holds."""
    pairs = sorted(zip(times, weights or [1] * len(times), strict=True))
    stamps = [stamp for stamp, _ in pairs]
    most = 0
    for i, start in enumerate(stamps):
        end = bisect.bisect_left(stamps, start + window - EPS)
        most = max(most, sum(weight for _, weight in pairs[i:end]))
    return most


@functools.cache
def all_at_once(pace: Pace, count: int, *, through_json: bool = False) -> Drain:
    """``count`` batch attempts asking at 0 (job-000, job-001, ...), drained; run once per
    test session (read it, never change it)."""
    attempts = [Attempt(f"job-{i:03d}") for i in range(count)]
    return Drain(pace, through_json=through_json).run(attempts)
