"""The route's governor: when may the next attempt be sent, and who goes first. Pure rules.

One governor per route, shared by every job (the route entity holds its state). Each attempt
asks to be admitted (``admit``); the governor answers with a send time now, or with the time
the attempt is expected to be admitted and its place in the queue. The rules it keeps:

- **Limits**: the route's requests per minute, images per minute and concurrent requests. Sends
  are spread evenly, one every ``60 / requests_per_minute`` s (``burst`` at most at once; 1 by
  default), because Azure OpenAI evaluates a deployment's rate over short periods ("typically 1
  or 10 seconds", learn.microsoft.com/azure/ai-services/openai/how-to/quota, "Understanding rate
  limits"), so a burst within a minute's quota is still refused. A sliding window of a minute
  holds as well (OpenAI's and the simulator's rule). Both carry ``MARGIN`` of slack for the
  clocks in between.
- **Priority**: interactive attempts go ahead of batch work; within a priority, first queued
  goes first. An admitted attempt's send time is ``send_at`` (up to ``LEAD_S`` ahead), so that
  the time its orchestration and activity take to get going is not lost from the route's slot.
  A batch attempt's slot is not its own until it claims it in Blob, just before its send
  (rules.route_records.SlotClaim): an interactive attempt at the head of the queue is given the
  earliest batch slot not sent yet (``admit``), claims it at once, and the batch attempt that
  finds it claimed asks again, first of the batch work. Without this an interactive job asking
  just after the next slot was handed out waited that slot's lead and a whole spacing more.
- **Cool-down**: a 429 anywhere on the route stops every send for as long as the route asked
  (its retry-after), not only the job that got it. The governor hears of it from the attempt's
  report; attempts it admitted before that read the pause the attempt left in Blob
  (rules.route_records.CoolDown) before their send, and come back instead of sending.
- **Headers**: ``x-ratelimit-limit-*`` lower the configured limit when the route's own is lower
  (or set it when none is configured), until a newer answer says otherwise;
  ``x-ratelimit-remaining-*`` with their reset bound how many more sends go out before the reset,
  so the pace tightens before a 429 (another client using the same quota shows here first).
- **Slots expire**: an admitted attempt holds a concurrency slot until its report, or until its
  lease ends (a worker that died never reports), also when it runs past its expected end; the
  send itself is counted in the windows from its send time whatever happens after, unless the
  attempt comes back unsent to ask again (``unsent``).

Times are seconds since the epoch (floats); ``window_s`` is a minute of the route's time (60 s,
or 60 / IMAGE_TIME_SCALE in a scaled local run).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rules.records import as_object, reading, required
from rules.route_records import Admission, AdmitRequest, Priority, RateLimitHint, SlotClaim

# Slack on the spacing and on the window, for the clocks and the network in between.
MARGIN = 0.02
# The window's slack for a send whose real send time is known (reported): a share of the window,
# at least WINDOW_SLACK_S of wall time, for the moments from the worker's clock to the request's
# arrival (a few ms on one machine: 40 ms at most in the drains measured) and the clocks of two
# workers. Less than MARGIN, so that a send that left a little after its admitted time (a worker
# waking late) holds the tenth send after it no later than the even pace already does: with the
# window's full MARGIN on top of its real send time, each late send pushed every send after it by
# its lateness, and a drain lost the sum of them.
WINDOW_MARGIN = 0.005
WINDOW_SLACK_S = 0.05
# An admitted attempt's send time may be up to this far ahead (seconds of wall time), and at
# most half a spacing (``lead_s``), so that the ask's round trip and the activity's start (0.35 s
# at p99 on a loaded 2-core host) are not lost from the route's slot; a head that comes back late
# keeps its turn anyway. A batch slot handed out ahead can still be given to an interactive
# attempt until its holder claims it at its send time, so the lead no longer delays interactive
# work (it did when handed-out slots were final: a quarter of a spacing was the compromise).
LEAD_S = 1.0
# A batch slot is given to an interactive attempt only this long (seconds of wall time) or more
# before its time: its worker must start and claim it before the batch attempt claims it at its
# send time, which takes a Blob round trip at the least. Not more: a worker that starts quickly
# wins a slot that is 0.05-0.1 s away (at time scale 10, a 0.1 s margin left 4 of 10 interactive
# jobs a slot later; 0.03 s, 1 of 10), and one that does not costs the interactive attempt one
# ask more. An interactive attempt that lost a slot once is not given another
# (``AdmitRequest.lost_slots``): on a route whose spacing is shorter than a worker's start it
# would lose every time.
TAKE_AHEAD_S = 0.03
# A queued attempt asks again at least this often (route seconds), so its position stays fresh,
# but not more often than every REFRESH_MIN_S of wall time (a scaled local run's route seconds
# are short: a hundred waiters asking every two seconds would load the entity for nothing).
REFRESH_S = 30.0
REFRESH_MIN_S = 5.0
# The waiters at the head of the queue that ask again at least every spacing, and no more
# often than this (seconds of wall time).
HEAD = 3
HEAD_REFRESH_MIN_S = 1.0
# A waiter back this much later than it was told (seconds; more than the millisecond its
# state is stored to) came back late: at the head, it keeps its turn (``admit``).
OVERDUE_S = 0.005
# An attempt that was told to come back and did not, this long after (seconds of wall time and
# a spacing), has left (a cancelled or terminated job): it no longer holds its place.
STALE_S = 5.0
# The cool-down after a 429 that named no wait: a spacing, at least this many route seconds.
UNNAMED_COOL_DOWN_S = 10.0
# A running attempt holds its concurrency slot until it reports, even past its expected end: the
# projection frees it no sooner than this from now (wall seconds; more than LEAD_S, so the head
# of the queue is not admitted into a slot still in use but asks again LEAD_S before).
HELD_S = 2 * LEAD_S


@dataclass(frozen=True)
class Pace:
    """The route's configured limits (None: not limited), in route time."""

    requests_per_minute: int | None = None
    images_per_minute: int | None = None
    concurrency: int | None = None
    burst: int = 1
    window_s: float = 60.0
    # How long an admitted attempt may hold its concurrency slot without reporting.
    lease_s: float = 1800.0

    @property
    def limited(self) -> bool:
        return any(
            limit is not None
            for limit in (self.requests_per_minute, self.images_per_minute, self.concurrency)
        )


@dataclass(frozen=True)
class Send:
    """One admitted attempt: ``at`` is its admitted send time (the even pace is kept on these),
    ``left`` when its request really left, once its report said so (None before)."""

    job_id: str
    attempt: int
    at: float
    images: int
    left: float | None = None
    # When it was admitted, where that is after ``at`` (a head that came back late keeps its
    # turn, ``admit``): its request cannot leave before then.
    admitted: float | None = None
    # The slot's key (rules.route_records.SlotClaim), for a slot another attempt may be given:
    # a batch attempt's. None: nobody else may be given it.
    claim: str | None = None
    # The (job id, attempt, images) of the batch attempt it was given from: this attempt was
    # given that attempt's slot (``admit``), and whichever claims it first sends in it.
    taken_from: tuple[str, int, int] | None = None

    def held_from(self, late_s: float, lag_s: float | None = None) -> float:
        """From when the send holds its place in the route's window. Not reported yet: its
        admitted time plus how late this host's sends have left (``Limits.late_s``, the 95th
        percentile), since it may still be on its way. Reported: when it left, plus ``lag_s``
        (``Limits.lag_s``, the median lateness; ``late_s`` when None) for the moments between
        the worker's clock and the request's arrival, which a busy host lengthens as it
        lengthens a worker's wake-up. Not the 95th percentile there: it is a send's own stall
        (a late worker), already in its ``left``, and counting it again on every send of the
        window would slow every window by it."""
        if self.left is None:
            return max(self.at, self.admitted or self.at) + late_s
        return max(self.at, self.left) + (late_s if lag_s is None else lag_s)

    def held_until(self, current: Limits) -> float:
        """Until when the send holds its place in the route's window, as counted here: from
        ``held_from``, a window and its slack; a reported send with the smaller slack of a known
        send time (``WINDOW_MARGIN``)."""
        window = current.window_s
        if self.left is None:
            return self.held_from(current.late_s) + window * (1 + MARGIN)
        slack = min(window * MARGIN, max(window * WINDOW_MARGIN, WINDOW_SLACK_S))
        return self.held_from(current.late_s, current.lag_s) + window + slack

    def to_json(self) -> list[Any]:
        """A row (a route remembers two windows of sends): job id, attempt, at, images, left,
        then admitted, claim and taken_from when any is set."""
        left = None if self.left is None else round(self.left, 3)
        row: list[Any] = [self.job_id, self.attempt, round(self.at, 3), self.images, left]
        admitted = None if self.admitted is None else round(self.admitted, 3)
        taken = None if self.taken_from is None else list(self.taken_from)
        tail = [admitted, self.claim, taken]
        while tail and tail[-1] is None:
            tail.pop()
        return [*row, *tail]

    @classmethod
    def from_json(cls, value: Any) -> Send:
        job_id, attempt, at, images, *rest = value
        rest = [*rest, None, None, None, None][:4]
        left, admitted, claim, taken = rest
        return cls(
            str(job_id),
            int(attempt),
            float(at),
            int(images),
            None if left is None else float(left),
            None if admitted is None else float(admitted),
            None if claim is None else str(claim),
            None if taken is None else (str(taken[0]), int(taken[1]), int(taken[2])),
        )

    def given_from(self, job_id: str, attempt: int) -> bool:
        """Whether this send was given from that attempt's slot."""
        return self.taken_from is not None and self.taken_from[:2] == (job_id, attempt)


@dataclass(frozen=True)
class Slot:
    """An admitted attempt still running: it holds one of the route's concurrent requests."""

    job_id: str
    attempt: int
    admitted_at: float
    send_at: float
    expected_end: float
    expires_at: float
    priority: Priority
    # The slot's claim (``Send.claim``, ``Send.taken_from`` set), for an attempt asking again
    # after its send has left the route's memory.
    claim: SlotClaim | None = None

    def to_json(self) -> dict[str, Any]:
        row = {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "admitted_at": round(self.admitted_at, 3),
            "send_at": round(self.send_at, 3),
            "expected_end": round(self.expected_end, 3),
            "expires_at": round(self.expires_at, 3),
            "priority": self.priority.value,
        }
        return row if self.claim is None else {**row, "claim": self.claim.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Slot:
        return cls(
            job_id=data["job_id"],
            attempt=int(data["attempt"]),
            admitted_at=float(data["admitted_at"]),
            send_at=float(data["send_at"]),
            expected_end=float(data["expected_end"]),
            expires_at=float(data["expires_at"]),
            priority=Priority(data.get("priority", Priority.INTERACTIVE.value)),
            claim=SlotClaim.from_json(data["claim"]) if data.get("claim") else None,
        )


@dataclass(frozen=True)
class Waiter:
    """A queued attempt: its place (priority, then ``queued_since``) and when it said it would
    ask again (``back_at``)."""

    job_id: str
    attempt: int
    priority: Priority
    images: int
    queued_since: float
    back_at: float
    expected_s: float
    batch_id: str | None = None

    @property
    def order(self) -> tuple[int, float, str]:
        return (self.priority.rank, self.queued_since, self.job_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "priority": self.priority.value,
            "images": self.images,
            "queued_since": round(self.queued_since, 3),
            "back_at": round(self.back_at, 3),
            "expected_s": round(self.expected_s, 3),
            "batch_id": self.batch_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Waiter:
        return cls(
            job_id=data["job_id"],
            attempt=int(data["attempt"]),
            priority=Priority(data["priority"]),
            images=int(data["images"]),
            queued_since=float(data["queued_since"]),
            back_at=float(data["back_at"]),
            expected_s=float(data.get("expected_s", 0.0)),
            batch_id=data.get("batch_id"),
        )


@dataclass(frozen=True)
class PacerState:
    """What the governor remembers: recent sends, running slots, the queue, the cool-down and
    the route's last word on its limits."""

    sends: tuple[Send, ...] = ()
    slots: tuple[Slot, ...] = ()
    queue: tuple[Waiter, ...] = ()
    cool_until: float = 0.0
    cool_reason: str | None = None
    hint: RateLimitHint | None = None
    # Counters since the entity was created.
    admitted: int = 0
    expired_slots: int = 0
    # Batch attempts' slots given to interactive attempts (``admit``).
    taken: int = 0
    # How late recent sends left after their admitted time (seconds, newest last).
    late: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "sends": [send.to_json() for send in self.sends],
            "slots": [slot.to_json() for slot in self.slots],
            "queue": [waiter.to_json() for waiter in self.queue],
            "cool_until": round(self.cool_until, 3),
            "cool_reason": self.cool_reason,
            "hint": self.hint.to_json() if self.hint else None,
            "admitted": self.admitted,
            "expired_slots": self.expired_slots,
            "taken": self.taken,
            "late": [round(v, 3) for v in self.late],
        }

    @classmethod
    @reading("route pacer")
    def from_json(cls, value: object) -> PacerState:
        data = as_object(value, "route pacer")
        hint = data.get("hint")
        return cls(
            sends=tuple(Send.from_json(s) for s in required(data, "sends", "route pacer")),
            slots=tuple(Slot.from_json(s) for s in data.get("slots", ())),
            queue=tuple(Waiter.from_json(w) for w in data.get("queue", ())),
            cool_until=float(data.get("cool_until", 0.0)),
            cool_reason=data.get("cool_reason"),
            hint=RateLimitHint.from_json(hint) if hint else None,
            admitted=int(data.get("admitted", 0)),
            expired_slots=int(data.get("expired_slots", 0)),
            taken=int(data.get("taken", 0)),
            late=tuple(float(v) for v in data.get("late", ())),
        )


@dataclass(frozen=True)
class Limits:
    """The limits in force: the configured ones, lowered (or set) by the route's headers."""

    requests_per_minute: int | None
    images_per_minute: int | None
    concurrency: int | None
    burst: int
    window_s: float
    # How late the route's sends have left after their admitted time (the 95th percentile of
    # the recent ones, seconds): a send not reported yet counts in the window that much longer,
    # so that a late worker's send cannot make the next window's first send a 429.
    late_s: float = 0.0
    # The median of the same: how much longer a reported send counts (``Send.held_from``).
    lag_s: float = 0.0

    @property
    def held_s(self) -> float:
        """How long a send holds its place in the route's window, as counted here."""
        return self.window_s * (1 + MARGIN) + self.late_s

    @property
    def spacing_s(self) -> float | None:
        """Seconds between two sends at an even pace; None when no rate is limited."""
        per_minute = self.requests_per_minute or self.images_per_minute
        return self.window_s / per_minute * (1 + MARGIN) if per_minute else None


def limits(pace: Pace, hint: RateLimitHint | None) -> Limits:
    rpm, ipm = pace.requests_per_minute, pace.images_per_minute
    if hint is not None:
        rpm = _lower(rpm, hint.limit_requests)
        ipm = _lower(ipm, hint.limit_images)
    return Limits(rpm, ipm, pace.concurrency, max(1, pace.burst), pace.window_s)


# Late sends remembered, and the fewest that say anything.
LATE_SAMPLES = 50
LATE_MIN_SAMPLES = 3


def state_limits(state: PacerState, pace: Pace) -> Limits:
    """The limits in force for ``state``: its route's headers and its workers' lateness."""
    late = sorted(state.late)
    known = len(late) >= LATE_MIN_SAMPLES
    slack = late[int(0.95 * (len(late) - 1))] if known else 0.0
    lag = late[int(0.5 * (len(late) - 1))] if known else 0.0
    # A worker late by more than a quarter of a window is a restart, not a lag to plan for.
    cap = pace.window_s / 4
    return replace(limits(pace, state.hint), late_s=min(slack, cap), lag_s=min(lag, cap))


def _lower(configured: int | None, reported: int | None) -> int | None:
    if reported is None or reported < 1:
        return configured
    return reported if configured is None else min(configured, reported)


@dataclass
class _Plan:
    """A projection of the sends to come: the sends so far plus each waiter at its time."""

    # Admitted send times (the even pace), when each holds its place in the route's window (the
    # header rule) and until when (the window and image rules), each with the images sent,
    # sorted.
    sends: list[tuple[float, int]]
    held: list[tuple[float, int]]
    until: list[tuple[float, int]]
    ends: list[float]
    times: dict[str, float] = field(default_factory=dict)


def tidy(state: PacerState, pace: Pace, now: float) -> PacerState:
    """Forget what no longer counts: sends older than a window (with margin), slots past their
    lease (a worker that died), waiters that did not come back when they said."""
    # Two windows: a route's headers arrive with the attempt's report, up to a window after
    # they were seen, and are judged against the sends of that moment (``with_hint``).
    horizon = now - 2 * state_limits(state, pace).held_s
    late = state_limits(state, pace).late_s
    sends = tuple(send for send in state.sends if send.held_from(late) > horizon)
    live = tuple(slot for slot in state.slots if slot.expires_at > now)
    spacing = limits(pace, state.hint).spacing_s or 0.0
    queue = tuple(w for w in state.queue if now <= w.back_at + max(STALE_S, 2 * spacing))
    hint = state.hint
    if hint is not None and hint.until <= now:
        # Past the reset the remaining count says nothing more; the limits the route reported
        # still hold (until a newer answer says otherwise).
        reported = hint.limit_requests is not None or hint.limit_images is not None
        hint = replace(hint, remaining=None) if reported else None
    return replace(
        state,
        sends=sends,
        slots=live,
        queue=queue,
        hint=hint,
        expired_slots=state.expired_slots + len(state.slots) - len(live),
    )


def ordered(queue: Iterable[Waiter]) -> list[Waiter]:
    return sorted(queue, key=lambda waiter: waiter.order)


def schedule(
    state: PacerState,
    pace: Pace,
    now: float,
    *,
    through: str | None = None,
    head_from: float | None = None,
) -> dict[str, float]:
    """When each queued attempt is expected to be admitted (job id -> epoch s), in queue order:
    each after the one before it, at the first moment every limit allows. ``through``: stop
    after that job (the ones behind it cannot move it). ``head_from``: the first in the queue
    may have a time as early as this, before ``now`` (``admit``: a waiter back late keeps its
    turn)."""
    current = state_limits(state, pace)
    plan = _Plan(
        sends=sorted((send.at, send.images) for send in state.sends),
        held=sorted(
            (send.held_from(current.late_s, current.lag_s), send.images) for send in state.sends
        ),
        until=sorted((send.held_until(current), send.images) for send in state.sends),
        ends=sorted(_held_until(slot, now) for slot in state.slots),
    )
    earliest = now if head_from is None else min(now, head_from)
    for waiter in ordered(state.queue):
        at = _earliest(plan, current, state, waiter.images, max(earliest, state.cool_until))
        plan.times[waiter.job_id] = at
        plan.sends.append((at, waiter.images))
        plan.sends.sort()
        plan.held.append((at + current.late_s, waiter.images))
        plan.held.sort()
        plan.until.append((at + current.late_s + current.window_s * (1 + MARGIN), waiter.images))
        plan.until.sort()
        plan.ends.append(at + waiter.expected_s)
        plan.ends.sort()
        earliest = at
        if waiter.job_id == through:
            break
    return plan.times


def _held_until(slot: Slot, now: float) -> float:
    """When a running attempt's slot is projected to be free: its expected end, but never
    before it has had the time to report (its lease ends it at the latest)."""
    return min(slot.expires_at, max(slot.expected_end, now + HELD_S))


def _earliest(plan: _Plan, current: Limits, state: PacerState, images: int, start: float) -> float:
    at = start
    for _ in range(64):  # each rule only moves ``at`` later; a few rounds settle it
        later = max(
            _by_requests(plan, current, at),
            _by_images(plan, current, at, images),
            _by_concurrency(plan, current, at),
            _by_hint(plan, state.hint, current, at),
        )
        if later <= at:
            return at
        at = later
    return at


def _by_requests(plan: _Plan, current: Limits, at: float) -> float:
    spacing = current.spacing_s
    # Every send counts, those admitted ahead of their send time too (sorted, oldest first). The
    # even pace is kept on admitted times, so a late worker does not push every send after it;
    # the window, on when each send holds its place there.
    stamps = [stamp for stamp, _ in plan.sends]
    later = at
    if spacing is not None and len(stamps) >= current.burst:
        later = max(later, stamps[-current.burst] + current.burst * spacing)
    rpm = current.requests_per_minute
    until = [stamp for stamp, _ in plan.until]
    if rpm is not None and len(until) >= rpm:
        later = max(later, until[-rpm])
    return later


def _by_images(plan: _Plan, current: Limits, at: float, images: int) -> float:
    ipm = current.images_per_minute
    if ipm is None:
        return at
    held = [(until, count) for until, count in plan.until if at < until]
    used = sum(count for _, count in held)
    if used + min(images, ipm) <= ipm:
        return at
    # Wait until enough of the oldest sends have left the window.
    for until, count in held:
        used -= count
        if used + min(images, ipm) <= ipm:
            return until
    return at  # not reached: the window empties when the last send leaves it


def _by_concurrency(plan: _Plan, current: Limits, at: float) -> float:
    if current.concurrency is None:
        return at
    running = [end for end in plan.ends if end > at]
    if len(running) < current.concurrency:
        return at
    return running[len(running) - current.concurrency]


def _by_hint(plan: _Plan, hint: RateLimitHint | None, current: Limits, at: float) -> float:
    """At most the route's remaining count of sends after it spoke, until its reset (a count
    ``with_hint`` kept: less than this governor's own sends explain)."""
    if hint is None or at >= hint.until or hint.remaining is None:
        return at
    since = sum(1 for stamp, _ in plan.held if hint.observed_at < stamp)
    return at if since < hint.remaining else hint.until


def admit(
    state: PacerState,
    pace: Pace,
    request: AdmitRequest,
    now: float,
    *,
    expected_s: float,
) -> tuple[PacerState, Admission]:
    """Admit ``request`` (send at ``send_at``, at most ``LEAD_S`` from now) or queue it with
    its place and expected admission time. ``expected_s`` is how long its attempt is expected
    to run (for the concurrency projection and the ETA). Asking again is safe: an attempt
    already admitted gets its admission back."""
    state = tidy(state, pace, now)
    key = (request.job_id, request.attempt)
    held = next((s for s in state.sends if (s.job_id, s.attempt) == key), None)
    if held is not None:
        return state, _admitted(held.at, held)
    # Its send has left the window, but it has not reported yet: still the same admission.
    running = next((s for s in state.slots if (s.job_id, s.attempt) == key), None)
    if running is not None:
        return state, replace(_admitted(running.send_at), claim=running.claim)
    queued_since = min(
        [request.queued_since] + [w.queued_since for w in state.queue if w.job_id == request.job_id]
    )
    told = next((w.back_at for w in state.queue if w.job_id == request.job_id), None)
    others = tuple(w for w in state.queue if w.job_id != request.job_id)
    waiter = Waiter(
        job_id=request.job_id,
        attempt=request.attempt,
        priority=request.priority,
        images=request.images,
        queued_since=queued_since,
        back_at=now,
        expected_s=expected_s,
        batch_id=request.batch_id,
    )
    state = replace(state, queue=(*others, waiter))
    position = [w.job_id for w in ordered(state.queue)].index(request.job_id)
    spacing = limits(pace, state.hint).spacing_s
    head_from = None
    if position == 0 and told is not None and told < now - OVERDUE_S and spacing is not None:
        # The head came back later than it was told (a timer, an episode, the entity's queue
        # on a busy host): it keeps its turn on the even pace, up to half a spacing back, so
        # that the lateness of one ask does not push every send after it. Its request leaves
        # as soon as it can, as a late worker's does (the window counts it from when it left).
        head_from = max(told, now - spacing / 2)
    times = schedule(state, pace, now, through=request.job_id, head_from=head_from)
    at = times[request.job_id]
    lead = lead_s(pace, state.hint)
    if position == 0 and request.priority is Priority.INTERACTIVE and not request.lost_slots:
        batch_send = _takeable(state, request, now, before=at)
        if batch_send is not None:
            return _take(state, pace, request, batch_send, now, expected_s=expected_s)
    if at <= now + lead and (position == 0 or at <= now):
        send = Send(
            request.job_id,
            request.attempt,
            at,
            request.images,
            admitted=now if at < now else None,
            claim=slot_key(request.job_id, request.attempt, at, state.admitted + 1)
            if request.priority is Priority.BATCH
            else None,
        )
        slot = _running(request, send, pace, now, expected_s=expected_s)
        state = replace(
            state,
            sends=(*state.sends, send),
            slots=(*(s for s in state.slots if s.job_id != request.job_id), slot),
            queue=others,
            admitted=state.admitted + 1,
        )
        return state, _admitted(send.at, send)
    # Never now: a lead before its time, or at its time when those ahead of it go first (by
    # then they have been admitted, or are late and no longer hold it back).
    back_at = at - lead if at - lead > now else at
    back_at = min(back_at, now + max(pace.window_s * REFRESH_S / 60.0, REFRESH_MIN_S))
    if position < HEAD and spacing is not None and state.cool_until <= now:
        # The first few ask again at least every spacing (a second at the least): a projection
        # can only go stale towards earlier (a send reported sooner than it was held for, a
        # waiter ahead gone), and nobody can wake a waiter that sleeps past its slot. Not in a
        # cool-down: its end is known and nothing brings it closer.
        back_at = min(back_at, now + max(spacing, lead, HEAD_REFRESH_MIN_S))
    state = replace(state, queue=(*others, replace(waiter, back_at=back_at)))
    return state, Admission(
        admitted=False,
        position=position + 1,
        start_at=at,
        ask_again_at=back_at,
        reason=_why_waiting(state, pace, now),
    )


def lead_s(pace: Pace, hint: RateLimitHint | None = None) -> float:
    """How far ahead of its send time an attempt is admitted: ``LEAD_S``, at most half the
    route's spacing."""
    spacing = limits(pace, hint).spacing_s
    return LEAD_S if spacing is None else min(LEAD_S, spacing / 2)


def _admitted(send_at: float, send: Send | None = None) -> Admission:
    claim = None
    if send is not None and send.claim is not None:
        claim = SlotClaim(send.claim, first=send.taken_from is not None)
    return Admission(
        admitted=True, position=0, start_at=send_at, ask_again_at=None, reason=None, claim=claim
    )


def slot_key(job_id: str, attempt: int, at: float, admission: int) -> str:
    """The key of a slot another attempt may be given (rules.route_records.SlotClaim): its first
    holder, its send time in ms and the route's count of admissions (``PacerState.admitted``),
    so that each admission is a slot of its own, also one asked for again at the same time."""
    return f"{job_id}.{attempt}.{round(at * 1000)}.{admission}"


def _takeable(state: PacerState, request: AdmitRequest, now: float, before: float) -> Send | None:
    """The earliest batch attempt's send that an interactive attempt may be given: not sent
    yet as far as the governor knows (its time still to come: its holder claims it then), not
    already given away, for at least as many images, and earlier than ``before`` (when the
    interactive attempt would be sent otherwise). Whether its holder has claimed it after all,
    the claim decides: nothing here can double a send."""
    batch = {(s.job_id, s.attempt) for s in state.slots if s.priority is Priority.BATCH}
    found = [
        send
        for send in state.sends
        if send.claim is not None
        and send.taken_from is None
        and send.left is None
        and (send.job_id, send.attempt) in batch
        and max(now + TAKE_AHEAD_S, state.cool_until) < send.at < before
        and send.images >= request.images
    ]
    return min(found, key=lambda send: send.at, default=None)


def _take(
    state: PacerState,
    pace: Pace,
    request: AdmitRequest,
    send: Send,
    now: float,
    *,
    expected_s: float,
) -> tuple[PacerState, Admission]:
    """Give ``send``'s slot to the interactive ``request``: the send and the concurrency slot are
    its own now (the route's counts do not change: one send, one running request), its holder
    finds the slot claimed and asks again (first of the batch work: it keeps its place)."""
    holder = (send.job_id, send.attempt)
    given = replace(
        send,
        job_id=request.job_id,
        attempt=request.attempt,
        images=request.images,
        taken_from=(*holder, send.images),
    )
    slot = _running(request, given, pace, now, expected_s=expected_s)
    state = replace(
        state,
        sends=tuple(given if (s.job_id, s.attempt) == holder else s for s in state.sends),
        slots=(
            *(
                s
                for s in state.slots
                if (s.job_id, s.attempt) != holder and s.job_id != request.job_id
            ),
            slot,
        ),
        queue=tuple(w for w in state.queue if w.job_id != request.job_id),
        admitted=state.admitted + 1,
        taken=state.taken + 1,
    )
    return state, _admitted(given.at, given)


def _why_waiting(state: PacerState, pace: Pace, now: float) -> str:
    if state.cool_until > now:
        return state.cool_reason or "the route asked for a pause (429)"
    current = limits(pace, state.hint)
    if current.concurrency is not None and len(state.slots) >= current.concurrency:
        return f"the route's {current.concurrency} concurrent requests are in use"
    if state.hint is not None and state.hint.remaining is not None:
        return "the route's rate-limit headers say its quota is nearly used"
    if current.requests_per_minute or current.images_per_minute:
        rate = (
            f"{current.requests_per_minute} requests/min"
            if current.requests_per_minute
            else f"{current.images_per_minute} images/min"
        )
        return f"paced at the route's {rate}"
    return "waiting for the route"


def release(state: PacerState, job_id: str, attempt: int | None = None) -> PacerState:
    """The attempt has ended (or the job left): its slot and its place in the queue go."""
    return replace(
        state,
        slots=tuple(
            s
            for s in state.slots
            if not (s.job_id == job_id and (attempt is None or s.attempt == attempt))
        ),
        queue=tuple(w for w in state.queue if w.job_id != job_id),
    )


def not_sent(state: PacerState, job_id: str, attempt: int, *, slot_taken: bool) -> PacerState:
    """The attempt ended without sending; ``slot_taken``: because another attempt claimed its
    slot first (FailureKind.SLOT_TAKEN). Where a slot was given from one attempt to another:

    - an attempt given a batch attempt's slot did not send in it (its claim came too late, or it
      failed or stopped before the send): the send and its running request are the batch
      attempt's again, which claims the slot at its time; and nobody is given it again;
    - an attempt whose slot was handed back to it found it claimed: the attempt it had been
      given to claimed it and did not send, so nobody sends in it;
    - a batch attempt whose slot was given away did not send: the slot is the other's alone.
    """
    key = (job_id, attempt)
    own = next((s for s in state.sends if (s.job_id, s.attempt) == key), None)
    if own is not None and own.taken_from is not None:
        return _hand_back(state, own)
    if own is not None and slot_taken:
        return unsent(state, job_id, attempt)
    return replace(
        state,
        sends=tuple(
            replace(s, taken_from=None) if s.given_from(job_id, attempt) else s for s in state.sends
        ),
    )


def _running(
    request: AdmitRequest, send: Send, pace: Pace, now: float, *, expected_s: float
) -> Slot:
    """The concurrency slot of ``request``, admitted now to send as ``send``."""
    return Slot(
        job_id=request.job_id,
        attempt=request.attempt,
        admitted_at=now,
        send_at=send.at,
        expected_end=send.at + expected_s,
        expires_at=send.at + pace.lease_s,
        priority=request.priority,
        claim=_admitted(send.at, send).claim,
    )


def _hand_back(state: PacerState, send: Send) -> PacerState:
    """``send``, given from a batch attempt, is that attempt's again, and so is its running
    request's slot."""
    assert send.taken_from is not None
    holder, attempt, images = send.taken_from
    key = (send.job_id, send.attempt)
    back = replace(send, job_id=holder, attempt=attempt, images=images, claim=None, taken_from=None)
    return replace(
        state,
        sends=tuple(back if (s.job_id, s.attempt) == key else s for s in state.sends),
        slots=tuple(
            replace(s, job_id=holder, attempt=attempt, priority=Priority.BATCH, claim=None)
            if (s.job_id, s.attempt) == key
            else s
            for s in state.slots
        ),
    )


def unsent(state: PacerState, job_id: str, attempt: int) -> PacerState:
    """The admitted attempt ended without sending (it came too late for its slot, or into a
    429's pause): its send never went out, so it no longer counts, and asking again gets a
    slot of its own instead of the same one back (``admit`` hands a held send back)."""
    return replace(
        state,
        sends=tuple(s for s in state.sends if (s.job_id, s.attempt) != (job_id, attempt)),
    )


def sent_at(state: PacerState, job_id: str, attempt: int, at: float) -> PacerState:
    """The attempt's request really left at ``at``: it holds its place in the route's window
    from then (a late worker's send later than it was admitted for; an early one never
    happens), while the even pace stays on its admitted time; how late it was is remembered
    (``state_limits``)."""
    send = next((s for s in state.sends if (s.job_id, s.attempt) == (job_id, attempt)), None)
    given = next((s for s in state.sends if s.given_from(job_id, attempt)), None)
    if send is None and given is not None:
        # A batch attempt sent in the slot it had been admitted to, which was given to an
        # interactive attempt whose claim came too late (and has not said so yet): the send is
        # the batch attempt's, and the interactive attempt's running request never will be.
        assert given.taken_from is not None
        images = given.taken_from[2]
        own = replace(
            given, job_id=job_id, attempt=attempt, images=images, claim=None, taken_from=None
        )
        return replace(
            state,
            sends=tuple(replace(own, left=at) if s is given else s for s in state.sends),
            slots=tuple(
                s for s in state.slots if (s.job_id, s.attempt) != (given.job_id, given.attempt)
            ),
        )
    late = state.late
    # A slot given to another attempt is sent as soon as that attempt's worker gets there: its
    # lateness is the hand-over's, not the host's.
    if send is not None and send.taken_from is None:
        late = (*late, max(0.0, at - send.at))[-LATE_SAMPLES:]
    return replace(
        state,
        sends=tuple(
            replace(s, left=at) if (s.job_id, s.attempt) == (job_id, attempt) else s
            for s in state.sends
        ),
        late=late,
    )


def cool_down(state: PacerState, until: float, reason: str) -> PacerState:
    """Stop every send until ``until`` (a 429's wait)."""
    if until <= state.cool_until:
        return state
    return replace(state, cool_until=until, cool_reason=reason)


def with_hint(
    state: PacerState, hint: RateLimitHint, pace: Pace, *, counted_at: float | None = None
) -> PacerState:
    """The route's newest word on its limits replaces an older one. Its remaining count is
    kept only when it is less than this governor's own sends at that moment explain (someone
    else uses the quota); otherwise it says nothing the window rule does not already keep, and
    holding sends until its reset would stall the route for a whole window. Judged now, while
    the sends of that moment are still remembered.

    ``counted_at``: when the route counted (the request's send: a route counts a request when
    it arrives, and its headers come back with the first byte, seconds later for an image);
    ``hint.observed_at`` when not known. Counting our sends up to the headers' arrival instead
    would slide the window past the oldest send the route still counted, and a full window of
    our own (remaining 0) would read as someone else's use: a whole window lost."""
    if state.hint is not None and state.hint.observed_at > hint.observed_at:
        return state
    current = limits(pace, hint)
    limit = current.requests_per_minute or current.images_per_minute
    if hint.remaining is not None and limit is not None:
        window = pace.window_s * (1 + MARGIN) + state_limits(state, pace).late_s
        at = hint.observed_at if counted_at is None else min(counted_at, hint.observed_at)
        # The request itself is counted (the route's count includes it), also when its worker's
        # clock put its send a little before its admitted time.
        upto = at + pace.window_s * MARGIN
        ours = sum(1 for s in state.sends if at - window < s.held_from(0.0) <= upto)
        if hint.remaining >= limit - ours:
            hint = replace(hint, remaining=None)
    return replace(state, hint=hint)
