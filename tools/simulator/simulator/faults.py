"""Scripted faults: what to break, for which requests, how many times.

Tests of the whole project need the failures seen in the field (field report B, the error table of
docs/reference/gpt-image-2-api.md) on demand and in order, so faults are queued from the config file
or ``POST /_sim/faults`` as JSON, parsed here into ``FaultSpec`` (a clear ``ValueError`` naming the
bad field), and taken by the server for the next matching requests. This module only decides WHICH
fault applies; the server acts it out.

JSON form: ``{"kind": ..., "count": 1, "match": {"route", "deployment", "endpoint", "stream",
"size"}, ...kind parameters}``. Kinds and their parameters (defaults in brackets):

- ``http_error``: ``status`` (required, 400-599), ``type``, ``code``, ``message``, ``param``;
  before any byte
- ``slow_first_byte``: ``delay_s`` (required, service seconds, scaled by the time scale)
- ``mid_stream_error``: ``after_partials`` [0], ``style`` azure|openai [azure],
  ``error_type`` [server_error], ``code``, ``message``, ``param``
- ``stream_without_completed``: ``after_partials`` [0]
- ``connection_reset``: ``at`` before_headers|after_partials [before_headers],
  ``after_partials`` [0]
- ``moderation_blocked``; ``insufficient_quota``
- ``content_filter``: ``style`` contentFilter|content_filter [contentFilter]
- ``rate_limited``: ``retry_after_s`` [1.0], ``header_style``
  openai|azure_minus_one|retry_after_only|message_only [openai]
- ``auth_error``: ``status`` 401|403 [401]

Batch API kinds (``simulator.batches``), never taken by a synchronous request, and synchronous
kinds are never taken by a batch:

- ``batch_item_error``: the next ``count`` batch items fail with an HTTP error in the error file
  (``response.status_code`` = ``status`` [500], ``body`` the error envelope of ``type``,
  ``code``, ``message``, ``param``); not billable
- ``batch_item_timeout``: the next ``count`` batch items fail without an HTTP answer
  (``response: null``, ``error.code`` ``request_timeout``); not billable
- ``batch_expire``: the next ``count`` batches expire once ``after_items`` [0] of their items
  have run; the rest are written to the error file as ``batch_expired``
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Route = Literal["openai", "azure", "azure_v1"]

FaultStage = Literal["answer", "first_byte", "stream", "batch_item", "batch"]
"""Where a kind acts: ``answer`` replaces the response before any generation starts;
``first_byte`` holds the response of a generation back; ``stream`` changes the generation's
timeline (what is sent, and when it stops); ``batch_item`` replaces one batch item's result;
``batch`` changes a whole batch's course."""

REQUEST_STAGES: frozenset[FaultStage] = frozenset({"answer", "first_byte", "stream"})
"""The stages a synchronous request takes faults of (``FaultQueue.take``'s default)."""


@dataclass(frozen=True)
class _Kind:
    params: frozenset[str]
    stage: FaultStage


_KINDS: dict[str, _Kind] = {
    "http_error": _Kind(frozenset({"status", "type", "code", "message", "param"}), "answer"),
    "slow_first_byte": _Kind(frozenset({"delay_s"}), "first_byte"),
    "mid_stream_error": _Kind(
        frozenset({"after_partials", "style", "error_type", "code", "message", "param"}),
        "stream",
    ),
    "stream_without_completed": _Kind(frozenset({"after_partials"}), "stream"),
    "connection_reset": _Kind(frozenset({"at", "after_partials"}), "stream"),
    "moderation_blocked": _Kind(frozenset(), "answer"),
    "content_filter": _Kind(frozenset({"style"}), "answer"),
    "rate_limited": _Kind(frozenset({"retry_after_s", "header_style"}), "answer"),
    "insufficient_quota": _Kind(frozenset(), "answer"),
    "auth_error": _Kind(frozenset({"status"}), "answer"),
    "batch_item_error": _Kind(
        frozenset({"status", "type", "code", "message", "param"}), "batch_item"
    ),
    "batch_item_timeout": _Kind(frozenset(), "batch_item"),
    "batch_expire": _Kind(frozenset({"after_items"}), "batch"),
}
_COMMON = frozenset({"kind", "count", "match"})
_MATCH_KEYS = ("route", "deployment", "endpoint", "stream", "size")
_SIZE = re.compile(r"[0-9]+x[0-9]+|auto")


@dataclass(frozen=True)
class RequestContext:
    """What a fault can be matched on. ``size`` is the resolved ``WxH`` (None if unknown yet)."""

    route: str
    deployment: str | None
    endpoint: str
    stream: bool
    size: str | None


@dataclass(frozen=True)
class FaultMatch:
    """Which requests a fault applies to; None matches anything."""

    route: str | None = None
    deployment: str | None = None
    endpoint: str | None = None
    stream: bool | None = None
    size: str | None = None

    def fits(self, ctx: RequestContext) -> bool:
        return all(
            wanted is None or wanted == getattr(ctx, name)
            for name, wanted in (
                ("route", self.route),
                ("deployment", self.deployment),
                ("endpoint", self.endpoint),
                ("stream", self.stream),
                ("size", self.size),
            )
        )


@dataclass(frozen=True)
class FaultSpec:
    """One parsed fault. Parameters a kind does not use stay at their defaults."""

    kind: str
    count: int = 1
    match: FaultMatch = FaultMatch()
    status: int | None = None
    type: str | None = None
    code: str | None = None
    message: str | None = None
    param: str | None = None
    delay_s: float | None = None
    after_partials: int = 0
    style: str | None = None
    error_type: str = "server_error"
    at: str = "before_headers"
    retry_after_s: float = 1.0
    header_style: str = "openai"
    after_items: int = 0

    @property
    def stage(self) -> FaultStage:
        """Where this fault acts (see ``FaultStage``)."""
        return _KINDS[self.kind].stage

    def to_dict(self) -> dict[str, object]:
        """The JSON form again, with only the parameters this kind uses."""
        body: dict[str, object] = {"kind": self.kind, "count": self.count}
        match = {key: value for key, value in asdict(self.match).items() if value is not None}
        if match:
            body["match"] = match
        values = asdict(self)
        for name in sorted(_KINDS[self.kind].params):
            if values[name] is not None:
                body[name] = values[name]
        return body


# --- parsing ----------------------------------------------------------------------------------


def _fail(field_name: str, problem: str) -> ValueError:
    return ValueError(f"fault field {field_name!r}: {problem}")


def _string(
    obj: Mapping[str, object],
    name: str,
    allowed: tuple[str, ...] | None = None,
    *,
    label: str | None = None,
) -> str:
    value = obj[name]
    shown = label or name
    if not isinstance(value, str) or value == "":
        raise _fail(shown, f"must be a non-empty string, got {value!r}")
    if allowed is not None and value not in allowed:
        raise _fail(shown, f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _integer(obj: Mapping[str, object], name: str, low: int, high: int | None = None) -> int:
    value = obj[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(name, f"must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise _fail(name, f"must be {bounds}, got {value}")
    return value


def _seconds(obj: Mapping[str, object], name: str) -> float:
    value = obj[name]
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise _fail(name, f"must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _parse_match(value: object) -> FaultMatch:
    if not isinstance(value, Mapping):
        raise _fail("match", f"must be an object, got {value!r}")
    for key in value:
        if key not in _MATCH_KEYS:
            raise _fail(f"match.{key}", f"is not known (known: {', '.join(_MATCH_KEYS)})")
    stream = value.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _fail("match.stream", f"must be true or false, got {stream!r}")
    found: dict[str, str | None] = {}
    allowed: dict[str, tuple[str, ...] | None] = {
        "route": ("openai", "azure", "azure_v1"),
        "deployment": None,
        "endpoint": ("generations", "edits"),
        "size": None,
    }
    for key, choices in allowed.items():
        if value.get(key) is None:
            found[key] = None
            continue
        found[key] = _string(value, key, choices, label=f"match.{key}")
    size = found["size"]
    if size is not None and not _SIZE.fullmatch(size):
        raise _fail("match.size", f"must look like 2048x2048, got {size!r}")
    return FaultMatch(
        route=found["route"],
        deployment=found["deployment"],
        endpoint=found["endpoint"],
        stream=stream,
        size=size,
    )


def parse_fault(obj: Mapping[str, object]) -> FaultSpec:
    """A ``FaultSpec`` from its JSON form; ``ValueError`` naming the first bad field."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"a fault must be a JSON object, got {type(obj).__name__}")
    if "kind" not in obj:
        raise _fail("kind", f"is required (one of {', '.join(_KINDS)})")
    kind = _string(obj, "kind", tuple(_KINDS))
    known = _COMMON | _KINDS[kind].params
    for name in obj:
        if name not in known:
            raise _fail(name, f"is not known for kind {kind!r} (known: {', '.join(sorted(known))})")

    values: dict[str, Any] = {"kind": kind}
    if "count" in obj:
        values["count"] = _integer(obj, "count", 1)
    if "match" in obj:
        values["match"] = _parse_match(obj["match"])

    if kind == "http_error":
        if "status" not in obj:
            raise _fail("status", "is required for kind 'http_error'")
        values["status"] = _integer(obj, "status", 400, 599)
    if kind == "batch_item_error":
        values["status"] = _integer(obj, "status", 400, 599) if "status" in obj else 500
    if kind == "batch_expire" and "after_items" in obj:
        values["after_items"] = _integer(obj, "after_items", 0)
    if kind == "auth_error":
        values["status"] = 401
        if "status" in obj:
            status = _integer(obj, "status", 401, 403)
            if status not in (401, 403):
                raise _fail("status", f"must be 401 or 403, got {status}")
            values["status"] = status
    for name in ("type", "code", "message", "param"):
        if name in obj and obj[name] is not None:
            values[name] = _string(obj, name)
    if kind == "slow_first_byte":
        if "delay_s" not in obj:
            raise _fail("delay_s", "is required for kind 'slow_first_byte'")
        values["delay_s"] = _seconds(obj, "delay_s")
    if "after_partials" in obj:
        values["after_partials"] = _integer(obj, "after_partials", 0, 3)
    if kind == "mid_stream_error":
        values["style"] = "azure"
        if "style" in obj:
            values["style"] = _string(obj, "style", ("azure", "openai"))
        if "error_type" in obj:
            values["error_type"] = _string(obj, "error_type")
    if kind == "content_filter":
        values["style"] = "contentFilter"
        if "style" in obj:
            values["style"] = _string(obj, "style", ("contentFilter", "content_filter"))
    if kind == "connection_reset" and "at" in obj:
        values["at"] = _string(obj, "at", ("before_headers", "after_partials"))
    if kind == "rate_limited":
        if "retry_after_s" in obj:
            values["retry_after_s"] = _seconds(obj, "retry_after_s")
        if "header_style" in obj:
            values["header_style"] = _string(
                obj,
                "header_style",
                ("openai", "azure_minus_one", "retry_after_only", "message_only"),
            )
    return FaultSpec(**values)


# --- the queue --------------------------------------------------------------------------------


@dataclass
class _Queued:
    spec: FaultSpec
    remaining: int


class FaultQueue:
    """Faults waiting for matching requests, in the order they were queued. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Queued] = []

    def add(self, spec: FaultSpec) -> None:
        with self._lock:
            self._entries.append(_Queued(spec, spec.count))

    def take(
        self, ctx: RequestContext, *, stages: Collection[FaultStage] = REQUEST_STAGES
    ) -> FaultSpec | None:
        """The first queued fault of one of ``stages`` whose match fits ``ctx``; uses one of its
        count. A synchronous request asks for the default stages, a batch item for
        ``{"batch_item"}``, a batch for ``{"batch"}``."""
        with self._lock:
            for position, entry in enumerate(self._entries):
                if entry.spec.stage not in stages or not entry.spec.match.fits(ctx):
                    continue
                entry.remaining -= 1
                if entry.remaining == 0:
                    del self._entries[position]
                return entry.spec
        return None

    def pending(self) -> list[dict[str, object]]:
        """Queued faults as JSON objects, ``count`` being what is left of each."""
        with self._lock:
            return [entry.spec.to_dict() | {"count": entry.remaining} for entry in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
