"""The ledger's bookkeeping and the helpers whole-project tests count with."""

from __future__ import annotations

import threading

import pytest

from simulator.ledger import (
    Ledger,
    billable_count,
    completed_upstream_count,
    count,
    generations_started,
    total_cost,
)


def test_entries_are_numbered_copies_and_since_filters():
    ledger = Ledger()
    first = ledger.open(request_id="req_1", route="openai")
    ledger.open(request_id="req_2", route="azure", deployment="d")
    ledger.update(first, billable=True, cost_usd=0.5, shape={"n": 1})

    entries = ledger.entries()
    entries[0].shape["n"] = 99  # type: ignore[index]

    assert [e.seq for e in entries] == [1, 2]
    assert ledger.entries()[0].shape == {"n": 1}
    assert [e.request_id for e in ledger.entries(since=1)] == ["req_2"]


def test_update_rejects_unknown_fields():
    ledger = Ledger()
    entry = ledger.open(request_id="req_1", route="openai")
    with pytest.raises(AttributeError, match="no field 'prompt'"):
        ledger.update(entry, prompt="secret")


def test_clear_keeps_sequence_numbers_growing():
    ledger = Ledger()
    ledger.open(request_id="a", route="openai")
    ledger.clear()
    assert ledger.entries() == []
    assert ledger.open(request_id="b", route="openai").seq == 2


def test_helpers_work_on_entries_and_on_json():
    ledger = Ledger()
    a = ledger.open(request_id="a", route="azure")
    b = ledger.open(request_id="b", route="openai")
    ledger.open(request_id="c", route="azure")
    ledger.update(a, generation_started=True, completed_upstream=True, billable=True, cost_usd=0.2)
    ledger.update(b, generation_started=True, billable=True, cost_usd=0.1, outcome="fault:x")

    for entries in (ledger.entries(), [e.to_json() for e in ledger.entries()]):
        assert billable_count(entries) == 2
        assert billable_count(entries, route="azure") == 1
        assert completed_upstream_count(entries) == 1
        assert generations_started(entries) == 2
        assert count(entries, outcome="fault:x") == 1
        assert total_cost(entries) == pytest.approx(0.3)


def test_open_is_thread_safe():
    ledger = Ledger()

    def work() -> None:
        for _ in range(200):
            ledger.open(request_id="r", route="openai")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(e.seq for e in ledger.entries()) == list(range(1, 801))
