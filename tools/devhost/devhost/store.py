"""SQLite persistence for devhost's orchestrations: survive `kill -9`, resume where it was.

Six tables: `instances` (one row per instance id, the current execution and the engine's
bookkeeping for it), `history` (the execution's events, in order), `inbox` (events waiting to be
replayed: completions, fired timers, raised events, starts), and `work` (activities scheduled and
not yet completed, timers not yet fired); for entities, `entities` (the state JSON of each entity
that exists) and `entity_ops` (operations not yet processed, in arrival order). The engine
writes each episode (and each entity batch) in one transaction, so a crash leaves either the
whole episode or none of it. WAL mode: readers never block the writer and
a killed process loses nothing that was committed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from devhost.private import private_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created_time TEXT NOT NULL,
    last_updated_time TEXT NOT NULL,
    parent TEXT,
    runtime TEXT NOT NULL,
    status_input TEXT
);
CREATE INDEX IF NOT EXISTS instances_created ON instances (created_time, instance_id);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
);
CREATE TABLE IF NOT EXISTS inbox (
    msg_id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_instance ON inbox (instance_id, msg_id);
CREATE TABLE IF NOT EXISTS work (
    work_id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT,
    input TEXT,
    fire_at TEXT
);
CREATE INDEX IF NOT EXISTS work_instance ON work (instance_id);
CREATE TABLE IF NOT EXISTS entities (
    entity_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    last_modified TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entity_ops (
    op_id INTEGER PRIMARY KEY AUTOINCREMENT,
    entity_id TEXT NOT NULL,
    name TEXT NOT NULL,
    input TEXT,
    request_id TEXT,
    parent_instance_id TEXT,
    parent_execution_id TEXT
);
CREATE INDEX IF NOT EXISTS entity_ops_entity ON entity_ops (entity_id, op_id);
"""


class CallSpec(TypedDict):
    """An activity or sub-orchestration call as the orchestrator asked for it."""

    kind: Literal["activity", "suborchestration"]
    name: str
    input: str | None
    instance_id: NotRequired[str | None]  # sub-orchestrations: the id the orchestrator chose


class RetryGroup(CallSpec):
    """One with-retry call still running: its options and where its attempts are."""

    options: dict[str, Any]  # the action's retryOptions, maxNumberOfAttempts always set
    failures: int
    first_attempt: str
    task_id: int | None  # the attempt running now, or None while its retry timer runs
    timer_id: int | None


class InstanceRuntime(TypedDict):
    """The engine's per-execution bookkeeping, kept in the instance row as JSON.

    next_id: the next task id (the SDK hands ids out in scheduling order, shared by tasks,
    timers, sub-orchestrations and retry timers). action_count: how many top-level actions of
    the V2 list were already turned into work. flat_ids: the task id of each flattened action
    (None for waits), to find timers cancelled later. open_waits: waits per event name not yet
    given an event. retries: one entry per with-retry call still running.
    status_before_suspend: set while Suspended, the status to go back to on resume.
    entity_calls: entity calls not yet answered, request id (the GUID their answer's EventRaised
    is named by) -> task id; absent in state written before entities were hosted.

    A TypedDict rather than a dataclass: it is stored as JSON and read back as it was written.
    """

    next_id: int
    action_count: int
    flat_ids: list[int | None]
    open_waits: dict[str, int]
    retries: list[RetryGroup]
    status_before_suspend: NotRequired[str]
    entity_calls: NotRequired[dict[str, int]]


def new_runtime() -> InstanceRuntime:
    return {"next_id": 0, "action_count": 0, "flat_ids": [], "open_waits": {}, "retries": []}


@dataclass
class InstanceRow:
    """One instance. Times are ISO 8601 UTC strings with microseconds (they sort as text)."""

    instance_id: str
    execution_id: str
    name: str
    status: str
    input: str | None
    output: str | None
    custom_status: str | None
    created_time: str
    last_updated_time: str
    parent: dict[str, Any] | None
    runtime: InstanceRuntime
    # The start input as the status API shows it, when that is not `input`: the body text of a
    # start through the management API (the SDK's JSON string stays a string there, while the
    # orchestrator gets `input`, the value inside). None: the status shows `input`.
    status_input: str | None = None


@dataclass(frozen=True)
class InboxMessage:
    msg_id: int
    instance_id: str
    execution_id: str
    event: dict[str, Any]


@dataclass(frozen=True)
class WorkItem:
    """An activity to run (`kind="activity"`) or a timer to fire (`kind="timer"`)."""

    work_id: int
    instance_id: str
    execution_id: str
    kind: str
    task_id: int
    name: str | None
    input: str | None
    fire_at: str | None


@dataclass(frozen=True)
class EntityOp:
    """An entity operation not yet processed; a call names the orchestration to answer."""

    op_id: int
    entity_id: str
    name: str
    input: str | None
    request_id: str | None
    parent_instance_id: str | None
    parent_execution_id: str | None

    @property
    def is_signal(self) -> bool:
        return self.parent_instance_id is None


class Store:
    """The SQLite file (":memory:" for tests). One connection, used from the event loop only."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            # Every instance's input (here: every prompt) is in it: owner-only. SQLite gives
            # its -wal and -shm files the mode of the database file.
            private_file(Path(self.path))
            for side in ("-wal", "-shm"):
                if Path(self.path + side).exists():
                    private_file(Path(self.path + side))
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (kill -9); only an OS crash may lose the
        # last commits, which a local development host can afford.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._add_missing_columns()
        self._depth = 0

    def _add_missing_columns(self) -> None:
        # A state directory written before `status_input` existed keeps working.
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(instances)")}
        if "status_input" not in columns:
            self._db.execute("ALTER TABLE instances ADD COLUMN status_input TEXT")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all (nesting joins the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    # instances

    def get_instance(self, instance_id: str) -> InstanceRow | None:
        row = self._db.execute(
            "SELECT * FROM instances WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        return None if row is None else _instance(row)

    def put_instance(self, inst: InstanceRow) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO instances (instance_id, execution_id, name, status, input,"
            " output, custom_status, created_time, last_updated_time, parent, runtime,"
            " status_input) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                inst.instance_id,
                inst.execution_id,
                inst.name,
                inst.status,
                inst.input,
                inst.output,
                inst.custom_status,
                inst.created_time,
                inst.last_updated_time,
                None if inst.parent is None else json.dumps(inst.parent),
                json.dumps(inst.runtime),
                inst.status_input,
            ),
        )

    def query_instances(
        self,
        *,
        created_from: str | None = None,
        created_to: str | None = None,
        statuses: Collection[str] = (),
        prefix: str | None = None,
        after: tuple[str, str] | None = None,
        limit: int | None = None,
    ) -> list[InstanceRow]:
        """Instances ordered by (created_time, instance_id), keyset-paged after `after`."""
        clauses: list[str] = []
        params: list[Any] = []
        if created_from is not None:
            clauses.append("created_time >= ?")
            params.append(created_from)
        if created_to is not None:
            clauses.append("created_time <= ?")
            params.append(created_to)
        if statuses:
            clauses.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(statuses)
        if prefix:
            clauses.append("substr(instance_id, 1, ?) = ?")
            params.extend([len(prefix), prefix])
        if after is not None:
            clauses.append("(created_time > ? OR (created_time = ? AND instance_id > ?))")
            params.extend([after[0], after[0], after[1]])
        sql = "SELECT * FROM instances"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_time, instance_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_instance(row) for row in self._db.execute(sql, params).fetchall()]

    def unfinished_instances(self, terminal: Collection[str]) -> list[InstanceRow]:
        marks = ", ".join("?" for _ in terminal)
        sql = f"SELECT * FROM instances WHERE status NOT IN ({marks}) ORDER BY created_time"  # noqa: S608
        return [_instance(row) for row in self._db.execute(sql, list(terminal)).fetchall()]

    def delete_instance(self, instance_id: str) -> bool:
        """Remove the instance and everything it owns."""
        with self.transaction():
            cursor = self._db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))
            self.clear_execution(instance_id)
        return cursor.rowcount > 0

    def clear_execution(self, instance_id: str) -> None:
        """Forget an execution's history, inbox and pending work (replace, continue-as-new)."""
        for table in ("history", "inbox", "work"):
            self._db.execute(f"DELETE FROM {table} WHERE instance_id = ?", (instance_id,))  # noqa: S608

    def clear_execution_work(self, instance_id: str) -> None:
        """Drop pending work and unread messages of an execution that has ended."""
        for table in ("inbox", "work"):
            self._db.execute(f"DELETE FROM {table} WHERE instance_id = ?", (instance_id,))  # noqa: S608

    # history

    def load_history(self, instance_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,)
        ).fetchall()
        return [json.loads(row["event"]) for row in rows]

    def append_history(self, instance_id: str, events: list[dict[str, Any]]) -> None:
        row = self._db.execute(
            "SELECT COALESCE(MAX(seq), -1) AS last FROM history WHERE instance_id = ?",
            (instance_id,),
        ).fetchone()
        start = int(row["last"]) + 1
        self._db.executemany(
            "INSERT INTO history (instance_id, seq, event) VALUES (?, ?, ?)",
            [(instance_id, start + i, json.dumps(event)) for i, event in enumerate(events)],
        )

    # inbox

    def add_inbox(self, instance_id: str, execution_id: str, event: dict[str, Any]) -> int:
        cursor = self._db.execute(
            "INSERT INTO inbox (instance_id, execution_id, event) VALUES (?, ?, ?)",
            (instance_id, execution_id, json.dumps(event)),
        )
        return int(cursor.lastrowid or 0)

    def inbox(self, instance_id: str) -> list[InboxMessage]:
        rows = self._db.execute(
            "SELECT * FROM inbox WHERE instance_id = ? ORDER BY msg_id", (instance_id,)
        ).fetchall()
        return [
            InboxMessage(
                msg_id=row["msg_id"],
                instance_id=row["instance_id"],
                execution_id=row["execution_id"],
                event=json.loads(row["event"]),
            )
            for row in rows
        ]

    def delete_inbox(self, msg_ids: Collection[int]) -> None:
        self._db.executemany("DELETE FROM inbox WHERE msg_id = ?", [(i,) for i in msg_ids])

    # work

    def add_work(
        self,
        *,
        instance_id: str,
        execution_id: str,
        kind: str,
        task_id: int,
        name: str | None = None,
        input_json: str | None = None,
        fire_at: str | None = None,
    ) -> WorkItem:
        cursor = self._db.execute(
            "INSERT INTO work (instance_id, execution_id, kind, task_id, name, input, fire_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (instance_id, execution_id, kind, task_id, name, input_json, fire_at),
        )
        return WorkItem(
            work_id=int(cursor.lastrowid or 0),
            instance_id=instance_id,
            execution_id=execution_id,
            kind=kind,
            task_id=task_id,
            name=name,
            input=input_json,
            fire_at=fire_at,
        )

    def delete_work(self, work_id: int) -> bool:
        """True if the item was still pending (so its result still counts)."""
        cursor = self._db.execute("DELETE FROM work WHERE work_id = ?", (work_id,))
        return cursor.rowcount > 0

    def delete_timer(self, instance_id: str, task_id: int) -> bool:
        cursor = self._db.execute(
            "DELETE FROM work WHERE instance_id = ? AND kind = 'timer' AND task_id = ?",
            (instance_id, task_id),
        )
        return cursor.rowcount > 0

    def work_items(self, instance_id: str | None = None) -> list[WorkItem]:
        if instance_id is None:
            rows = self._db.execute("SELECT * FROM work ORDER BY work_id").fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM work WHERE instance_id = ? ORDER BY work_id", (instance_id,)
            ).fetchall()
        return [
            WorkItem(
                work_id=row["work_id"],
                instance_id=row["instance_id"],
                execution_id=row["execution_id"],
                kind=row["kind"],
                task_id=row["task_id"],
                name=row["name"],
                input=row["input"],
                fire_at=row["fire_at"],
            )
            for row in rows
        ]

    # entities

    def get_entity(self, entity_id: str) -> str | None:
        """The entity's state JSON text, or None if it does not exist."""
        row = self._db.execute(
            "SELECT state FROM entities WHERE entity_id = ?", (entity_id,)
        ).fetchone()
        return None if row is None else str(row["state"])

    def put_entity(self, entity_id: str, state_json: str | None, when: str) -> None:
        """Write the state; None deletes the entity (it no longer exists)."""
        if state_json is None:
            self._db.execute("DELETE FROM entities WHERE entity_id = ?", (entity_id,))
            return
        self._db.execute(
            "INSERT OR REPLACE INTO entities (entity_id, state, last_modified) VALUES (?, ?, ?)",
            (entity_id, state_json, when),
        )

    def add_entity_op(
        self,
        entity_id: str,
        name: str,
        input_json: str | None,
        *,
        request_id: str | None = None,
        parent_instance_id: str | None = None,
        parent_execution_id: str | None = None,
    ) -> int:
        cursor = self._db.execute(
            "INSERT INTO entity_ops (entity_id, name, input, request_id, parent_instance_id,"
            " parent_execution_id) VALUES (?, ?, ?, ?, ?, ?)",
            (entity_id, name, input_json, request_id, parent_instance_id, parent_execution_id),
        )
        return int(cursor.lastrowid or 0)

    def entity_ops(self, entity_id: str, limit: int) -> list[EntityOp]:
        rows = self._db.execute(
            "SELECT * FROM entity_ops WHERE entity_id = ? ORDER BY op_id LIMIT ?",
            (entity_id, limit),
        ).fetchall()
        return [
            EntityOp(
                op_id=row["op_id"],
                entity_id=row["entity_id"],
                name=row["name"],
                input=row["input"],
                request_id=row["request_id"],
                parent_instance_id=row["parent_instance_id"],
                parent_execution_id=row["parent_execution_id"],
            )
            for row in rows
        ]

    def delete_entity_ops(self, op_ids: Collection[int]) -> None:
        self._db.executemany("DELETE FROM entity_ops WHERE op_id = ?", [(i,) for i in op_ids])

    def entities_with_ops(self) -> list[str]:
        rows = self._db.execute(
            "SELECT entity_id FROM entity_ops GROUP BY entity_id ORDER BY MIN(op_id)"
        ).fetchall()
        return [str(row["entity_id"]) for row in rows]


def _instance(row: sqlite3.Row) -> InstanceRow:
    return InstanceRow(
        instance_id=row["instance_id"],
        execution_id=row["execution_id"],
        name=row["name"],
        status=row["status"],
        input=row["input"],
        output=row["output"],
        custom_status=row["custom_status"],
        created_time=row["created_time"],
        last_updated_time=row["last_updated_time"],
        parent=None if row["parent"] is None else json.loads(row["parent"]),
        runtime=json.loads(row["runtime"]),
        status_input=row["status_input"],
    )
