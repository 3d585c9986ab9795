"""A job's durable history as the benchmarks read it: its round trips to the route's governor
and what each attempt's activity came back with.

The host's status query with ``showHistory=true&showHistoryOutput=true`` lists the events; an
entity call is an ``EventSent`` to ``@route@<name>`` answered by an ``EventRaised`` (named by
the request's id), a signal (the attempt's report) is an ``EventSent`` alone. So the time from
each answer back to the last ``EventSent`` before it is one round trip through the entity:
the operation waiting for its batch, the batch, the answer reaching the orchestration.

    history = JobHistory.of(status_json["historyEvents"])
    history.entity_round_trips_s, history.activity_results  # {"ok": 1, "admission_expired": 3}
    history.timer_lateness_s  # each durable timer: fired (its TimerFired) less its FireAt
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

GENERATE = "generate_image"


def event_time(text: str) -> float:
    """The history's timestamps (``2026-11-30T09:21:59.7933150Z``: seven decimals) as epoch s."""
    head, _, fraction = text.rstrip("Z").partition(".")
    moment = datetime.fromisoformat(head + "+00:00").timestamp()
    return moment + (float("0." + fraction) if fraction else 0.0)


def _result(value: Any) -> Mapping[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class JobHistory:
    entity_round_trips_s: tuple[float, ...] = ()
    # generate_image's results: "ok" or the failure kind -> how many.
    activity_results: Mapping[str, int] = field(default_factory=dict)
    # How late each durable timer fired: the TimerFired event's time less its FireAt (a queued
    # job's timer to ask the route again; a retry's wait).
    timer_lateness_s: tuple[float, ...] = ()

    @classmethod
    def of(cls, events: Sequence[Mapping[str, Any]]) -> JobHistory:
        trips: list[float] = []
        lateness: list[float] = []
        results: Counter[str] = Counter()
        last_sent: float | None = None
        for event in events:
            kind = event.get("EventType")
            if kind == "EventSent" and str(event.get("InstanceId", "")).startswith("@"):
                last_sent = event_time(event["Timestamp"])
            elif kind == "EventRaised" and last_sent is not None and _is_answer(event):
                trips.append(event_time(event["Timestamp"]) - last_sent)
                last_sent = None
            elif kind == "TimerFired" and event.get("FireAt"):
                lateness.append(event_time(event["Timestamp"]) - event_time(event["FireAt"]))
            elif kind == "TaskCompleted" and event.get("FunctionName") == GENERATE:
                result = _result(event.get("Result"))
                failure = result.get("failure") or {}
                results["ok" if result.get("ok") else str(failure.get("kind"))] += 1
        return cls(tuple(trips), dict(results), tuple(lateness))


def _is_answer(event: Mapping[str, Any]) -> bool:
    """An entity's answer is raised under the call's request id (a GUID); the job's own
    events (``cancel``) have names."""
    name = str(event.get("Name", ""))
    return len(name) == 36 and name.count("-") == 4
