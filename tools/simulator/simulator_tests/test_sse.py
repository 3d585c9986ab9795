"""Payload pieces: the base64 is produced in slices and reassembles exactly, as the SDK reads it."""

from __future__ import annotations

import base64
import json
import os

from openai._streaming import SSEDecoder

from simulator import sse


def test_b64_pieces_concatenate_to_the_standard_encoding():
    raw = os.urandom(sse.B64_SLICE * 2 + 5)
    pieces = list(sse.b64_pieces(raw))
    assert len(pieces) == 3
    assert b"".join(pieces) == base64.b64encode(raw)
    assert sse.b64_length(len(raw)) == len(base64.b64encode(raw))


def test_image_event_decodes_with_the_sdks_own_sse_decoder():
    raw = os.urandom(sse.B64_SLICE + 1)
    chunks = list(sse.image_event("image_generation.completed", {"size": "1024x1024"}, raw))

    (event,) = list(SSEDecoder().iter_bytes(iter(chunks)))

    assert event.event == "image_generation.completed"
    data = event.json()
    assert data["type"] == "image_generation.completed"
    assert base64.b64decode(data["b64_json"]) == raw
    assert data["size"] == "1024x1024"


def test_images_response_is_one_json_document():
    images = [b"first", b"second image"]
    body = b"".join(sse.images_response({"created": 1}, images, {"size": "1024x1024"}))
    parsed = json.loads(body)
    assert parsed["created"] == 1
    assert [base64.b64decode(d["b64_json"]) for d in parsed["data"]] == images
    assert parsed["size"] == "1024x1024"


def test_error_event_and_keep_alive_lines():
    assert sse.error_event({"type": "error"}) == b'event: error\ndata: {"type":"error"}\n\n'
    assert sse.KEEP_ALIVE.startswith(b":")
    assert list(SSEDecoder().iter_bytes(iter([sse.KEEP_ALIVE]))) == []


def test_the_data_only_dialect_has_no_event_lines_and_the_sdk_reads_it_by_type():
    raw = os.urandom(sse.B64_SLICE + 1)
    chunks = [
        *sse.image_event("image_generation.completed", {"size": "1024x1024"}, raw, named=False),
        sse.error_event({"type": "error", "error": {"type": "server_error"}}, named=False),
        sse.DONE,
    ]
    body = b"".join(chunks)
    assert b"event:" not in body
    assert body.endswith(b"data: [DONE]\n\n")
    image, error, done = list(SSEDecoder().iter_bytes(iter(chunks)))
    assert image.event is None
    assert image.json()["type"] == "image_generation.completed"
    assert base64.b64decode(image.json()["b64_json"]) == raw
    assert error.event is None
    assert error.json()["error"]["type"] == "server_error"
    assert done.data == "[DONE]"
