"""The simulator's ledger: one entry per request, saying what ran upstream and what was billed.

Tests of the whole project count duplicate generations with it (an SDK retry after a gateway cut
pays twice), so it records what a real service would bill, not what the client saw: a generation
that ran to completion after the client was cut off is billable. Entries never hold the prompt
text or a key: the request shape is `ImageRequest.shape()`.

Billing rules (see docs/simulator.md):
- a generation that runs to completion upstream is billable, whoever was still listening;
- a generation that fails mid-way (mid-stream error, stream ended without `completed`) is billable
  only when the setting `bill_failed_generations` is on (off by default: field report B's reporter
  saw no charge for worker crashes, which is UNCERTAIN);
- a request rejected before a generation started (validation, auth, rate limit, http_error,
  moderation, content filter) is never billable;
- a request of a batch (``billing: "batch"``, with its ``batch_id`` and ``custom_id``) is billed
  at ``batch.price_factor`` of the synchronous price (half by default) when it completes; its
  failures and the requests a batch never ran (expired, cancelled) are not billed.

    entries = sim.ledger()
    assert billable_count(entries) == 2
    assert count(entries, outcome="gateway_timeout") == 1
    batch_usd = total_cost(entries, billing="batch", batch_id=batch.id)
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "Ledger",
    "LedgerEntry",
    "billable_count",
    "completed_upstream_count",
    "count",
    "generations_started",
    "total_cost",
]


@dataclasses.dataclass
class LedgerEntry:
    """What the simulator knows about one request. Mutable while the request lives."""

    seq: int
    request_id: str
    route: str
    received_at: float
    apim_request_id: str | None = None
    region: str | None = None
    deployment: str | None = None
    endpoint: str | None = None
    shape: dict[str, Any] | None = None
    status: int | None = None
    outcome: str = "in_progress"
    generation_started: bool = False
    completed_upstream: bool = False
    billable: bool = False
    cost_usd: float = 0.0
    partials_sent: int = 0
    retry_count: int | None = None
    # "standard" (a synchronous request) or "batch" (one request of the batch ``batch_id``).
    billing: str = "standard"
    batch_id: str | None = None
    custom_id: str | None = None
    # Durations in the simulator's scaled time (what a test clock sees, what headers report).
    first_byte_s: float | None = None
    elapsed_s: float | None = None
    generation_s: float | None = None
    upstream_done_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _get(entry: LedgerEntry | Mapping[str, Any], name: str) -> Any:
    if isinstance(entry, LedgerEntry):
        return getattr(entry, name)
    return entry.get(name)


def _matches(entry: LedgerEntry | Mapping[str, Any], filters: Mapping[str, object]) -> bool:
    return all(_get(entry, key) == value for key, value in filters.items() if value is not None)


def count(entries: Iterable[LedgerEntry | Mapping[str, Any]], **filters: object) -> int:
    """Entries whose fields equal every given filter (``None`` filters are ignored)."""
    return sum(1 for entry in entries if _matches(entry, filters))


def billable_count(entries: Iterable[LedgerEntry | Mapping[str, Any]], **filters: object) -> int:
    """Billable generations, optionally filtered (``route="azure"``, ``deployment=...``)."""
    return sum(1 for entry in entries if _get(entry, "billable") and _matches(entry, filters))


def completed_upstream_count(
    entries: Iterable[LedgerEntry | Mapping[str, Any]], **filters: object
) -> int:
    return sum(
        1 for entry in entries if _get(entry, "completed_upstream") and _matches(entry, filters)
    )


def generations_started(
    entries: Iterable[LedgerEntry | Mapping[str, Any]], **filters: object
) -> int:
    return sum(
        1 for entry in entries if _get(entry, "generation_started") and _matches(entry, filters)
    )


def total_cost(entries: Iterable[LedgerEntry | Mapping[str, Any]], **filters: object) -> float:
    """Sum of ``cost_usd`` over billable entries."""
    return sum(
        float(_get(entry, "cost_usd") or 0.0)
        for entry in entries
        if _get(entry, "billable") and _matches(entry, filters)
    )


class Ledger:
    """Thread-safe list of entries; the server's loop writes, tests read from other threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LedgerEntry] = []
        self._seq = 0

    def open(self, *, request_id: str, route: str, **fields: Any) -> LedgerEntry:
        with self._lock:
            self._seq += 1
            entry = LedgerEntry(
                seq=self._seq, request_id=request_id, route=route, received_at=time.time(), **fields
            )
            self._entries.append(entry)
            return entry

    def update(self, entry: LedgerEntry, **fields: Any) -> None:
        with self._lock:
            for name, value in fields.items():
                if not hasattr(entry, name):
                    raise AttributeError(f"LedgerEntry has no field {name!r}")
                setattr(entry, name, value)

    def entries(self, since: int | None = None) -> list[LedgerEntry]:
        """Copies of the entries (seq > since when given), oldest first."""
        with self._lock:
            return [
                dataclasses.replace(entry, shape=dict(entry.shape) if entry.shape else None)
                for entry in self._entries
                if since is None or entry.seq > since
            ]

    def clear(self) -> None:
        """Forget every entry; sequence numbers keep growing so ``since`` stays meaningful."""
        with self._lock:
            self._entries.clear()
