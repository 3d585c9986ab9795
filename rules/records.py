"""How a typed record is read back from JSON: the schema version rule, in one place.

Records that outlive a deployment (the orchestration input and output in the task hub's
history, the progress and cancel records in Blob) carry ``"v"``, their schema version. The rule
for reading one:

- ``v`` equal to the current version: read as it is;
- ``v`` missing: version 0, the layout written before records were versioned, which every
  reader still understands (its fields are a subset of version 1's, with the same names);
- ``v`` newer than this code knows (a record written by a newer deployment, read by an older
  worker during a rolling upgrade): ``RecordUnreadable``, never a guess. Callers treat an
  unreadable record as the most cautious reading allows (an attempt record as a possible send,
  a status answer as a 503).

A record that is not a JSON object, or lacks a field it must have, is ``RecordUnreadable`` too.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from rules.errors import ImageJobError

F = TypeVar("F", bound=Callable[..., Any])


class RecordUnreadable(ImageJobError):
    """A stored record could not be read: not JSON, a field missing, or an unknown version."""

    def __init__(self, kind: str, problem: str, *, job_id: str | None = None) -> None:
        self.kind = kind
        super().__init__(f"{kind} record: {problem}", job_id=job_id)


def checked_version(data: Mapping[str, Any], kind: str, current: int) -> int:
    """The record's schema version; RecordUnreadable when it is newer than ``current``."""
    version = data.get("v", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise RecordUnreadable(kind, f"schema version {version!r} is not a version")
    if version > current:
        raise RecordUnreadable(kind, f"schema version {version} is newer than {current}")
    return version


def as_object(value: object, kind: str) -> dict[str, Any]:
    """``value`` as a JSON object: parsed when it is JSON text (the durable client hands some
    fields over as text), RecordUnreadable when it is neither."""
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            raise RecordUnreadable(kind, "not JSON") from None
    if not isinstance(value, dict):
        raise RecordUnreadable(kind, f"a JSON object was expected, not {type(value).__name__}")
    return value


def required(data: Mapping[str, Any], name: str, kind: str) -> Any:
    if name not in data:
        raise RecordUnreadable(kind, f"field {name!r} is missing")
    return data[name]


def reading(kind: str) -> Callable[[F], F]:
    """Decorate a ``from_json``: whatever a record that breaks its own shape raises (a missing
    key, a wrong type, a value no enum has) becomes RecordUnreadable naming the record."""

    def decorate(from_json: F) -> F:
        @functools.wraps(from_json)
        def read(*args: Any, **kwargs: Any) -> Any:
            try:
                return from_json(*args, **kwargs)
            except RecordUnreadable:
                raise
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise RecordUnreadable(kind, f"malformed ({type(exc).__name__})") from None

        return read  # type: ignore[return-value]

    return decorate


# The optional fields of a record read back: None, or a value of the field's type. Anything else
# breaks the record: these raise TypeError or ValueError, which ``reading`` makes RecordUnreadable
# (a record that is wrong is never half read).


def optional_text(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"text was expected, not {type(value).__name__}")
    return value


def optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def optional_seconds(value: Any) -> float | None:
    """An optional time or duration: None, or a number (float() raises on anything else)."""
    return None if value is None else float(value)
