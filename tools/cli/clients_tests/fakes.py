"""A scripted image job service behind httpx.MockTransport, a fake clock and captured consoles:
every branch of the CLI runs in-process, without a stack and without sleeping."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console

from clients.cli import Runtime, main

SERVICE = "http://service.test"
BLOB = "http://blob.test/devstoreaccount1/images"
JOB = "img-0123456789abcdef01234567-1"
# A link as long as a real SAS link: it must come out whole, on one line.
SAS = "?st=2026-01-01T00%3A00%3A00Z&se=2026-01-01T01%3A00%3A00Z&sp=r&sv=2026-10-06&sr=b&sig=" + (
    "A" * 60
)

Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def status(state: str, code: int | None = None, **extra: Any) -> httpx.Response:
    """A status answer as the service sends it (202 + Retry-After while running)."""
    ended = state in ("saved", "failed", "cancelled")
    body: dict[str, Any] = {
        "id": JOB,
        "state": state,
        "stateText": f"{state.capitalize()}: a sentence.",
        "attempt": 1,
        "request": {"size": "1024x1024", "quality": "low", "n": 1},
        "timings": {},
        "previews": [],
        "image": None,
        "images": [],
        "metadataUrl": None,
        "error": None,
        **extra,
    }
    headers = {} if ended else {"retry-after": "2"}
    return httpx.Response(code or (200 if ended else 202), json=body, headers=headers)


def image(k: int, n: int = 1, ext: str = "png") -> dict[str, Any]:
    name = "image" if n == 1 else f"image-{k}"
    return {
        "contentType": f"image/{ext}",
        "bytes": 10 + k,
        "width": 1024,
        "height": 1024,
        "url": f"{BLOB}/{JOB}/{name}.{ext}{SAS}",
    }


def saved(n: int = 1, **extra: Any) -> httpx.Response:
    images = [image(k, n) for k in range(n)]
    timings = {
        "requestStartedAt": "2026-01-01T00:00:00.000Z",
        "connectMs": 30,
        "firstByteMs": 400,
        "firstPartialImageMs": 900,
        "finalImageMs": 2400,
        "downloadMs": 5,
        "uploadMs": 12,
    }
    return status(
        "saved",
        images=images,
        image=images[0],
        timings=timings,
        metadataUrl=f"{BLOB}/{JOB}/metadata.json{SAS}",
        **extra,
    )


def started(retry_after: str = "2", **headers: str) -> httpx.Response:
    body = {"id": JOB, "state": "queued", "statusUrl": f"{SERVICE}/api/images/{JOB}"}
    return httpx.Response(202, json=body, headers={"retry-after": retry_after, **headers})


def error(code: int, name: str, field_name: str, message: str, **headers: str) -> httpx.Response:
    body = {"error": {"code": name, "message": message, "field": field_name}}
    return httpx.Response(code, json=body, headers=headers)


@dataclass
class Service:
    """Answers by route: a queue per route (the last answer repeats); blobs by URL path."""

    start: list[Reply] = field(default_factory=lambda: [started()])
    polls: list[Reply] = field(default_factory=list)
    cancels: list[Reply] = field(default_factory=list)
    lists: list[Reply] = field(default_factory=list)
    evidences: list[Reply] = field(default_factory=list)
    routes: list[Reply] = field(default_factory=list)
    blobs: dict[str, Reply] = field(default_factory=dict)
    seen: list[httpx.Request] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.path
        if request.url.host == "blob.test":
            return self._reply(self.blobs.get(path, httpx.Response(200, content=path.encode())))
        if request.method == "POST" and path == "/api/images":
            return self._next(self.start, request)
        if request.method == "POST" and path.endswith("/cancel"):
            return self._next(self.cancels, request)
        if request.method == "GET" and path == "/api/images":
            return self._next(self.lists, request)
        if request.method == "GET" and path.endswith("/evidence"):
            return self._next(self.evidences, request)
        if request.method == "GET" and path == "/api/routes":
            return self._next(self.routes, request)
        if request.method == "GET" and path.startswith("/api/images/"):
            return self._next(self.polls, request)
        return httpx.Response(404)

    def _next(self, queue: list[Reply], request: httpx.Request) -> httpx.Response:
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if callable(reply) and not isinstance(reply, httpx.Response):
            return reply(request)
        return self._reply(reply)

    @staticmethod
    def _reply(reply: Reply) -> httpx.Response:
        if isinstance(reply, Exception):
            raise reply
        assert isinstance(reply, httpx.Response)
        return reply

    def requests(self, method: str, path_part: str = "/api/images") -> list[httpx.Request]:
        return [r for r in self.seen if r.method == method and path_part in r.url.path]


class Clock:
    """monotonic() and sleep() that only move when the CLI sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[float], None] | None = None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(seconds)
        self.now += seconds


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(
    service: Service,
    *argv: str,
    clock: Clock | None = None,
    width: int = 60,
    key: str = "k-1",
    transport: httpx.BaseTransport | None = None,
) -> Run:
    """``python -m clients.cli --url SERVICE --key KEY argv...`` against ``service``."""
    clock = clock or Clock()
    out, err = io.StringIO(), io.StringIO()
    runtime = Runtime(
        out=Console(file=out, width=width, color_system=None, highlight=False),
        err=Console(file=err, width=width, color_system=None, highlight=False),
        transport=transport or service.transport(),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )
    prefix = ["--url", SERVICE] + (["--key", key] if key else [])
    code = main([*prefix, *argv], runtime=runtime)
    return Run(int(code), out.getvalue(), err.getvalue())
