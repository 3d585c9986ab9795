"""One streamed call to a route (OpenAI, Azure OpenAI or a gateway), with every clock recorded.

The client is handed an ``httpx.AsyncClient`` (the seam: tests pass one built on the simulator or
on ``httpx.MockTransport``). Limits per phase: connect strict, read idle (no byte for N seconds),
and a whole-request deadline over everything from the send (httpx has no total timeout of its
own). It is async so that a deadline or a cancel stops a call promptly even while it waits for
the first byte, which a blocking read in a thread cannot do. Partial images are handed to a
callback as they arrive, so previews reach Blob while the model is still working. Failures come
back as ``Failure`` records from activities.upstream_errors, never as exceptions.

Images are decoded from the answer's bytes as they arrive (activities.image_stream), streamed or
not: each one is held once, in the ImageBuffer it is decoded into, never as text too.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx

from activities import upstream_errors
from activities.image_stream import (
    B64_FIELD,
    ImageBuffer,
    Path,
    SseEvent,
    SseParser,
    StreamedJson,
)
from activities.inputs import InputFile
from rules.outcome import Failure
from rules.redaction import Secrets, redact, redact_failure, redact_json
from rules.request import ImageJobRequest
from rules.settings import RouteSettings, Timeouts
from rules.timing import Clocks
from storage.protocol import JSON

RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "retry-after",
    "retry-after-ms",
)


@dataclass(frozen=True)
class RouteCall:
    url: str
    headers: dict[str, str] = field(repr=False)  # carries the key or token
    body: dict[str, Any] = field(repr=False)  # carries the prompt
    # The body as sent, encoded here: an encoding problem shows before anything is sent.
    content: bytes = field(repr=False, default=b"")
    # An edit: ``body`` goes as multipart form fields (text, as the SDK sends them) and these
    # as its file parts, after the fields; ``content`` is then empty.
    files: tuple[InputFile, ...] = field(repr=False, default=())

    def payload(self) -> dict[str, Any]:
        """What httpx sends: the encoded JSON, or the multipart fields and files (httpx writes
        the boundary into the content type, as for the SDK)."""
        if not self.files:
            return {"content": self.content}
        return {
            "data": self.body,
            "files": [(f.part, (f.filename, f.data, f.content_type)) for f in self.files],
        }


@dataclass
class CallResult:
    """What came back; ``failure`` is None when every image arrived."""

    images: list[ImageBuffer] = field(default_factory=list)
    partials: int = 0
    usage: dict[str, Any] | None = None
    http_status: int | None = None
    request_id: str | None = None
    rate_limit: dict[str, str] = field(default_factory=dict)
    failure: Failure | None = None
    connection_reused: bool = False
    # Retries a gateway says it made on its own (None: it said nothing).
    gateway_retries: int | None = None

    def redact(self, secrets: Secrets) -> None:
        """Take the attempt's key and prompt out of everything that came from upstream."""
        if self.failure is not None:
            self.failure = redact_failure(self.failure, secrets)
        if self.request_id is not None:
            self.request_id = redact(self.request_id, secrets)
        self.rate_limit = {name: redact(value, secrets) for name, value in self.rate_limit.items()}
        if self.usage is not None:
            self.usage = redact_json(self.usage, secrets)


def build_call(
    route: RouteSettings,
    request: ImageJobRequest,
    *,
    stream: bool,
    partial_images: int,
    auth: tuple[str, str] | None,
    inputs: Sequence[InputFile] = (),
) -> RouteCall:
    """The URL, headers and body for one attempt at ``request`` on ``route``: a JSON body to
    ``/images/generations``, or for an edit (``inputs``: its images and mask, read by
    activities.inputs) multipart form data to ``/images/edits``, shaped as the SDK shapes it."""
    edit = request.is_edit
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "n": request.n,
        "size": request.size,
        "quality": request.quality,
        "output_format": request.output_format,
        "background": request.background,
    }
    if not edit:  # the edits endpoint has no moderation field
        body["moderation"] = request.moderation
    if request.output_compression is not None:
        body["output_compression"] = request.output_compression
    if stream:
        body["stream"] = True
        body["partial_images"] = partial_images
    endpoint = "edits" if edit else "generations"
    if route.owner == "azure":
        url = (
            f"{route.base_url}/openai/deployments/{route.deployment}/images/{endpoint}"
            f"?api-version={route.api_version}"
        )
    else:
        url = f"{route.base_url}/images/{endpoint}"
        body["model"] = route.model
    headers = {} if edit else {"content-type": JSON}
    if stream:
        headers["accept"] = "text/event-stream"
    if auth:
        headers[auth[0]] = auth[1]
    if edit:
        if len(inputs) != request.input_count:
            raise ValueError(f"an edit needs its {request.input_count} inputs, got {len(inputs)}")
        return RouteCall(url=url, headers=headers, body=form_fields(body), files=tuple(inputs))
    content = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return RouteCall(url=url, headers=headers, body=body, content=content)


def form_fields(body: Mapping[str, Any]) -> dict[str, str]:
    """Multipart form fields are text: booleans as ``true``/``false`` and numbers in decimal,
    as the official SDK writes them (its query-string encoder)."""
    return {
        name: ("true" if value else "false") if isinstance(value, bool) else str(value)
        for name, value in body.items()
    }


async def call_route(
    client: httpx.AsyncClient,
    call: RouteCall,
    *,
    timeouts: Timeouts,
    clocks: Clocks,
    on_partial: Callable[[int, ImageBuffer], Awaitable[None]],
    on_final: Callable[[], Awaitable[None]],
    stop_requested: Callable[[], Awaitable[bool]] | None = None,
    stop_poll_s: float = 0.5,
    gateway_retry_header: str | None = None,
    images_expected: int = 1,
    monotonic: Callable[[], float] = time.monotonic,
) -> CallResult:
    """Send ``call`` and read the answer to the end, streamed or not.

    The whole-request limit covers everything from the send, waiting for headers included; a
    stop request (the caller cancelled) is checked every ``stop_poll_s`` and closes the stream.
    """
    result = CallResult()
    progress = _Progress()
    timeout = httpx.Timeout(
        connect=timeouts.connect_s, read=timeouts.read_idle_s, write=60.0, pool=timeouts.connect_s
    )

    async def trace(event: str, info: Mapping[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            clocks.connected = monotonic()
        elif event.endswith("send_request_body.started") and call.files:
            clocks.inputs_send_started = monotonic()
        elif event.endswith("send_request_body.complete"):
            progress.sent = True
            if call.files:
                clocks.inputs_sent = monotonic()

    request = client.build_request(
        "POST",
        call.url,
        headers=call.headers,
        timeout=timeout,
        extensions={"trace": trace},
        **call.payload(),
    )

    async def exchange() -> None:
        response = await client.send(request, stream=True)
        try:
            progress.sent = True
            clocks.first_byte = monotonic()
            if clocks.connected is None:
                result.connection_reused = True
            result.http_status = response.status_code
            result.request_id = upstream_errors.request_id(response.headers)
            if gateway_retry_header:
                said = response.headers.get(gateway_retry_header, "")
                result.gateway_retries = int(said) if said.isdigit() else None
            result.rate_limit = {
                name: response.headers[name]
                for name in RATE_LIMIT_HEADERS
                if name in response.headers
            }
            if response.status_code >= 400:
                body = await response.aread()
                clocks.body_done = monotonic()
                result.failure = upstream_errors.from_response(
                    response.status_code, response.headers, body
                )
            elif "text/event-stream" in response.headers.get("content-type", ""):
                await _read_stream(
                    response, result, clocks, on_partial, on_final, monotonic, images_expected
                )
            else:
                await _read_json(response, result, clocks, on_final, monotonic)
        finally:
            await response.aclose()

    remaining = max(0.001, timeouts.request_s - (monotonic() - clocks.started))
    stopped = asyncio.Event()
    work = asyncio.ensure_future(exchange())
    watcher = asyncio.ensure_future(_watch(stop_requested, stop_poll_s, stopped, work))
    try:
        # wait_for cancels the exchange itself when the deadline passes.
        await asyncio.wait_for(work, timeout=remaining)
    except TimeoutError:
        result.failure = upstream_errors.from_exception(
            httpx.ReadTimeout("deadline"), sent=progress.sent, deadline_hit=True
        )
    except asyncio.CancelledError:
        if not stopped.is_set():
            raise
        result.failure = upstream_errors.cancelled(sent=progress.sent)
    except httpx.HTTPError as exc:
        result.failure = upstream_errors.from_exception(exc, sent=progress.sent)
    except (ValueError, KeyError, TypeError) as exc:
        # Bad JSON, bad base64, a missing field: the answer could not be read.
        result.failure = upstream_errors.unreadable(exc, result.http_status, result.request_id)
    finally:
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    if result.failure is None and len(result.images) < images_expected:
        result.failure = upstream_errors.stream_incomplete_images(
            result.request_id, len(result.images), images_expected
        )
    # Images that arrived before a failure stay in ``images``: the caller keeps them (with n > 1
    # a later image can fail after earlier ones were delivered, and paid for).
    return result


@dataclass
class _Progress:
    sent: bool = False


async def _watch(
    stop_requested: Callable[[], Awaitable[bool]] | None,
    poll_s: float,
    stopped: asyncio.Event,
    work: asyncio.Future[None],
) -> None:
    if stop_requested is None:
        return
    while not work.done():
        await asyncio.sleep(poll_s)
        if await stop_requested():
            stopped.set()
            work.cancel()
            return


# What an image stream's events are, named without their ``image_generation.`` or
# ``image_edit.`` prefix; every other event is ignored.
PARTIAL, COMPLETED, ERROR = "partial_image", "completed", "error"
_PREFIXES = ("image_generation.", "image_edit.")
# The SDK's end-of-stream marker (``data: [DONE]``), sent by some compatible gateways.
DONE = "[DONE]"


def event_kind(name: str, data: object) -> str | None:
    """What one SSE event is, read as the official SDK reads image streams: an event whose JSON
    holds an ``error`` is an error; else its JSON ``type`` says what it is, and only without one
    its ``event:`` name (httpx-sse names an event without that line ``message``). Either may
    carry the prefix or not. None for anything else (ignored: keep-alives, other events)."""
    if isinstance(data, Mapping):
        if data.get("error"):
            return ERROR
        typed = data.get("type")
        if isinstance(typed, str) and typed:
            name = typed
    for prefix in _PREFIXES:
        name = name.removeprefix(prefix)
    return name if name in (PARTIAL, COMPLETED, ERROR) else None


async def _read_stream(
    response: httpx.Response,
    result: CallResult,
    clocks: Clocks,
    on_partial: Callable[[int, ImageBuffer], Awaitable[None]],
    on_final: Callable[[], Awaitable[None]],
    monotonic: Callable[[], float],
    images_expected: int,
) -> None:
    """Read image events in every dialect seen: ``event:`` + ``data:`` lines (OpenAI, Azure) or
    ``data:`` lines alone whose JSON names the event (compatible gateways), CRLF or LF, comment
    lines, ``data: [DONE]`` (the end), unknown events (ignored). Each event's image is decoded
    while its line arrives (activities.image_stream.SseParser, which splits events exactly as
    httpx-sse does)."""
    events = 0
    async with aclosing(_events(response)) as stream:
        async for event in stream:
            events += 1
            raw = event.text()  # the data without its image's base64: a few hundred bytes
            if raw.startswith(DONE):
                break
            if not raw or raw.isspace():
                continue  # an event without data: a keep-alive of some kind
            assert event.data is not None  # it has text
            try:
                data = event.data.loads()
            except ValueError:
                if event_kind(event.event, None) is None:
                    continue  # not JSON, and not named as one of ours: nothing of the image
                raise
            kind = event_kind(event.event, data)
            if kind in (PARTIAL, COMPLETED) and not isinstance(data, Mapping):
                raise TypeError(f"a {kind} event that is not a JSON object")
            if kind == PARTIAL:
                now = monotonic()
                clocks.partials.append(now)
                if clocks.first_partial is None:
                    clocks.first_partial = now
                result.partials += 1
                index = int(data.get("partial_image_index", result.partials - 1))
                await on_partial(index, event.data.image(data))
            elif kind == COMPLETED:
                # The whole final event is one line: it has fully arrived when we see it.
                if clocks.final_image is None:
                    clocks.final_image = monotonic()
                    await on_final()
                result.images.append(event.data.image(data))
                result.usage = data.get("usage") or result.usage
                clocks.body_done = monotonic()
                if len(result.images) >= images_expected:
                    # Every image is here: stop reading, so that nothing after it (a reset, a
                    # limit) can turn a delivered image into a failure.
                    return
            elif kind == ERROR:
                error = data if isinstance(data, Mapping) else {"error": str(data)}
                result.failure = upstream_errors.from_stream_error(error, response.headers)
                return
    if not result.images:
        result.failure = upstream_errors.stream_incomplete(response.headers, events)


async def _events(response: httpx.Response) -> AsyncGenerator[SseEvent, None]:
    parser = SseParser()
    async for chunk in response.aiter_bytes():
        for event in parser.feed(chunk):
            yield event


def _answer_image(path: Path) -> bool:
    """Where a JSON answer carries its images: ``data[i].b64_json``."""
    return len(path) == 3 and path[0] == "data" and type(path[1]) is int and path[2] == B64_FIELD


async def _read_json(
    response: httpx.Response,
    result: CallResult,
    clocks: Clocks,
    on_final: Callable[[], Awaitable[None]],
    monotonic: Callable[[], float],
) -> None:
    # Without streaming, the headers arrive when the model is done: that is the final image.
    clocks.final_image = clocks.first_byte
    await on_final()
    answer = StreamedJson(_answer_image)
    async for chunk in response.aiter_bytes():
        answer.feed(chunk)
    clocks.body_done = monotonic()
    body = answer.loads()
    result.images = [
        answer.image(item, ("data", index, B64_FIELD))
        for index, item in enumerate(body.get("data", []))
    ]
    result.usage = body.get("usage")
