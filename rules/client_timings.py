"""What a client reports of its own clocks after it showed a job's image, and how that lands in
the job's metadata.json: pure, so every refusal and the merge are tested without a host.

    timings = parse_client_timings(body, reported_at=iso_utc(now))   # or RequestInvalid (400)
    record = StoredMetadata.from_json(raw)                           # or RecordUnreadable
    new_bytes = record.with_client(timings)                          # metadata.json, updated

metadata.json is written once, by the finish activity, when the job ends; a client (the web page
at /api/ui) can only report its download and render times after that, having shown the image.
So the report is a read-modify-write of that blob (the HTTP edge does it under an ETag
condition) that adds or replaces one section, ``client``, and touches nothing else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rules.errors import RequestInvalid
from rules.job_records import REQUEST_SCHEMA_VERSION
from rules.records import as_object, checked_version, reading, required

# The request body's fields (camelCase, as every body and answer of the API) and the stored ones.
FIELDS = {"downloadMs": "download_ms", "renderMs": "render_ms"}
# The longest a client may say it took (ms): ten minutes. A bigger number is a broken clock (or
# a tab left asleep), not a measurement worth keeping.
MAX_MS = 600_000


@dataclass(frozen=True)
class ClientTimings:
    """A client's own clocks for a job's final image, in whole milliseconds: ``download_ms``
    from asking for the image to its last byte, ``render_ms`` from there to the image decoded
    and painted; ``reported_at`` is when the service took the report (ISO 8601 UTC)."""

    download_ms: int
    render_ms: int
    reported_at: str

    def to_json(self) -> dict[str, Any]:
        """The ``client`` section of metadata.json (snake_case, as everything stored)."""
        return {
            "download_ms": self.download_ms,
            "render_ms": self.render_ms,
            "reported_at": self.reported_at,
        }

    def answer(self) -> dict[str, Any]:
        """The section as the API answers it (camelCase)."""
        return {
            "downloadMs": self.download_ms,
            "renderMs": self.render_ms,
            "reportedAt": self.reported_at,
        }

    @classmethod
    @reading("client timings")
    def from_json(cls, data: Mapping[str, Any]) -> ClientTimings:
        return cls(
            download_ms=int(data["download_ms"]),
            render_ms=int(data["render_ms"]),
            reported_at=str(data["reported_at"]),
        )


def parse_client_timings(body: object, *, reported_at: str) -> ClientTimings:
    """A report's JSON body, ``{"downloadMs": n, "renderMs": n}``: both numbers of 0 to
    ``MAX_MS`` (fractions allowed: browsers measure in fractions of a millisecond; stored
    rounded). Anything else is RequestInvalid naming the field."""
    if not isinstance(body, dict):
        raise RequestInvalid("body", "invalid_type", "the body must be a JSON object")
    for name in body:
        if name not in FIELDS:
            raise RequestInvalid(
                str(name)[:64], "unknown_field", "only downloadMs and renderMs are taken"
            )
    values = {stored: _milliseconds(body, name) for name, stored in FIELDS.items()}
    return ClientTimings(
        download_ms=values["download_ms"], render_ms=values["render_ms"], reported_at=reported_at
    )


def _milliseconds(body: Mapping[str, object], name: str) -> int:
    if name not in body:
        raise RequestInvalid(name, "missing", f"{name} is required")
    value = body[name]
    # bool is an int to Python, never a duration; NaN and Infinity are what json.loads lets in.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestInvalid(name, "invalid_type", f"{name} must be a number of milliseconds")
    if not 0 <= value <= MAX_MS:
        raise RequestInvalid(name, "invalid_value", f"{name} must be 0 to {MAX_MS}")
    return round(value)


@dataclass(frozen=True)
class StoredMetadata:
    """metadata.json as read for an update: who may change it (the caller's digest the finish
    activity wrote) and the whole record, kept as it is apart from the ``client`` section."""

    job_id: str
    caller: str | None
    data: dict[str, Any]

    @classmethod
    @reading("metadata")
    def from_json(cls, raw: object) -> StoredMetadata:
        data = as_object(raw, "metadata")
        # A newer layout is refused, never rewritten: this code cannot know what it would lose.
        checked_version(data, "metadata", REQUEST_SCHEMA_VERSION)
        caller = data.get("caller")  # absent in a record of a deployment before callers
        return cls(
            job_id=str(required(data, "id", "metadata")),
            caller=caller if isinstance(caller, str) else None,
            data=data,
        )

    def with_client(self, timings: ClientTimings) -> bytes:
        """The record with ``client`` set to ``timings`` (the latest report wins), written as
        the finish activity writes it."""
        return json.dumps({**self.data, "client": timings.to_json()}, indent=2).encode()
