"""An attempt claims its route slot before it sends (rules.route_records.SlotClaim): a batch
attempt at its send time, an interactive attempt given that slot as soon as it starts. Exactly
one of two claims of a slot succeeds (the store creates the blob only if absent); the other
attempt sends nothing, leaves no record and is asked again (FailureKind.SLOT_TAKEN). Without
a claim, no send: storage that is down ends the attempt unsent."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from rules.job_records import AttemptInput
from rules.outcome import FailureKind
from rules.route_records import SlotClaim
from storage.protocol import cancel_name, progress_name, route_slot_name
from tests.fakes import InMemoryStore

from .test_generate import SkippingClock, attempt, job
from .test_route_pause import counting

KEY = "img-batch.1.1700000000000"
SLOT = route_slot_name("azure", KEY)


def admitted(job_id: str, *, first: bool, send_in_s: float = 0.0) -> AttemptInput:
    now = time.time()
    return replace(
        job(),
        job_id=job_id,
        send_at=now + send_in_s,
        send_by=now + 60,
        claim=SlotClaim(KEY, first=first),
    )


def claimed_by(store: InMemoryStore) -> object:
    raw = store.get(name=SLOT)
    assert raw is not None
    return json.loads(raw)


def test_a_batch_attempt_claims_its_slot_and_sends():
    store = InMemoryStore()
    seen, route = counting()
    result = attempt(admitted("img-batch", first=False), store, route)
    assert result.ok, result.failure
    assert len(seen) == 1
    assert claimed_by(store) == {"job_id": "img-batch", "attempt": 1}


def test_a_batch_attempt_whose_slot_was_claimed_first_sends_nothing_and_leaves_no_record():
    store = InMemoryStore()
    seen, route = counting()
    taker = attempt(admitted("img-interactive", first=True), store, route)
    assert taker.ok, taker.failure
    holder = attempt(admitted("img-batch", first=False), store, route)
    assert holder.failure is not None
    assert holder.failure.kind is FailureKind.SLOT_TAKEN
    assert holder.failure.sent is False
    assert "img-interactive" not in holder.failure.message  # another caller's job, not named
    assert len(seen) == 1  # the interactive attempt's request only
    # Asked again as the same attempt: a record of this run would answer its next run.
    assert store.get(name=progress_name("img-batch", 1)) is None
    assert claimed_by(store) == {"job_id": "img-interactive", "attempt": 1}


def test_an_interactive_attempt_too_late_for_the_slot_it_was_given_sends_nothing():
    store = InMemoryStore()
    seen, route = counting()
    assert attempt(admitted("img-batch", first=False), store, route).ok
    taker = attempt(admitted("img-interactive", first=True), store, route)
    assert taker.failure is not None
    assert taker.failure.kind is FailureKind.SLOT_TAKEN
    assert len(seen) == 1
    assert store.get(name=progress_name("img-interactive", 1)) is None


def test_the_taker_claims_before_it_waits_for_the_send_time():
    """Its claim must come before the holder's, which comes at the send time: so it is made
    as soon as the attempt starts, before the wait for the admitted send time."""
    order: list[str] = []
    clock = SkippingClock()

    class Watched(InMemoryStore):
        def put_new(self, *, name: str, data: bytes, content_type: str) -> bool:
            order.append(f"claim after {len(clock.slept)} sleeps")
            return super().put_new(name=name, data=data, content_type=content_type)

    store = Watched()
    _, route = counting()
    taker = attempt(admitted("img-interactive", first=True, send_in_s=1.5), store, route, clock)
    assert taker.ok, taker.failure
    assert order == ["claim after 0 sleeps"]
    assert any(s >= 1.0 for s in clock.slept)  # it did wait for its send time after

    order.clear()
    clock.slept.clear()
    store = Watched()
    holder = attempt(admitted("img-batch", first=False, send_in_s=1.5), store, route, clock)
    assert holder.ok, holder.failure
    assert order == ["claim after 1 sleeps"]  # at its send time, after the wait


def test_a_rerun_of_the_attempt_that_claimed_the_slot_still_sends():
    """A worker that died after its claim: the activity runs again and finds its own claim."""
    store = InMemoryStore()
    store.put(
        name=SLOT,
        data=json.dumps({"job_id": "img-batch", "attempt": 1}).encode(),
        content_type="application/json",
    )
    seen, route = counting()
    result = attempt(admitted("img-batch", first=False), store, route)
    assert result.ok, result.failure
    assert len(seen) == 1


def test_no_claim_no_send_while_storage_is_down():
    store = InMemoryStore()
    store.fail(SLOT, times=1000)
    seen, route = counting()
    result = attempt(admitted("img-batch", first=False), store, route)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.STORAGE_FAILED
    assert result.failure.sent is False
    assert "claim" in result.failure.message
    assert seen == []


def test_an_attempt_without_a_claim_writes_none():
    store = InMemoryStore()
    _, route = counting()
    assert attempt(replace(admitted("img-batch", first=False), claim=None), store, route).ok
    assert not any("/slots/" in name for name in store.blobs)


def test_an_interactive_attempt_too_late_to_send_does_not_take_the_slot_from_its_holder():
    store = InMemoryStore()
    seen, route = counting()
    now = time.time()
    late = replace(admitted("img-interactive", first=True), send_at=now - 10, send_by=now - 5)
    result = attempt(late, store, route)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.ADMISSION_EXPIRED
    assert store.get(name=SLOT) is None  # the batch attempt still gets its slot
    assert attempt(admitted("img-batch", first=False), store, route).ok
    assert len(seen) == 1


def test_a_cancelled_interactive_attempt_does_not_take_the_slot_from_its_holder():
    store = InMemoryStore()
    seen, route = counting()
    store.put(name=cancel_name("img-interactive"), data=b"{}", content_type="application/json")
    result = attempt(admitted("img-interactive", first=True), store, route)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.CANCELLED
    assert result.failure.sent is False
    assert store.get(name=SLOT) is None
    assert seen == []


def test_a_rerun_of_a_finished_attempt_answers_its_result_without_claiming_again():
    """Azure runs an activity at least once: a re-run of an interactive attempt that already
    finished returns that result, however late, and takes no slot from anyone."""
    store = InMemoryStore()
    seen, route = counting()
    given = admitted("img-interactive", first=True)
    assert attempt(given, store, route).ok
    store.blobs.pop(SLOT)
    now = time.time()
    rerun = attempt(replace(given, send_at=now - 10, send_by=now - 5), store, route)
    assert rerun.ok, rerun.failure
    assert len(seen) == 1
    assert store.get(name=SLOT) is None
