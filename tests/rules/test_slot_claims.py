"""An interactive attempt is given a batch attempt's slot that is not sent yet (rules.pacing,
``admit``), and whichever of the two claims the slot first sends (rules.route_records.SlotClaim):
the interactive attempt never waits more than a spacing behind batch work, no slot is sent
twice, the loser asks again and keeps its place, and what the governor counts stays one send per
slot. On the simulated clock of tests/rules/route_clock.py; limits written out here."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import pacing, route_model
from rules.pacing import Pace, PacerState, Send, Slot
from rules.route_model import RouteState
from rules.route_records import Admission, AttemptReport, Priority, SlotClaim

from .route_clock import EPS, SHAPE, Attempt, Drain, ask, most_in_a_window, stored

RPM10 = Pace(requests_per_minute=10, window_s=60.0, burst=1)
SPACING = 60.0 / 10 * 1.02
WINDOW = 60.0 * 1.02
LEAD = 1.0  # pacing.lead_s for a 6.12 s spacing: min(LEAD_S, half a spacing)
INTERACTIVE = Priority.INTERACTIVE


def admit(
    state: PacerState, job_id: str, now: float, *, since: float | None = None, **extra: object
) -> tuple[PacerState, Admission]:
    request = ask(job_id, now if since is None else since, **extra)  # type: ignore[arg-type]
    return pacing.admit(state, RPM10, request, now, expected_s=20.0)


def lost(job_id: str, now: float) -> AttemptReport:
    return AttemptReport(job_id, 1, SHAPE, "slot_taken", None, ended_at=now)


def two_batch_sends() -> PacerState:
    """b0 sent at 0; b1 admitted a lead ahead of its slot at one spacing; b2 queued."""
    state, first = admit(PacerState(), "b0", 0.0)
    assert first.admitted
    state, _ = admit(state, "b1", 0.0)
    state, _ = admit(state, "b2", 0.0)
    state, second = admit(state, "b1", SPACING - LEAD, since=0.0)
    assert second.admitted
    assert second.start_at == pytest.approx(SPACING)
    assert second.claim == SlotClaim(pacing.slot_key("b1", 1, SPACING, 2), first=False)
    return state


def test_the_constants_are_the_documented_ones():
    assert pacing.lead_s(RPM10) == LEAD
    assert pacing.TAKE_AHEAD_S == 0.03
    assert pacing.slot_key("img-a", 2, 12.3456, 7) == "img-a.2.12346.7"


def test_a_batch_admission_carries_a_slot_to_claim_at_its_send_and_an_interactive_one_none():
    state, batch = admit(PacerState(), "b0", 0.0)
    assert batch.claim == SlotClaim("b0.1.0.1", first=False)
    state, interactive = admit(state, "i0", SPACING, priority=INTERACTIVE)
    assert interactive.admitted
    assert interactive.claim is None


def test_an_interactive_attempt_is_given_the_batch_slot_not_sent_yet():
    state = two_batch_sends()
    now = SPACING - 0.3  # after b1 was admitted for its slot, before b1 sends
    state, given = admit(state, "i0", now, priority=INTERACTIVE)
    assert given.admitted
    assert given.start_at == pytest.approx(SPACING)
    assert given.claim == SlotClaim(pacing.slot_key("b1", 1, SPACING, 2), first=True)
    assert state.taken == 1
    # One send and one running request for the slot, both the interactive attempt's now.
    at_slot = [s for s in state.sends if s.at == pytest.approx(SPACING)]
    assert [(s.job_id, s.taken_from) for s in at_slot] == [("i0", ("b1", 1, 1))]
    assert sorted(s.job_id for s in state.slots) == ["b0", "i0"]
    # Asking again is the same admission.
    _, again = admit(state, "i0", now + 0.1, priority=INTERACTIVE)
    assert again == given


def test_the_batch_attempt_that_lost_its_slot_asks_again_first_of_the_batch_work():
    state = two_batch_sends()
    state, _ = admit(state, "i0", SPACING - 0.3, priority=INTERACTIVE)
    route = route_model.on_report(RouteState(pacer=state), RPM10, lost("b1", SPACING), SPACING)
    # Nothing of the slot was b1's any more: the slot is i0's alone (b1 cannot have it back).
    assert route.pacer.sends == tuple(replace(s, taken_from=None) for s in state.sends)
    assert route.pacer.slots == state.slots
    pacer, again = admit(route.pacer, "b1", SPACING, since=0.0)
    assert (again.admitted, again.position) == (False, 1)  # ahead of b2, queued since 0 too
    assert again.start_at == pytest.approx(2 * SPACING)
    pacer, b2 = admit(pacer, "b2", SPACING + 0.1, since=0.0)
    assert b2.position == 2


def test_an_interactive_attempt_too_late_for_its_claim_gives_the_slot_back():
    """The batch attempt claimed first and sent: the send and its running request are the batch
    attempt's again, and the slot can be given to nobody else."""
    state = two_batch_sends()
    state, _ = admit(state, "i0", SPACING - 0.3, priority=INTERACTIVE)
    route = route_model.on_report(
        RouteState(pacer=state), RPM10, lost("i0", SPACING + 0.05), SPACING + 0.05
    )
    pacer = route.pacer
    sends = [s for s in pacer.sends if s.at == pytest.approx(SPACING)]
    assert [(s.job_id, s.claim, s.taken_from) for s in sends] == [("b1", None, None)]
    assert sorted((s.job_id, s.priority) for s in pacer.slots) == [
        ("b0", Priority.BATCH),
        ("b1", Priority.BATCH),
    ]
    # The interactive attempt asks again: the next slot is a spacing after b1's.
    pacer, again = admit(
        pacer, "i0", SPACING + 0.06, since=SPACING - 0.3, priority=INTERACTIVE, lost_slots=1
    )
    assert again.start_at == pytest.approx(2 * SPACING)
    assert again.position == 1  # ahead of the queued b2


def report(job_id: str, now: float, kind: str | None, sent_at: float | None) -> AttemptReport:
    return AttemptReport(job_id, 1, SHAPE, kind, sent_at, ended_at=now)


def reports(state: PacerState, *events: AttemptReport) -> PacerState:
    route = RouteState(pacer=state)
    for event in events:
        route = route_model.on_report(route, RPM10, event, event.ended_at or 0.0)
    return route.pacer


def at_slot(state: PacerState) -> list[tuple[object, ...]]:
    return [
        (s.job_id, s.images, s.left, s.taken_from)
        for s in state.sends
        if s.at == pytest.approx(SPACING)
    ]


@pytest.mark.parametrize("order", ["taker's loss first", "holder's report first"])
def test_the_holder_that_claimed_first_has_its_send_and_no_slot_is_left_running(order):
    """b1 claimed first and sent; its report and the interactive attempt's loss may come in
    either order (a quick 429 of b1, a slow worker of i0): either way the send is b1's, with
    its real time and its 4 images, and no running request is left behind."""
    state, _ = admit(PacerState(), "b0", 0.0, images=4)
    state, _ = admit(state, "b1", 0.0, images=4)
    state, _ = admit(state, "b1", SPACING - LEAD, since=0.0, images=4)
    state, given = admit(state, "i0", SPACING - 0.3, priority=INTERACTIVE)
    assert given.claim is not None
    assert given.claim.first
    lost_it = report("i0", SPACING + 0.05, "slot_taken", None)
    sent_it = report("b1", SPACING + 0.2, "rate_limited", SPACING + 0.01)
    events = (lost_it, sent_it) if order == "taker's loss first" else (sent_it, lost_it)
    after = reports(state, *events)
    assert at_slot(after) == [("b1", 4, pytest.approx(SPACING + 0.01), None)]
    assert [s.job_id for s in after.slots] == ["b0"]


@pytest.mark.parametrize("kind", ["storage_failed", "cancelled", "admission_expired"])
def test_an_interactive_attempt_that_did_not_send_hands_the_slot_back(kind):
    """It failed before its claim: the batch attempt claims the slot at its time and sends, and
    the governor counts that send and its running request."""
    state = two_batch_sends()
    state, _ = admit(state, "i0", SPACING - 0.3, priority=INTERACTIVE)
    after = reports(state, report("i0", SPACING - 0.1, kind, None))
    assert at_slot(after) == [("b1", 1, None, None)]
    assert sorted(s.job_id for s in after.slots) == ["b0", "b1"]
    after = reports(after, report("b1", SPACING + 20, None, SPACING + 0.01))
    assert at_slot(after) == [("b1", 1, pytest.approx(SPACING + 0.01), None)]
    assert [s.job_id for s in after.slots] == ["b0"]


def test_a_slot_claimed_by_its_taker_who_then_did_not_send_is_sent_by_nobody():
    """i0 claimed the slot, then stopped before its send (a cancel): the slot goes back to b1,
    whose claim finds i0's: nobody sends in it, so it no longer counts, and b1 asks again for
    a slot of its own, never the same one back."""
    state = two_batch_sends()
    state, _ = admit(state, "i0", SPACING - 0.3, priority=INTERACTIVE)
    after = reports(
        state,
        report("i0", SPACING - 0.1, "cancelled", None),
        report("b1", SPACING, "slot_taken", None),
    )
    assert at_slot(after) == []
    assert [s.job_id for s in after.slots] == ["b0"]
    after, again = admit(after, "b1", SPACING, since=0.0)
    assert again.claim is not None
    assert again.claim.key != pacing.slot_key("b1", 1, SPACING, 2)


def test_a_holder_that_did_not_send_leaves_the_slot_to_its_taker():
    state = two_batch_sends()
    state, _ = admit(state, "i0", SPACING - 0.3, priority=INTERACTIVE)
    after = reports(state, report("b1", SPACING + 0.1, "slot_taken", None))
    assert at_slot(after) == [("i0", 1, None, None)]  # i0 claimed it: the slot is i0's alone
    after = reports(state, report("b1", SPACING - 0.2, "storage_failed", None))
    assert at_slot(after) == [("i0", 1, None, None)]  # b1 is gone: the slot is i0's alone
    after = reports(after, report("i0", SPACING + 0.1, "cancelled", None))
    assert [s.job_id for s in after.slots] == ["b0"]  # no running request of b1 comes back


def test_an_interactive_attempt_that_lost_a_slot_is_given_no_other():
    state = two_batch_sends()
    state, answer = admit(state, "i0", SPACING - 0.3, priority=INTERACTIVE, lost_slots=1)
    assert not (answer.admitted and answer.claim is not None)
    assert answer.start_at == pytest.approx(2 * SPACING)
    assert state.taken == 0


def test_a_slot_too_close_to_be_claimed_first_is_not_given():
    state = two_batch_sends()
    _, answer = admit(state, "i0", SPACING - pacing.TAKE_AHEAD_S + 0.01, priority=INTERACTIVE)
    assert answer.start_at == pytest.approx(2 * SPACING)
    _, answer = admit(state, "i0", SPACING - pacing.TAKE_AHEAD_S - 0.01, priority=INTERACTIVE)
    assert answer.start_at == pytest.approx(SPACING)


def test_a_slot_given_away_is_sent_late_without_teaching_the_governor_lateness():
    state = two_batch_sends()
    state, _ = admit(state, "i0", SPACING - 0.3, priority=INTERACTIVE)
    late = pacing.sent_at(state, "i0", 1, SPACING + 0.4)
    assert late.late == state.late  # the hand-over's lateness, not the host's
    own = pacing.sent_at(state, "b0", 1, 0.2)
    assert own.late == (*state.late, pytest.approx(0.2))


@pytest.mark.parametrize(
    "case",
    [
        "interactive slot",
        "due now",
        "given away already",
        "fewer images",
        "cooling down",
        "not the head",
    ],
)
def test_what_is_never_given_to_an_interactive_attempt(case):
    now = SPACING - 0.3
    state = two_batch_sends()
    extra: dict[str, Any] = {}
    if case == "interactive slot":
        state, _ = admit(PacerState(), "i-first", 0.0, priority=INTERACTIVE)
        state, ahead = admit(state, "i-next", SPACING - LEAD, priority=INTERACTIVE)
        assert ahead.admitted
    elif case == "due now":
        now = SPACING
    elif case == "given away already":
        state, _ = admit(state, "i-earlier", now - 0.1, priority=INTERACTIVE)
    elif case == "fewer images":
        extra = {"images": 2}
    elif case == "cooling down":
        state = pacing.cool_down(state, SPACING + 5.0, "429")
    elif case == "not the head":
        # Another interactive attempt queued ahead of it, told to come back later.
        state = replace(
            state,
            queue=(
                *state.queue,
                pacing.Waiter("i-ahead", 1, INTERACTIVE, 1, now - 5.0, now + 0.5, 20.0),
            ),
        )
    before = state
    state, answer = admit(state, "i0", now, priority=INTERACTIVE, **extra)
    assert not answer.admitted or answer.claim is None
    assert answer.start_at > SPACING + EPS or case == "interactive slot"
    assert state.taken == before.taken


def test_the_state_with_a_slot_given_away_is_stored_and_read_back_as_it_was():
    state = two_batch_sends()
    state, _ = admit(state, "i0", SPACING - 0.3, priority=INTERACTIVE)
    back = stored(RouteState(pacer=state)).pacer
    assert back.taken == 1
    assert back.sends == tuple(replace(s, at=round(s.at, 3)) for s in state.sends)
    (slot,) = (s for s in back.slots if s.job_id == "i0")
    assert slot.claim == SlotClaim(pacing.slot_key("b1", 1, SPACING, 2), first=True)
    # Rows of earlier deployments (no claim, no hand-over) read as before.
    assert Send.from_json(["a", 1, 2.0, 1, None]) == Send("a", 1, 2.0, 1)
    assert Send.from_json(["a", 1, 2.0, 1, 2.1, 2.05]).admitted == 2.05
    old_slot = {
        "job_id": "a",
        "attempt": 1,
        "admitted_at": 0.0,
        "send_at": 0.0,
        "expected_end": 20.0,
        "expires_at": 1800.0,
        "priority": "batch",
    }
    assert Slot.from_json(old_slot).claim is None


def interactive_amid_batch(t: float, claim_delay_s: float) -> Drain:
    attempts = [Attempt(f"b-{i:03d}", runs_s=20.0) for i in range(40)]
    attempts.append(Attempt("interactive", arrives_at=t, priority=INTERACTIVE, runs_s=20.0))
    return Drain(RPM10, claim_delay_s=claim_delay_s, through_json=True).run(attempts)


@settings(max_examples=25, deadline=None)
@given(st.floats(min_value=0.0, max_value=200.0), st.sampled_from([0.0, 0.05, 0.3, 0.9]))
def test_every_slot_is_sent_once_whoever_claims_it_first(t, claim_delay_s):
    """However late the interactive attempt's worker claims the slot it was given, every job
    is sent exactly once (the Drain asserts it), the route's minute holds, and the interactive
    attempt goes before every batch attempt that was not yet admitted when it asked."""
    drain = interactive_amid_batch(t, claim_delay_s)
    assert len(drain.sends) == 41
    assert most_in_a_window(drain.times, 60.0 + EPS) <= 10
    sent = drain.sends["interactive"]
    later = [job for job, at in drain.sends.items() if job != "interactive" and at > sent]
    waiting = [job for job, at in drain.sends.items() if at > t + SPACING + LEAD]
    assert set(waiting) - {"interactive"} <= set(later)
    if claim_delay_s == 0.0:
        assert sent <= t + SPACING + EPS
        assert drain.lost == [job for job in drain.lost if job != "interactive"]


def test_a_claim_that_comes_too_late_costs_the_interactive_attempt_one_more_ask():
    # It asks 0.2 s before the batch attempt's send; its worker claims 0.5 s after: too late.
    t = 10 * SPACING - 0.2
    drain = interactive_amid_batch(t, claim_delay_s=0.5)
    assert drain.lost == ["interactive"]
    assert drain.sends["interactive"] == pytest.approx(11 * SPACING)
    # Sent in time: the batch attempt keeps its slot at 10 spacings.
    assert sorted(drain.sends.values())[10] == pytest.approx(10 * SPACING)
