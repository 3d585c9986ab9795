"""devhost.store: what survives a reopen, and that a failed transaction writes nothing."""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path

import pytest

from devhost.store import InstanceRow, InstanceRuntime, Store, new_runtime

# Every field of the engine's bookkeeping, a with-retry call waiting on its retry timer included.
RUNTIME: InstanceRuntime = {
    **new_runtime(),
    "next_id": 3,
    "action_count": 2,
    "flat_ids": [0, None],
    "open_waits": {"go": 1},
    "retries": [
        {
            "kind": "activity",
            "name": "flaky",
            "input": '"x"',
            "options": {"firstRetryIntervalInMilliseconds": 1000, "maxNumberOfAttempts": 2},
            "failures": 1,
            "first_attempt": "2024-01-01T00:00:00.000000+00:00",
            "task_id": None,
            "timer_id": 2,
        }
    ],
    "status_before_suspend": "Running",
}


def row(instance_id: str, created: str, status: str = "Running") -> InstanceRow:
    return InstanceRow(
        instance_id=instance_id,
        execution_id="e1",
        name="orch",
        status=status,
        input='{"a": 1}',
        output=None,
        custom_status=None,
        created_time=created,
        last_updated_time=created,
        parent=None,
        runtime=copy.deepcopy(RUNTIME),
    )


def test_everything_written_survives_closing_and_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    with store.transaction():
        store.put_instance(row("i1", "2024-01-01T00:00:00.000000+00:00"))
        store.append_history("i1", [{"EventType": 12}, {"EventType": 0}])
        store.append_history("i1", [{"EventType": 13}])
        store.add_inbox("i1", "e1", {"EventType": 15, "Name": "go"})
        store.add_work(instance_id="i1", execution_id="e1", kind="activity", task_id=0, name="a")
    store.close()

    reopened = Store(path)
    inst = reopened.get_instance("i1")
    assert inst is not None
    assert inst.runtime == RUNTIME
    assert [e["EventType"] for e in reopened.load_history("i1")] == [12, 0, 13]
    assert [m.event["Name"] for m in reopened.inbox("i1")] == ["go"]
    assert [w.name for w in reopened.work_items()] == ["a"]
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failed_transaction_writes_nothing() -> None:
    store = Store(":memory:")

    def crashing_episode() -> None:
        with store.transaction():
            store.put_instance(row("i1", "2024-01-01T00:00:00.000000+00:00"))
            store.add_inbox("i1", "e1", {"EventType": 0})
            raise RuntimeError("crash mid-episode")

    with pytest.raises(RuntimeError, match="crash mid-episode"):
        crashing_episode()
    assert store.get_instance("i1") is None
    assert store.inbox("i1") == []


def test_work_deletion_says_whether_the_item_was_still_pending() -> None:
    store = Store(":memory:")
    with store.transaction():
        item = store.add_work(
            instance_id="i", execution_id="e", kind="timer", task_id=1, fire_at="x"
        )
    assert store.delete_work(item.work_id) is True
    assert store.delete_work(item.work_id) is False


def test_query_filters_and_pages_in_creation_order() -> None:
    store = Store(":memory:")
    with store.transaction():
        store.put_instance(row("b", "2024-01-01T00:00:02.000000+00:00", "Completed"))
        store.put_instance(row("a", "2024-01-01T00:00:01.000000+00:00"))
        store.put_instance(row("c", "2024-01-01T00:00:03.000000+00:00"))
    ids = [r.instance_id for r in store.query_instances()]
    assert ids == ["a", "b", "c"]
    assert [r.instance_id for r in store.query_instances(statuses=["Completed"])] == ["b"]
    after_a = store.query_instances(after=("2024-01-01T00:00:01.000000+00:00", "a"), limit=1)
    assert [r.instance_id for r in after_a] == ["b"]
    assert [r.instance_id for r in store.query_instances(prefix="c")] == ["c"]
    assert [
        r.instance_id for r in store.query_instances(created_to="2024-01-01T00:00:02.000000+00:00")
    ] == ["a", "b"]


def test_delete_instance_removes_its_history_inbox_and_work() -> None:
    store = Store(":memory:")
    with store.transaction():
        store.put_instance(row("i", "2024-01-01T00:00:00.000000+00:00"))
        store.append_history("i", [{"EventType": 12}])
        store.add_inbox("i", "e1", {"EventType": 5})
        store.add_work(instance_id="i", execution_id="e1", kind="activity", task_id=0)
    assert store.delete_instance("i") is True
    assert store.delete_instance("i") is False
    assert store.load_history("i") == []
    assert store.inbox("i") == []
    assert store.work_items("i") == []


def test_the_status_input_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    inst = row("i1", "2024-01-01T00:00:00.000000+00:00")
    inst.status_input = '"{\\"a\\": 1}"'
    with store.transaction():
        store.put_instance(inst)
    store.close()
    reopened = Store(path)
    found = reopened.get_instance("i1")
    assert found is not None
    assert found.status_input == '"{\\"a\\": 1}"'
    reopened.close()


def test_a_state_file_from_before_the_status_input_column_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE instances (instance_id TEXT PRIMARY KEY, execution_id TEXT NOT NULL,"
        " name TEXT NOT NULL, status TEXT NOT NULL, input TEXT, output TEXT, custom_status TEXT,"
        " created_time TEXT NOT NULL, last_updated_time TEXT NOT NULL, parent TEXT,"
        " runtime TEXT NOT NULL)"
    )
    old.execute(
        "INSERT INTO instances VALUES ('i1', 'e1', 'orch', 'Running', '1', NULL, NULL,"
        " '2024-01-01T00:00:00.000000+00:00', '2024-01-01T00:00:00.000000+00:00', NULL, ?)",
        (json.dumps(new_runtime()),),
    )
    old.commit()
    old.close()
    store = Store(path)
    found = store.get_instance("i1")
    assert found is not None
    assert found.input == "1"
    assert found.status_input is None
    store.close()
