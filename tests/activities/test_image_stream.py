"""Image answers decoded as their bytes arrive (activities.image_stream).

The SSE parser is held against httpx-sse, which read the streams before it, on every dialect of
test_stream_dialects.py and on generated streams, split at random points; the JSON scanner
against json.loads + b64decode on generated objects. Malformed input fails as it failed before.
And the memory it holds: a 16 MB image streamed in 64 KiB pieces is never copied on the heap.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import random
import time
import tracemalloc
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.image_stream import (
    EVENT_IMAGE,
    ImageBuffer,
    SseParser,
    StreamedJson,
)
from activities.route_client import RouteCall, call_route
from rules.settings import Timeouts
from rules.timing import Clocks
from tests.activities.test_generate import attempt, job, png
from tests.activities.test_stream_dialects import FAILED, SAVED, completed, data_only, named
from tests.activities.test_stream_dialects import partial as partial_event
from tests.fakes import InMemoryStore


def httpx_sse_events(body: bytes) -> list[tuple[str, str]]:
    """What httpx-sse makes of ``body``: each event's name and data text."""

    async def read() -> list[tuple[str, str]]:
        response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        return [(e.event, e.data) async for e in EventSource(response).aiter_sse()]

    return asyncio.run(read())


def parsed_events(body: bytes, cuts: Sequence[int]) -> list[tuple[str, str]]:
    """What SseParser makes of ``body`` arriving in pieces cut at ``cuts`` (nothing decoded:
    the data text whole)."""
    parser = SseParser(wanted=lambda path: False)
    events, start = [], 0
    for end in [*sorted(cuts), len(body)]:
        events += [(e.event, e.text()) for e in parser.feed(body[start:end])]
        start = end
    return events


EDGES = {
    "a final CR ends the last line": "data: x\r\r",
    "an id makes every blank line an event": "id: 5\n\n\n: c\n\n",
    "a data field without a colon": "data\n\n",
    "only one leading space is stripped": "data:  two\n\n",
    "an event field without a colon": "event\ndata:x\n\n",
    "retry as int() reads it": "retry: 1_0\ndata\n\nretry: x\n\n",
    "a field name too long to be one": "x" * 40 + ": y\n" + "y" * 40 + "\ndata: y\n\n",
    "CRLF between data lines": "data: a\r\ndata: b\r\n\r\n",
    "UTF-8 in data and names": "event: é\ndata: é 𝄞\n\n",
    "an id with NUL is ignored": "id: a\0b\ndata: 1\n\n",
    "an event never ended by a blank line": "data: 1\n\ndata: 2\n",
    "empty": "",
}


@pytest.mark.parametrize(
    "text",
    [*SAVED.values(), *(body for body, _ in FAILED.values()), *EDGES.values()],
    ids=[*SAVED, *FAILED, *EDGES],
)
def test_events_are_split_as_httpx_sse_splits_them_wherever_the_pieces_end(text: str):
    body = text.encode()
    expected = httpx_sse_events(body)
    rng = random.Random(body)
    assert parsed_events(body, []) == expected
    assert parsed_events(body, range(1, len(body))) == expected  # a byte at a time
    for _ in range(20):
        cuts = [rng.randrange(len(body) + 1) for _ in range(rng.randrange(1, 8))]
        assert parsed_events(body, cuts) == expected, cuts


LINES = st.sampled_from(
    [
        "event: image_generation.partial_image",
        "event:completed",
        "event",
        'data: {"type": "x", "b64_json": "QUJD"}',
        "data: [DONE]",
        "data",
        "data:",
        "data:  spaced",
        "id: 7",
        "id",
        "retry: 3000",
        "retry: soon",
        ": keep-alive",
        ":",
        "unknown: field",
        "",
        "",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(st.tuples(LINES, st.sampled_from(["\n", "\r", "\r\n"])), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_generated_streams_are_split_as_httpx_sse_splits_them(
    lines: list[tuple[str, str]], cuts: list[int]
):
    body = "".join(line + end for line, end in lines).encode()
    assert parsed_events(body, [c for c in cuts if c <= len(body)]) == httpx_sse_events(body)


def scanned(text: bytes, cuts: Sequence[int]) -> StreamedJson:
    answer = StreamedJson(lambda path: path == EVENT_IMAGE)
    start = 0
    for end in [*sorted(cuts), len(text)]:
        answer.feed(text[start:end])
        start = end
    return answer


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    before=st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3),
    after=st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3),
    image=st.binary(max_size=300),
    slashes=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=8),
)
def test_the_image_string_is_decoded_and_the_rest_parses_as_before(
    before: dict[str, Any],
    after: dict[str, Any],
    image: bytes,
    slashes: bool,
    cuts: list[int],
):
    before.pop("b64_json", None)
    after.pop("b64_json", None)
    item = {**before, "b64_json": base64.b64encode(image).decode(), **after}
    text = json.dumps(item)
    if slashes:  # some encoders write "/" as "\/"
        text = text.replace("/", "\\/")
    answer = scanned(text.encode(), [c for c in cuts if c <= len(text)])
    parsed = answer.loads()
    assert parsed == {**json.loads(text), "b64_json": ""}
    assert bytes(answer.image(parsed).view()) == base64.b64decode(json.loads(text)["b64_json"])


def test_only_the_wanted_path_is_taken_out_and_an_answer_has_one_per_item():
    images = [png(16, 8), png(8, 16)]
    body = {
        "created": 1,
        "data": [{"b64_json": base64.b64encode(i).decode(), "note": "x"} for i in images],
        "usage": {"b64_json": "kept"},
    }
    answer = StreamedJson(
        lambda path: len(path) == 3 and path[0] == "data" and path[2] == "b64_json"
    )
    answer.feed(json.dumps(body).encode())
    parsed = answer.loads()
    assert parsed["usage"] == {"b64_json": "kept"}
    assert [item["b64_json"] for item in parsed["data"]] == ["", ""]
    decoded = [answer.image(item, ("data", k, "b64_json")) for k, item in enumerate(parsed["data"])]
    assert [bytes(d.view()) for d in decoded] == images


def test_a_string_that_is_not_one_of_ours_is_decoded_as_before():
    answer = scanned(b'{"b64_json": "", "other": "QUJD"}', [])
    assert bytes(answer.image(answer.loads()).view()) == b""
    # A gateway that sends the image under the key escaped: found by json.loads, decoded so.
    answer = scanned(b'{"b64\\u005fjson": "QUJD"}', [3])
    assert bytes(answer.image(answer.loads()).view()) == b"ABC"


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        ("QUJD", b"ABC"),
        ("QQ==", b"A"),
        ("QQ==QUJD", b"A"),  # b64decode stops at a padded group
        ("QUJD=", b"ABC"),
        ("QU\\nJD", b"ABC"),  # an escaped newline: skipped, as b64decode skips it
        ("\\u0051UJD", b"ABC"),
        ("", b""),
    ],
)
def test_odd_base64_decodes_as_b64decode_decodes_it(value: str, decoded: bytes):
    text = '{"b64_json": "' + value + '"}'
    assert base64.b64decode(json.loads(text)["b64_json"]) == decoded
    every_byte: list[Sequence[int]] = [[], range(1, len(text))]
    for cuts in every_byte:
        answer = scanned(text.encode(), cuts)
        assert bytes(answer.image(answer.loads()).view()) == decoded


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"b64_json": "QUJ"}', binascii.Error),  # padding: b64decode's error, on taking it
        ('{"b64_json": "QUJDé"}', ValueError),  # not ASCII: b64decode refuses it
    ],
)
def test_base64_that_does_not_decode_fails_when_the_image_is_taken(
    text: str, error: type[Exception]
):
    with pytest.raises(error):
        base64.b64decode(json.loads(text)["b64_json"])
    answer = scanned(text.encode(), [14])
    parsed = answer.loads()  # the event itself reads: only its image fails
    with pytest.raises(error):
        answer.image(parsed)


@pytest.mark.parametrize(
    "text",
    ['{"b64_json": "QU\nJD"}', '{"b64_json": "QU\\xJD"}', '{"b64_json": "QUJD"', '{"b64_json"'],
)
def test_text_json_loads_refuses_is_refused(text: str):
    refused = r"Invalid control character|Invalid \\escape|Expecting"
    with pytest.raises(ValueError, match=refused):
        json.loads(text)
    with pytest.raises(ValueError, match=refused):
        scanned(text.encode(), [16]).loads()


def test_an_ignored_event_with_an_image_that_does_not_decode_stays_ignored():
    broken = data_only({"type": "response.created", "b64_json": "QUJ"})
    not_json = named("notice", '{"b64_json": "QU\u0001JD"}')
    content = broken + not_json + data_only(partial_event(0)) + data_only(completed())
    store = InMemoryStore()
    result = attempt(job(), store, lambda request: streaming([content.encode()]))
    assert result.ok, result.failure
    assert store.get(name="job-1/image.png") == png(1024, 1024)


def test_an_image_buffer_grows_in_place_and_hands_out_views():
    buffer = ImageBuffer()
    pieces = [bytes([k]) * 700_001 for k in range(10)]  # past the first capacity, twice
    for piece in pieces:
        buffer.extend(piece)
    assert len(buffer) == 7_000_010
    assert bytes(buffer.view()) == b"".join(pieces)
    assert bytes(ImageBuffer(b"abc").view()) == b"abc"


# --- memory ------------------------------------------------------------------------------------

MIB = 1024 * 1024
CHUNK = 64 * 1024


def image_stream_chunks(image: bytes) -> list[bytes]:
    """A completed event carrying ``image``, in the pieces a socket would give."""
    b64 = base64.b64encode(image).decode()
    event = named(
        "image_generation.completed",
        {"type": "image_generation.completed", "b64_json": b64, "size": "4096x4096"},
    )
    body = event.encode()
    return [body[k : k + CHUNK] for k in range(0, len(body), CHUNK)]


def streaming(chunks: list[bytes]) -> httpx.Response:
    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Body())


def test_a_16_mb_image_is_never_copied_on_the_heap_by_the_parser():
    image = random.Random(16).randbytes(16 * MIB)
    chunks = image_stream_chunks(image)
    parser = SseParser()
    tracemalloc.start()
    try:
        [event] = [e for chunk in chunks for e in parser.feed(chunk)]
        assert event.data is not None
        decoded = event.data.image(event.data.loads())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Before: the line's pieces, the line, the value, the parsed string, its ASCII copy (21 MB
    # each) and the image (16 MB). Now the heap holds a few pieces of 64 KiB; the image is in
    # its ImageBuffer's map (not heap memory, and not traced: its size is checked below).
    assert peak < 2 * MIB, f"{peak / MIB:.1f} MiB traced"
    assert len(decoded) == len(image)
    assert hashlib.sha256(decoded.view()).digest() == hashlib.sha256(image).digest()


def test_a_16_mb_image_read_from_the_route_is_held_once():
    image = random.Random(17).randbytes(16 * MIB)
    chunks = image_stream_chunks(image)
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: streaming(chunks)))
    call = RouteCall(url="http://route.test/images/generations", headers={}, body={})
    received: list[ImageBuffer] = []

    async def read() -> None:
        result = await call_route(
            client,
            call,
            timeouts=Timeouts(),
            clocks=Clocks(started_at_iso="", started=time.monotonic()),
            on_partial=_ignore_partial,
            on_final=_nothing,
        )
        assert result.failure is None, result.failure
        received.extend(result.images)

    tracemalloc.start()
    try:
        asyncio.run(read())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # 0.2 MiB when written: httpx's and asyncio's own pieces; the bound is generous on purpose.
    assert peak < 4 * MIB, f"{peak / MIB:.1f} MiB traced"
    [decoded] = received
    assert hashlib.sha256(decoded.view()).digest() == hashlib.sha256(image).digest()


async def _ignore_partial(index: int, data: ImageBuffer) -> None:
    return None


async def _nothing() -> None:
    return None
