"""The route's governor (rules.pacing), on a simulated clock: a drain of a hundred attempts keeps
every window and the spacing, interactive work goes first, bursts, images per minute and
concurrency hold, a waiter that never comes back stops blocking, and the state's small
operations (tidy, release, sent_at, cool_down, with_hint, limits) do what they say. Limits are
written out here, not taken from the code under test."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import pacing
from rules.pacing import (
    LEAD_S,
    MARGIN,
    REFRESH_S,
    STALE_S,
    WINDOW_MARGIN,
    WINDOW_SLACK_S,
    Pace,
    PacerState,
    Send,
    Slot,
    Waiter,
)
from rules.records import RecordUnreadable
from rules.route_records import Admission, Priority, RateLimitHint

from .route_clock import EPS, Attempt, Drain, all_at_once, ask, most_in_a_window

RPM10 = Pace(requests_per_minute=10, window_s=60.0, burst=1)
SPACING = 60.0 / 10 * 1.02  # a minute's ten sends, spread evenly, with 2% slack
WINDOW = 60.0 * 1.02


def admit(
    state: PacerState,
    pace: Pace,
    job_id: str,
    now: float,
    *,
    since: float | None = None,
    expected_s: float = 20.0,
    **extra: object,
) -> tuple[PacerState, Admission]:
    request = ask(job_id, now if since is None else since, **extra)  # type: ignore[arg-type]
    return pacing.admit(state, pace, request, now, expected_s=expected_s)


def test_the_constants_are_the_documented_ones():
    assert MARGIN == 0.02
    assert LEAD_S == 1.0
    assert pacing.limits(RPM10, None).spacing_s == pytest.approx(SPACING)


# --- a drain -------------------------------------------------------------------------------


@pytest.mark.parametrize("lead_s", [None, 0.5], ids=["at-ask_again_at", "at-start_at-minus-lead"])
def test_a_hundred_asking_at_once_drain_at_the_pace(lead_s):
    if lead_s is None:
        drain = all_at_once(RPM10, 100)
    else:
        drain = Drain(RPM10, lead_s=lead_s).run([Attempt(f"job-{i:03d}") for i in range(100)])
    times = drain.times
    assert sorted(drain.sends) == [f"job-{i:03d}" for i in range(100)]  # each exactly once
    assert most_in_a_window(times, WINDOW) <= 10
    assert most_in_a_window(times, 60.0 + EPS) <= 10  # the route's own minute, strictly
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= SPACING - EPS
    assert times[0] == 0.0
    assert times[-1] == pytest.approx(99 * 6 * 1.02, rel=0.01)
    # First queued, first sent.
    assert [job for job, _ in sorted(drain.sends.items(), key=lambda kv: kv[1])] == sorted(
        drain.sends
    )
    assert drain.state.pacer.admitted == 100
    assert drain.state.pacer.queue == ()


def test_a_queued_attempt_is_told_its_place_and_a_time_to_come_back():
    state = PacerState()
    for i in range(4):
        state, answer = admit(state, RPM10, f"job-{i:02d}", 0.0)
    assert answer.admitted is False
    assert answer.position == 3
    assert answer.start_at == pytest.approx(3 * SPACING)
    # At the head of the queue, it asks again at least every spacing (pacing.HEAD).
    assert answer.ask_again_at == pytest.approx(min(3 * SPACING - LEAD_S, SPACING))
    assert answer.reason == "paced at the route's 10 requests/min"
    # Far back in the queue, it still comes back within REFRESH_S to keep its place fresh.
    for i in range(4, 20):
        state, answer = admit(state, RPM10, f"job-{i:02d}", 0.0)
    assert answer.start_at == pytest.approx(19 * SPACING)
    assert answer.ask_again_at == pytest.approx(REFRESH_S)


def test_a_waiter_behind_one_due_now_is_told_its_time_never_now():
    """Two may go at once (burst 2) and both are due within LEAD_S; the second in line asks
    first. It may not go ahead, and "ask again now" would have it spin: it is told its time."""
    pace = Pace(requests_per_minute=10, burst=2)
    state, _ = admit(PacerState(), pace, "x", 0.0)
    state, _ = admit(state, pace, "y", 0.0)
    state, first = admit(state, pace, "first", 1.0)
    state, second = admit(state, pace, "second", 1.0)
    due = 2 * SPACING
    assert [first.start_at, second.start_at] == pytest.approx([due, due])
    assert second.ask_again_at is not None
    now = due - 0.5  # both due within the lead; the second in line asks first
    state, second = admit(state, pace, "second", now, since=1.0)
    assert (second.admitted, second.position) == (False, 2)
    assert second.ask_again_at is not None
    assert now < second.ask_again_at <= second.start_at
    state, first = admit(state, pace, "first", now, since=1.0)
    assert first.admitted
    state, second = admit(state, pace, "second", second.start_at, since=1.0)
    assert second.admitted
    assert second.start_at == pytest.approx(due)


# --- priority ------------------------------------------------------------------------------


def interactive_amid_batch(t: float, batch: int = 50) -> tuple[Drain, float]:
    """``batch`` batch attempts drain from 0; an interactive one asks at ``t``. Returns the run
    and the next free spacing slot at ``t`` (after the last send admitted before it asked)."""
    attempts = [Attempt(f"b-{i:03d}") for i in range(batch)]
    attempts.append(Attempt("interactive", arrives_at=t, priority=Priority.INTERACTIVE))
    drain = Drain(RPM10).run(attempts)
    first = next(i for i, asked in enumerate(drain.log) if asked.job_id == "interactive")
    before = [asked.answer.start_at for asked in drain.log[:first] if asked.answer.admitted]
    return drain, max(t, max(before) + SPACING)


def check_interactive_goes_first(t: float) -> None:
    drain, next_free = interactive_amid_batch(t)
    sent = drain.sends["interactive"]
    assert t <= sent <= next_free + EPS
    # The slot right after t may already be promised to a batch attempt (admitted up to LEAD_S
    # ahead): it is given to the interactive one, which claims it first (rules.route_records.
    # SlotClaim), so the interactive attempt waits at most a spacing, and TAKE_AHEAD_S when the
    # batch attempt's send is too close to be claimed first.
    assert sent <= t + SPACING + pacing.TAKE_AHEAD_S + EPS
    waiting = [job for job, at in drain.sends.items() if job != "interactive" and at > t + LEAD_S]
    assert waiting, "the batch was still draining"
    assert all(drain.sends[job] > sent for job in waiting)
    assert most_in_a_window(drain.times, WINDOW) <= 10


@pytest.mark.parametrize("t", [0.0, 0.5, 5.0, 5.5, SPACING, 37.0, 100.3, 250.9])
def test_an_interactive_attempt_goes_ahead_of_the_queued_batch(t):
    check_interactive_goes_first(t)


@settings(max_examples=10, deadline=None)
@given(st.floats(min_value=0.0, max_value=240.0))
def test_an_interactive_attempt_never_waits_behind_batch_work(t):
    check_interactive_goes_first(t)


def test_within_a_priority_first_queued_goes_first():
    state = PacerState()
    state, _ = admit(state, RPM10, "first", 0.0)
    state, late = admit(state, RPM10, "queued-late", 2.0, since=2.0)
    state, early = admit(state, RPM10, "queued-early", 3.0, since=1.0)  # its place from before
    state, late = admit(state, RPM10, "queued-late", 4.0, since=2.0)
    assert (early.position, late.position) == (1, 2)
    assert early.start_at < late.start_at


# --- burst, images per minute, concurrency -------------------------------------------------


def test_a_burst_of_ten_goes_at_once_and_the_eleventh_waits_a_window():
    pace = replace(RPM10, burst=10)
    drain = Drain(pace).run([Attempt(f"job-{i:02d}") for i in range(20)])
    times = drain.times
    assert times[:10] == [0.0] * 10
    assert times[10] >= WINDOW - EPS
    assert times[10] == pytest.approx(WINDOW)
    assert most_in_a_window(times, WINDOW) <= 10


def test_images_per_minute_waits_for_images_to_leave_the_window():
    pace = Pace(images_per_minute=10)
    state, first = admit(PacerState(), pace, "a", 0.0, images=4)
    assert first.admitted
    state, second = admit(state, pace, "b", 0.0, images=4)
    assert second.admitted is False
    assert second.start_at == pytest.approx(SPACING)
    state, second = admit(state, pace, "b", SPACING - LEAD_S, images=4)
    assert second.admitted
    # 8 images in the window: 4 more fit only when a's 4 have left it (a window after a's send).
    state, third = admit(state, pace, "c", 7.0, images=4)
    assert third.admitted is False
    assert third.start_at == pytest.approx(WINDOW)
    assert third.reason == "paced at the route's 10 images/min"
    state, third = admit(state, pace, "c", WINDOW - LEAD_S - 0.01, images=4)
    assert third.admitted is False
    state, third = admit(state, pace, "c", WINDOW - LEAD_S, images=4)
    assert third.admitted
    assert third.start_at == pytest.approx(WINDOW)


def test_more_images_than_a_minute_holds_go_alone_into_an_empty_window():
    pace = Pace(images_per_minute=4)
    state, _first = admit(PacerState(), pace, "a", 0.0, images=1)
    state, big = admit(state, pace, "big", 1.0, images=10)
    assert big.admitted is False
    assert big.start_at == pytest.approx(60.0 * 1.02)  # a's image has left


def test_a_third_attempt_waits_for_a_concurrent_slot_and_release_frees_it():
    pace = Pace(concurrency=2)
    state = PacerState()
    for job in ("a", "b"):
        state, answer = admit(state, pace, job, 0.0, expected_s=20.0)
        assert (answer.admitted, answer.start_at) == (True, 0.0)
    state, third = admit(state, pace, "c", 0.0)
    assert third.admitted is False
    assert third.start_at == pytest.approx(20.0)  # a slot's expected end
    assert third.ask_again_at == pytest.approx(20.0 - LEAD_S)
    assert third.reason == "the route's 2 concurrent requests are in use"
    # Back when told, with a and b still running: a slot is held until its report.
    state, third = admit(state, pace, "c", 19.0)
    assert third.admitted is False
    state = pacing.release(state, "a", 1)
    state, third = admit(state, pace, "c", 19.5)
    assert (third.admitted, third.start_at) == (True, 19.5)


def test_a_slot_past_its_expected_end_is_held_until_its_report():
    pace = Pace(concurrency=1)
    state, _ = admit(PacerState(), pace, "a", 0.0, expected_s=20.0)
    for now in (25.0, 60.0, 300.0):  # a runs long; c asks again and again
        state, late = admit(state, pace, "c", now)
        assert late.admitted is False
        assert now < late.start_at <= now + 2 * LEAD_S
        assert late.ask_again_at is not None
        assert late.ask_again_at > now
    assert len(state.slots) == 1
    state = pacing.release(state, "a")
    state, late = admit(state, pace, "c", 301.0)
    assert late.admitted


def test_a_slot_past_its_lease_expires_and_is_counted():
    pace = Pace(concurrency=2, lease_s=100.0)
    state = PacerState()
    for job in ("a", "b"):
        state, _ = admit(state, pace, job, 0.0)
    state, third = admit(state, pace, "c", 98.0)
    assert third.admitted is False
    assert third.start_at == pytest.approx(100.0)  # the lease ends it at the latest
    state, third = admit(state, pace, "c", 100.5)
    assert (third.admitted, third.start_at) == (True, 100.5)
    assert state.expired_slots == 2
    assert [slot.job_id for slot in state.slots] == ["c"]


# --- cool-down and headers -----------------------------------------------------------------


def test_a_cool_down_holds_every_send_and_says_why():
    state, _ = admit(PacerState(), RPM10, "a", 0.0)
    state = pacing.cool_down(state, 100.0, "the route answered 429")
    for job, priority in (("b", Priority.BATCH), ("c", Priority.INTERACTIVE)):
        state, answer = admit(state, RPM10, job, 50.0, priority=priority)
        assert answer.admitted is False
        assert answer.start_at >= 100.0
        assert answer.reason == "the route answered 429"
    state, answer = admit(state, RPM10, "c", 100.0 - LEAD_S, priority=Priority.INTERACTIVE)
    assert (answer.admitted, answer.start_at) == (True, 100.0)


def test_cool_down_only_lengthens():
    state = pacing.cool_down(PacerState(), 100.0, "first")
    assert pacing.cool_down(state, 90.0, "shorter") == state
    assert pacing.cool_down(state, 120.0, "longer").cool_until == 120.0
    assert pacing.cool_down(state, 120.0, "longer").cool_reason == "longer"


def hint(observed_at: float, until: float, remaining: int | None, **limits: int) -> RateLimitHint:
    return RateLimitHint(observed_at, until, remaining, **limits)


def test_a_hint_with_nothing_remaining_holds_sends_until_its_reset():
    state = pacing.with_hint(PacerState(), hint(10.0, 16.0, 0), RPM10)
    state, answer = admit(state, RPM10, "a", 10.0)
    assert (answer.admitted, answer.start_at) == (False, 16.0)
    assert answer.reason == "the route's rate-limit headers say its quota is nearly used"
    state, answer = admit(state, RPM10, "a", 15.0)
    assert (answer.admitted, answer.start_at) == (True, 16.0)


def test_a_hint_lets_its_remaining_sends_go_then_holds_the_rest():
    pace = Pace(requests_per_minute=600, burst=5)
    state = pacing.with_hint(PacerState(), hint(0.0, 30.0, 2), RPM10)
    sent = []
    for job in "abc":
        state, answer = admit(state, pace, job, 1.0)
        sent.append((answer.admitted, answer.start_at))
    assert sent == [(True, 1.0), (True, 1.0), (False, 30.0)]


def test_remaining_zero_at_a_window_of_our_own_sends_keeps_the_even_pace():
    # Ten sends of ours spread over the last minute; the route says 0 remain and names no
    # reset (Azure): nobody else uses the quota, so the next send goes when the window rule
    # lets it (the oldest send leaves the window), not a whole minute later.
    sends = tuple(pacing.Send(f"s{i}", 1, i * SPACING, 1) for i in range(10))
    now = 9 * SPACING + 0.5
    state = pacing.with_hint(
        replace(PacerState(), sends=sends), hint(now, now + 60.0, 0, limit_requests=10), RPM10
    )
    _, answer = admit(state, RPM10, "next", now)
    assert answer.start_at == pytest.approx(max(WINDOW, 9 * SPACING + SPACING))
    assert answer.start_at < now + 30.0


def test_remaining_below_what_our_own_sends_explain_holds_the_rest():
    # Two sends of ours in the window, yet the route says 0 remain of 10: someone else uses
    # the quota, so nothing more goes out until the hint's end.
    sends = (pacing.Send("s0", 1, 0.0, 1), pacing.Send("s1", 1, SPACING, 1))
    now = SPACING + 0.5
    state = pacing.with_hint(replace(PacerState(), sends=sends), hint(now, now + 60.0, 0), RPM10)
    _, answer = admit(state, RPM10, "next", now)
    assert answer.start_at == pytest.approx(now + 60.0)


def test_the_limits_a_route_reported_outlive_the_reset_of_its_remaining_count():
    reported = hint(10.0, 16.0, 0, limit_requests=5)
    state = pacing.with_hint(PacerState(), reported, RPM10)
    state = pacing.tidy(state, RPM10, 20.0)
    assert state.hint == replace(reported, remaining=None)
    assert pacing.limits(RPM10, state.hint).requests_per_minute == 5
    # A hint that said nothing of the limits goes with its reset.
    state = pacing.with_hint(PacerState(), hint(10.0, 16.0, 0), RPM10)
    assert pacing.tidy(state, RPM10, 16.0).hint is None


def test_the_newest_hint_wins():
    newer = hint(20.0, 30.0, 3)
    older = hint(10.0, 40.0, 0)
    state = pacing.with_hint(PacerState(), newer, RPM10)
    assert pacing.with_hint(state, older, RPM10).hint == newer
    older_first = pacing.with_hint(PacerState(), older, RPM10)
    assert pacing.with_hint(older_first, newer, RPM10).hint == newer


@pytest.mark.parametrize(
    ("configured", "reported", "limit"),
    [(10, None, 10), (10, 5, 5), (10, 20, 10), (None, 5, 5), (None, None, None), (10, 0, 10)],
)
def test_reported_limits_only_lower_the_configured_ones(configured, reported, limit):
    pace = Pace(requests_per_minute=configured, images_per_minute=configured)
    said = hint(0.0, 1.0, None, limit_requests=reported, limit_images=reported)
    current = pacing.limits(pace, said)
    assert (current.requests_per_minute, current.images_per_minute) == (limit, limit)


def test_spacing_follows_requests_then_images_and_burst_is_at_least_one():
    assert pacing.limits(Pace(images_per_minute=20), None).spacing_s == pytest.approx(3 * 1.02)
    both = Pace(requests_per_minute=10, images_per_minute=20, burst=0)
    assert pacing.limits(both, None).spacing_s == pytest.approx(SPACING)
    assert pacing.limits(both, None).burst == 1
    assert pacing.limits(Pace(concurrency=3), None).spacing_s is None
    assert Pace(concurrency=3).limited
    assert not Pace().limited


# --- a waiter that leaves; asking again ----------------------------------------------------


def test_a_waiter_that_never_comes_back_stops_blocking_after_its_grace():
    state, _ = admit(PacerState(), RPM10, "sent", 0.0)
    state, gone = admit(state, RPM10, "gone", 1.0)
    assert gone.position == 1
    assert gone.ask_again_at is not None
    grace_ends = gone.ask_again_at + max(STALE_S, 2 * SPACING)
    state, behind = admit(state, RPM10, "behind", 2.0)
    assert behind.position == 2
    # "gone" never asks again; "behind" comes back when told, and waits while "gone" may still.
    now = 2.0
    while True:
        assert behind.ask_again_at is not None
        now = behind.ask_again_at
        state, behind = admit(state, RPM10, "behind", now, since=2.0)
        if behind.admitted:
            break
        assert now <= grace_ends
    assert grace_ends < now <= grace_ends + SPACING
    assert [waiter.job_id for waiter in state.queue] == []


def test_release_takes_a_job_out_of_the_queue_and_its_slots():
    pace = Pace(concurrency=1)
    state, _ = admit(PacerState(), pace, "a", 0.0)
    state, _ = admit(state, pace, "b", 0.0)
    assert [w.job_id for w in state.queue] == ["b"]
    assert pacing.release(state, "b").queue == ()
    assert pacing.release(state, "a", 2).slots == state.slots  # another attempt's slot stays
    assert pacing.release(state, "a", 1).slots == ()
    assert pacing.release(state, "a").slots == ()


def test_asking_again_after_admission_is_the_same_admission():
    state, first = admit(PacerState(), RPM10, "a", 0.0)
    assert first.admitted
    for now in (0.0, 0.5, 30.0, 61.0, 500.0):  # the last ones after its send left the window
        again_state, again = admit(state, RPM10, "a", now)
        assert again == first
        assert again_state.admitted == 1
        assert len(again_state.slots) == 1
    # A second ask of an attempt that is still queued keeps one place.
    state, queued = admit(state, RPM10, "b", 1.0)
    state, requeued = admit(state, RPM10, "b", 2.0, since=1.0)
    assert [w.job_id for w in state.queue] == ["b"]
    assert requeued.start_at == queued.start_at


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=5),
    st.floats(min_value=0, max_value=1e6),
)
def test_sent_at_moves_a_send_later_never_earlier(stamps, at):
    sends = tuple(Send(f"j{i}", 1, stamp, 1) for i, stamp in enumerate(stamps))
    state = PacerState(sends=sends)
    moved = pacing.sent_at(state, "j0", 1, at)
    # The even pace stays on the admitted time; the window place follows the real one.
    assert moved.sends[0].at == stamps[0]
    assert moved.sends[0].held_from(0.0) == max(stamps[0], at)
    assert moved.sends[1:] == sends[1:]
    assert pacing.sent_at(state, "j0", 2, at) == state  # another attempt: nothing moves


# --- tidy and schedule ---------------------------------------------------------------------


def test_tidy_forgets_old_sends_expired_slots_and_stale_waiters():
    slot = Slot("s", 1, 0.0, 0.0, 20.0, 100.0, Priority.BATCH)
    waiter = Waiter("w", 1, Priority.BATCH, 1, 0.0, back_at=50.0, expected_s=20.0)
    state = PacerState(
        sends=(Send("old", 1, 0.0, 1), Send("new", 1, 40.0, 1)),
        slots=(slot,),
        queue=(waiter,),
    )
    # A send is remembered for two windows (a route's headers are judged against the sends of
    # the moment they were seen, up to a window later): exactly two windows old, it is gone.
    at_two = pacing.tidy(state, RPM10, 2 * WINDOW)
    assert [s.job_id for s in at_two.sends] == ["new"]
    assert pacing.tidy(state, RPM10, 2 * WINDOW - 0.001).sends == state.sends
    kept = pacing.tidy(state, RPM10, 50.0 + 2 * SPACING)
    assert (kept.queue, kept.slots, kept.expired_slots) == ((waiter,), (slot,), 0)
    gone = pacing.tidy(state, RPM10, 100.0)
    assert (gone.queue, gone.slots, gone.expired_slots) == ((), (), 1)
    assert pacing.tidy(gone, RPM10, 200.0).expired_slots == 1  # counted once


def test_schedule_keeps_queue_order_and_each_after_the_one_before():
    queue = tuple(
        Waiter(f"w{i}", 1, priority, 1, float(i), 0.0, 20.0)
        for i, priority in enumerate([Priority.BATCH, Priority.INTERACTIVE, Priority.BATCH])
    )
    state = PacerState(sends=(Send("x", 1, 0.0, 1),), queue=queue)
    times = pacing.schedule(state, RPM10, 1.0)
    assert list(times) == ["w1", "w0", "w2"]
    assert list(times.values()) == pytest.approx([SPACING, 2 * SPACING, 3 * SPACING])


# --- records -------------------------------------------------------------------------------


def test_pacer_state_round_trips_through_json():
    state = PacerState(
        sends=(Send("a", 1, 1.5, 2),),
        slots=(Slot("a", 1, 1.0, 1.5, 21.5, 1801.5, Priority.INTERACTIVE),),
        queue=(Waiter("b", 2, Priority.BATCH, 1, 0.25, 5.0, 30.0),),
        cool_until=9.0,
        cool_reason="429",
        hint=RateLimitHint(1.0, 7.0, 0, 5, None),
        admitted=3,
        expired_slots=1,
    )
    assert PacerState.from_json(state.to_json()) == state
    assert PacerState.from_json(PacerState().to_json()) == PacerState()


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"sends": [["a", 1]]},
        {"sends": [], "slots": [{"job_id": "a"}]},
        {"sends": [], "queue": [{"job_id": "a", "attempt": 1, "priority": "urgent"}]},
        {"sends": "none"},
        [],
    ],
)
def test_a_broken_pacer_state_is_unreadable(broken):
    with pytest.raises(RecordUnreadable):
        PacerState.from_json(broken)


# --- properties over random routes and arrivals --------------------------------------------


@st.composite
def routes(draw: st.DrawFn) -> tuple[Pace, list[Attempt]]:
    rpm = draw(st.one_of(st.none(), st.integers(1, 30)))
    ipm = draw(st.one_of(st.none(), st.integers(1, 12)))
    concurrency = draw(st.one_of(st.none(), st.integers(1, 4)))
    pace = Pace(
        requests_per_minute=rpm,
        images_per_minute=ipm,
        concurrency=concurrency,
        burst=draw(st.integers(1, 4)),
        window_s=draw(st.sampled_from([60.0, 6.0])),
        lease_s=120.0,
    )
    attempts = [
        Attempt(
            f"job-{i:02d}",
            arrives_at=draw(st.floats(0, 120).map(lambda t: round(t, 3))),
            priority=draw(st.sampled_from(list(Priority))),
            images=draw(st.integers(1, min(ipm or 4, 4))),
            # Most report (some later than expected); up to two never do (a dead worker: its
            # slot is held until its lease ends).
            runs_s=draw(st.floats(1, 60) if i >= 2 else st.one_of(st.floats(1, 60), st.none())),
        )
        for i in range(draw(st.integers(1, 16)))
    ]
    return pace, attempts


@settings(max_examples=80, deadline=None)
@given(routes())
def test_every_limit_holds_whatever_arrives(route):
    pace, attempts = route
    drain = Drain(pace).run(attempts, max_asks=5_000)
    assert sorted(drain.sends) == sorted(a.job_id for a in attempts)
    for attempt in attempts:
        assert drain.sends[attempt.job_id] >= attempt.arrives_at
    current = pacing.limits(pace, None)
    times = drain.times
    # A window and the slack of a send whose real send time is known (the least any send holds).
    window = pace.window_s + min(
        pace.window_s * MARGIN, max(pace.window_s * WINDOW_MARGIN, WINDOW_SLACK_S)
    )
    if current.requests_per_minute:
        assert most_in_a_window(times, window) <= current.requests_per_minute
    per_minute = current.requests_per_minute or current.images_per_minute
    if current.spacing_s and per_minute and current.burst <= per_minute:
        # (Past a minute's count a burst is the window's rule, checked above.)
        for earlier, later in zip(times, times[current.burst :], strict=False):
            assert later - earlier >= current.burst * current.spacing_s - EPS
    if current.images_per_minute:
        images = {a.job_id: a.images for a in attempts}
        weights = [images[job] for job in drain.sends]
        most = most_in_a_window(list(drain.sends.values()), window, weights)
        assert most <= current.images_per_minute
    if current.concurrency:
        running = [
            (drain.sends[a.job_id], drain.ends.get(a.job_id, drain.sends[a.job_id] + pace.lease_s))
            for a in attempts
        ]
        for start, _ in running:
            assert sum(1 for s, e in running if s <= start < e) <= current.concurrency


def test_sends_that_left_late_hold_their_window_place_longer():
    # A burst of ten, each of which left 2 s after its admitted time: the eleventh waits a
    # window plus that lateness after them, so the route never sees eleven in its window.
    pace = Pace(requests_per_minute=10, window_s=60.0, burst=10)
    state = PacerState()
    for i in range(10):
        state, answer = admit(state, pace, f"s{i}", 0.0)
        assert (answer.admitted, answer.start_at) == (True, 0.0)
        state = pacing.sent_at(state, f"s{i}", 1, 2.0)
    assert pacing.state_limits(state, pace).late_s == pytest.approx(2.0)
    _, answer = admit(state, pace, "eleventh", 3.0)
    # Each holds the window from when it left, plus the lateness this host has shown, with the
    # slack of a known send time.
    assert answer.start_at == pytest.approx(2.0 + 2.0 + 60.0 * (1 + WINDOW_MARGIN))
    # Not known yet: from its admitted time plus that lateness.
    unreported = replace(state, sends=tuple(replace(s, left=None) for s in state.sends))
    _, later = admit(unreported, pace, "eleventh", 3.0)
    assert later.start_at == pytest.approx(0.0 + 2.0 + WINDOW)


def test_a_few_stalled_workers_do_not_slow_every_window():
    # Ten sends a spacing apart, each left 10 ms after its admitted time but two that stalled
    # for 2 s: a reported send holds its window place from when it left plus the median
    # lateness, so the eleventh goes at the even pace (a window after the first, which left on
    # time, is sooner), not the stalls' 2 s later; the stalls still count for a send not
    # reported yet.
    pace = Pace(requests_per_minute=10, window_s=60.0)
    spacing = pacing.limits(pace, None).spacing_s
    assert spacing is not None
    state = PacerState()
    for i in range(10):
        state, answer = admit(state, pace, f"s{i}", i * spacing)
        assert answer.admitted
        state = pacing.sent_at(state, f"s{i}", 1, i * spacing + (2.0 if i in (4, 7) else 0.01))
    current = pacing.state_limits(state, pace)
    assert current.late_s == pytest.approx(2.0)
    assert current.lag_s == pytest.approx(0.01)
    _, answer = admit(state, pace, "eleventh", 10 * spacing - 0.5)
    assert answer.start_at == pytest.approx(10 * spacing)
    assert 10 * spacing > 0.01 + 0.01 + 60.0 * (1 + WINDOW_MARGIN)
    unreported = replace(state, sends=tuple(replace(s, left=None) for s in state.sends))
    _, later = admit(unreported, pace, "eleventh", 10 * spacing - 0.5)
    assert later.start_at == pytest.approx(0.0 + 2.0 + WINDOW)


def test_a_head_back_late_keeps_its_turn_on_the_even_pace():
    # a is admitted at 0; b, next, is told to come back a lead before its turn at one spacing,
    # but comes back later (a busy host): it keeps its turn (in the past; its request leaves at
    # once), so the sends after it keep the even pace instead of being pushed by the lateness.
    lead = pacing.lead_s(RPM10)
    state, _ = admit(PacerState(), RPM10, "a", 0.0)
    state, told = admit(state, RPM10, "b", 0.0)
    state, _ = admit(state, RPM10, "c", 0.0)
    assert told.ask_again_at == pytest.approx(SPACING - lead)
    late = SPACING + 1.0
    state, answer = admit(state, RPM10, "b", late)
    assert answer.admitted
    assert answer.start_at == pytest.approx(SPACING)
    [send] = [s for s in state.sends if s.job_id == "b"]
    # Its request cannot leave before it was admitted: a window not reported yet counts from then.
    assert send.admitted == pytest.approx(late)
    assert send.held_from(0.5) == pytest.approx(late + 0.5)
    assert Send.from_json(send.to_json()) == send
    _, then = admit(state, RPM10, "c", late)
    assert then.start_at == pytest.approx(2 * SPACING)


def test_a_head_keeps_at_most_half_a_spacing_of_its_turn():
    state, _ = admit(PacerState(), RPM10, "a", 0.0)
    state, told = admit(state, RPM10, "b", 0.0)
    state, _ = admit(state, RPM10, "c", 0.0)
    assert told.ask_again_at is not None
    # b comes back a spacing and a half late: its turn is kept for half a spacing, no more.
    now = told.ask_again_at + 1.5 * SPACING
    state, answer = admit(state, RPM10, "b", now)
    assert answer.admitted
    assert answer.start_at == pytest.approx(now - SPACING / 2)
    # c, late as well and now at the head, goes a spacing after b's turn: never two at once.
    _, c = admit(state, RPM10, "c", now)
    assert c.start_at == pytest.approx(now + SPACING / 2)


def test_a_first_ask_is_never_placed_in_the_past():
    # Nobody told it to come back: a new arrival on an idle route goes now, not earlier.
    state, first = admit(PacerState(), RPM10, "a", 0.0)
    _, later = admit(state, RPM10, "b", 100.0)
    assert first.start_at == 0.0
    assert later.start_at == pytest.approx(100.0)
