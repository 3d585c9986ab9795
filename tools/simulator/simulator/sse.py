"""Wire encoding of image payloads: SSE events and JSON bodies that carry huge base64 strings.

A 3840x2160 PNG travels as about 21 MB of base64 inside ONE SSE data line (or one JSON field).
Building that line as a Python string would hold the image three times over (bytes, base64,
JSON text). Here a payload is a sequence of byte pieces: a small JSON head, the base64 of the
image produced slice by slice, a small JSON tail. The writer sends them one at a time, so the
server never holds more than the image bytes plus one slice.

The JSON is assembled by hand only around the base64 field, which needs no escaping (the base64
alphabet has no character JSON escapes); every other value goes through ``json.dumps``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "B64_SLICE",
    "DONE",
    "KEEP_ALIVE",
    "b64_length",
    "b64_pieces",
    "error_event",
    "image_event",
    "images_response",
]

# 3 * 2**16 input bytes -> 256 KiB of base64 per piece: a multiple of 3, so pieces concatenate.
B64_SLICE = 3 * 2**16
KEEP_ALIVE = b": keep-alive\n\n"
# The end-of-stream line the SDK knows (``data: [DONE]``), sent in the ``data_only`` dialect.
DONE = b"data: [DONE]\n\n"


def b64_length(raw_length: int) -> int:
    """Length of the padded base64 text of ``raw_length`` bytes."""
    return 4 * ((raw_length + 2) // 3)


def b64_pieces(raw: bytes) -> Iterator[bytes]:
    """The base64 text of ``raw`` in slices (no copy of the whole text is ever made)."""
    view = memoryview(raw)
    for start in range(0, len(raw), B64_SLICE):
        yield base64.b64encode(view[start : start + B64_SLICE])


def _json_tail(rest: Mapping[str, Any]) -> bytes:
    """``,"k":v,...}`` for the fields after the base64 field (or ``}`` when there are none)."""
    if not rest:
        return b"}"
    return b"," + json.dumps(dict(rest), separators=(",", ":")).encode()[1:]


def image_event(
    event: str, fields: Mapping[str, Any], image: bytes, *, named: bool = True
) -> Iterator[bytes]:
    """One SSE event ``event: <name>`` whose data is ``{"type":..., "b64_json":..., **fields}``.

    ``fields`` must not contain ``type`` or ``b64_json``; ``type`` is the event name, as in the
    Images API where the two always agree. ``named=False``: no ``event:`` line, only the data
    line (the ``data_only`` dialect of some compatible gateways; the JSON ``type`` names it).
    """
    head = json.dumps({"type": event}, separators=(",", ":")).encode()[:-1]
    name = b"event: " + event.encode() + b"\n" if named else b""
    yield name + b"data: " + head + b',"b64_json":"'
    yield from b64_pieces(image)
    yield b'"' + _json_tail(fields) + b"\n\n"


def error_event(body: Mapping[str, Any], *, named: bool = True) -> bytes:
    """A complete SSE ``event: error`` (without the ``event:`` line when not ``named``)."""
    data = json.dumps(dict(body), separators=(",", ":")).encode()
    return (b"event: error\n" if named else b"") + b"data: " + data + b"\n\n"


def images_response(
    head: Mapping[str, Any], images: Sequence[bytes], tail: Mapping[str, Any]
) -> Iterator[bytes]:
    """The non-streamed body ``{**head, "data": [{"b64_json": ...}, ...], **tail}``."""
    opening = json.dumps(dict(head), separators=(",", ":")).encode()[:-1]
    yield opening + (b',"data":[' if head else b'"data":[')
    for index, image in enumerate(images):
        yield (b"," if index else b"") + b'{"b64_json":"'
        yield from b64_pieces(image)
        yield b'"}'
    yield b"]" + _json_tail(tail)
