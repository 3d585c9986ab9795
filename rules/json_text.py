"""JSON as the API reads it: RFC 8259's JSON, without the leniencies of Python's parser.

``json.loads`` takes ``NaN``, ``Infinity`` and ``-Infinity`` as numbers, and a key repeated
within one object silently as its last value (``{"prompt": "x", "prompt": "y"}`` is a request
for "y" that a proxy or log reading the first sees as "x"). Every JSON the API reads from a
caller (a request body, a manifest's line, a multipart request part) goes through
``strict_json``, which refuses both, naming the problem.
"""

from __future__ import annotations

import json
from typing import Any

# How much of a repeated key a message repeats.
_KEY_SHOWN = 64


class JsonRefused(ValueError):
    """JSON that the standard parser takes but the API does not: what it is is the message."""


def _no_constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not JSON (RFC 8259 has no such number)")


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for key, item in pairs:
        if key in value:
            raise JsonRefused(f"the key {key[:_KEY_SHOWN]!r} appears twice in one object")
        value[key] = item
    return value


def strict_json(text: str | bytes) -> Any:
    """``json.loads`` without its leniencies: ``NaN``, ``Infinity`` and ``-Infinity`` are
    refused, and so is a key repeated within one object (which would silently take the last).
    Raises JsonRefused (a ValueError) naming the problem, ValueError for text that is not
    JSON at all."""
    return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_repeats)
