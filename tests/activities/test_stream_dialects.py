"""Image streams in every dialect a route or a compatible gateway speaks, read by one attempt
against httpx.MockTransport: each event is read by its JSON ``type`` when it has one (as the
official SDK reads image streams), else by its ``event:`` name, with or without the
``image_generation.`` prefix; comments, ``data: [DONE]``, CR/CRLF line ends and unknown events
change nothing."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from rules.outcome import FailureKind
from tests.activities.test_generate import attempt, job, png
from tests.fakes import InMemoryStore

IMAGE = png(1024, 1024)
B64 = base64.b64encode(IMAGE).decode()
USAGE = {"input_tokens": 10, "output_tokens": 272, "total_tokens": 282}


def partial(index: int, *, typed: bool = True, prefix: str = "image_generation.") -> dict[str, Any]:
    data: dict[str, Any] = {"b64_json": B64, "partial_image_index": index, "size": "1024x1024"}
    return {"type": f"{prefix}partial_image", **data} if typed else data


def completed(*, typed: bool = True, prefix: str = "image_generation.") -> dict[str, Any]:
    data: dict[str, Any] = {"b64_json": B64, "size": "1024x1024", "usage": USAGE}
    return {"type": f"{prefix}completed", **data} if typed else data


def named(name: str, data: dict[str, Any] | str, nl: str = "\n") -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    return f"event: {name}{nl}data: {text}{nl}{nl}"


def data_only(data: dict[str, Any] | str, nl: str = "\n") -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    return f"data: {text}{nl}{nl}"


def official(nl: str = "\n") -> str:
    """OpenAI's and Azure's own: an ``event:`` line and a ``data:`` line per event."""
    return (
        named("image_generation.partial_image", partial(0), nl)
        + named("image_generation.partial_image", partial(1), nl)
        + named("image_generation.completed", completed(), nl)
    )


def gateway(nl: str = "\n", done: bool = True) -> str:
    """A compatible gateway's: ``data:`` lines alone, the JSON's ``type`` names each event."""
    body = data_only(partial(0), nl) + data_only(partial(1), nl) + data_only(completed(), nl)
    return body + (data_only("[DONE]", nl) if done else "")


KEEP_ALIVES = ": keep-alive\n\n:\n\n"
UNKNOWN = (
    named("ping", {})
    + named("image_generation.heartbeat", {"type": "image_generation.heartbeat"})
    + data_only({"type": "response.created", "response": {"id": "r"}})
    + named("notice", "not json at all")
    + "event: empty\n\n"
    + data_only({"progress": 0.5})
)

SAVED: dict[str, str] = {
    "event lines (OpenAI, Azure)": official(),
    "data lines only, typed, with [DONE]": gateway(),
    "data lines only, typed, without [DONE]": gateway(done=False),
    "event lines, then [DONE]": official() + data_only("[DONE]"),
    "event names without the prefix, untyped JSON": named("partial_image", partial(0, typed=False))
    + named("partial_image", partial(1, typed=False))
    + named("completed", completed(typed=False)),
    "event names without the prefix, typed JSON": named("partial_image", partial(0))
    + named("partial_image", partial(1))
    + named("completed", completed()),
    "the edits prefix": named("image_edit.partial_image", partial(0, prefix="image_edit."))
    + data_only(partial(1, prefix="image_edit."))
    + named("image_edit.completed", completed(prefix="image_edit.")),
    "an explicit event: message, typed JSON": named("message", partial(0))
    + named("message", partial(1))
    + named("message", completed()),
    "the JSON type wins over the event name": named("image_generation.completed", partial(0))
    + named("image_generation.completed", partial(1))
    + named("image_generation.partial_image", completed()),
    "CRLF line ends, event lines": official("\r\n"),
    "CRLF line ends, data lines only": gateway("\r\n"),
    "CR line ends": official("\r"),
    "comment lines and keep-alives between and inside events": KEEP_ALIVES
    + ": opening comment\nevent: image_generation.partial_image\n: inside\ndata: "
    + json.dumps(partial(0))
    + "\n\n"
    + KEEP_ALIVES
    + data_only(partial(1))
    + KEEP_ALIVES
    + named("image_generation.completed", completed())
    + KEEP_ALIVES,
    "unknown events and event types, ignored": UNKNOWN
    + data_only(partial(0))
    + UNKNOWN
    + data_only(partial(1))
    + data_only(completed())
    + UNKNOWN,
    "id: and retry: fields": "id: 1\nretry: 3000\n"
    + data_only(partial(0))
    + "id: 2\n"
    + named("image_generation.partial_image", partial(1))
    + named("image_generation.completed", completed()),
    "JSON split over several data: lines": "data: "
    + json.dumps(partial(0)).replace(', "partial_image_index"', ',\ndata: "partial_image_index"')
    + "\n\n"
    + data_only(partial(1))
    + "data: "
    + json.dumps(completed()).replace(', "usage"', ',\ndata: "usage"')
    + "\n\n",
}


def route_sending(content: str, requests: list[httpx.Request]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream; charset=utf-8"},
            content=content.encode(),
        )

    return handler


@pytest.mark.parametrize("content", list(SAVED.values()), ids=list(SAVED))
def test_every_dialect_is_saved_after_one_request(content: str):
    requests: list[httpx.Request] = []
    store = InMemoryStore()
    result = attempt(job(), store, route_sending(content, requests))
    assert result.ok, result.failure
    assert len(requests) == 1
    assert store.get(name="job-1/image.png") == IMAGE
    assert result.timings.partials_received == 2
    assert [p.partial_image_index for p in result.previews] == [0, 1]
    assert result.usage == USAGE


SERVER_ERROR = {"type": "server_error", "code": None, "message": "An error occurred", "param": None}
USER_ERROR = {
    "type": "image_generation_user_error",
    "code": None,
    "message": "Your request was rejected by the safety system.",
    "param": None,
}
FAILED: dict[str, tuple[str, FailureKind]] = {
    "event: error, Azure's shape": (
        named("image_generation.partial_image", partial(0))
        + named("error", {"type": "error", "error": SERVER_ERROR, "sequence_number": 1}),
        FailureKind.SERVER_ERROR,
    ),
    "event: error, OpenAI's shape": (
        named("error", {"type": "error", "error": SERVER_ERROR}),
        FailureKind.SERVER_ERROR,
    ),
    "event: image_generation.error": (
        named("image_generation.error", {"error": SERVER_ERROR}),
        FailureKind.SERVER_ERROR,
    ),
    "data only, typed error": (
        data_only(partial(0)) + data_only({"type": "error", "error": SERVER_ERROR}),
        FailureKind.SERVER_ERROR,
    ),
    "data only, untyped error object": (
        data_only({"error": SERVER_ERROR}),
        FailureKind.SERVER_ERROR,
    ),
    "data only, flat error": (
        data_only({"type": "error", "code": "server_error", "message": "x", "param": None}),
        FailureKind.SERVER_ERROR,
    ),
    "data only, the user's family": (
        data_only({"type": "error", "error": USER_ERROR}) + data_only("[DONE]"),
        FailureKind.REJECTED,
    ),
    "event: error, the user's family, CRLF": (
        named("error", {"type": "error", "error": USER_ERROR}, "\r\n"),
        FailureKind.REJECTED,
    ),
    "[DONE] before the completed event": (
        data_only(partial(0)) + data_only("[DONE]") + data_only(completed()),
        FailureKind.STREAM_INCOMPLETE,
    ),
    "only unknown events": (UNKNOWN, FailureKind.STREAM_INCOMPLETE),
}


@pytest.mark.parametrize(("content", "kind"), list(FAILED.values()), ids=list(FAILED))
def test_errors_and_early_ends_in_every_dialect(content: str, kind: FailureKind):
    requests: list[httpx.Request] = []
    result = attempt(job(), InMemoryStore(), route_sending(content, requests))
    assert result.failure is not None
    assert result.failure.kind is kind
    assert len(requests) == 1
