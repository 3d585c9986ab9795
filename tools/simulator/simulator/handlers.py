"""The image routes: one request from arrival to its last byte, as the real service answers it.

Order of the checks (documented in docs/simulator.md; the real services' exact order is not
published): route (Azure deployment path: ``api-version`` present, else 404 ``Resource not
found``), credentials (401), Azure deployment (404 ``DeploymentNotFound``), the body (400 from
``validation``), ``insufficient_quota`` mode, the rate limiter (429), then a queued fault. Only
then does a generation start; from there on ``Generation`` keeps the upstream clock and this
module writes to the client, playing the gateway in front of it:

- nothing is sent (not even the status line) before the first event, so a gateway that sees no byte
  for ``idle_timeout_s`` can still answer its own 408 (field report B); a proxy idle limit answers
  504 the same way; once headers are out, either one cuts the connection instead;
- keep-alive comments count as bytes;
- the generation behind a cut-off client runs on and is billed when it completes.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

from aiohttp import BodyPartReader, web

from simulator import errors, sse
from simulator.auth import check_auth
from simulator.config import ANY, Deployment, RouteSettings
from simulator.errors import ApiError
from simulator.faults import FaultSpec, RequestContext
from simulator.generation import (
    Event,
    Generation,
    build_steps,
    images_response_body,
    log_failure,
)
from simulator.state import SimState
from simulator.usage import cost_usd, usage_for
from simulator.validation import ImageRequest, parse_edit, parse_generation

__all__ = ["Route", "image_handler"]

Route = Literal["openai", "azure", "azure_v1"]
Endpoint = Literal["generations", "edits"]

OPENAI_VERSION = "2020-10-01"
# How often a waiting handler looks whether its client went away (real seconds).
DISCONNECT_POLL_S = 0.25


class ClientGone(Exception):
    """The client closed its connection while we were writing."""


def image_handler(
    state: SimState, route: Route, endpoint: Endpoint
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler for one route owner's ``/images/{endpoint}``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await Exchange(state, request, route, endpoint).run()

    return handle


class Exchange:
    """One request and its response."""

    def __init__(self, state: SimState, request: web.Request, route: Route, endpoint: Endpoint):
        self.state = state
        self.request = request
        self.route = route
        self.endpoint = endpoint
        self.owner: Literal["openai", "azure"] = "openai" if route == "openai" else "azure"
        self.settings: RouteSettings = state.config.route(self.owner)
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self.request_id = f"req_{uuid.uuid4().hex}"
        self.apim_request_id = str(uuid.uuid4()) if self.owner == "azure" else None
        self.rate_headers: dict[str, str] = {}
        self.response: web.StreamResponse | None = None
        self.last_byte_at = self.started
        self.partials_sent = 0
        retry = request.headers.get("x-stainless-retry-count", "")
        self.entry = state.ledger.open(
            request_id=self.request_id,
            route=route,
            endpoint=endpoint,
            apim_request_id=self.apim_request_id,
            region=self.settings.region if self.owner == "azure" else None,
            retry_count=int(retry) if retry.isdigit() else None,
        )

    # --- headers and plain answers -----------------------------------------------------------

    def _elapsed(self) -> float:
        return self.loop.time() - self.started

    def headers(self) -> dict[str, str]:
        """Headers of an answer from the service itself (not from a gateway in front of it)."""
        headers = {
            "x-request-id": self.request_id,
            "openai-version": OPENAI_VERSION,
            "openai-processing-ms": str(max(1, round(self._elapsed() * 1000))),
        }
        headers.update(self._gateway_headers())
        headers.update(self.rate_headers)
        return headers

    def _gateway_headers(self) -> dict[str, str]:
        if self.owner != "azure" or self.apim_request_id is None:
            return {}
        return {"apim-request-id": self.apim_request_id, "x-ms-region": self.settings.region}

    def finish(self, *, status: int, outcome: str) -> None:
        """Record how the client's side ended (the upstream side is recorded apart)."""
        self.state.ledger.update(
            self.entry,
            status=status,
            outcome=outcome,
            partials_sent=self.partials_sent,
            elapsed_s=round(self._elapsed(), 6),
        )

    def error_response(
        self, err: ApiError, outcome: str, *, from_gateway: bool = False
    ) -> web.Response:
        headers = self._gateway_headers() if from_gateway else self.headers()
        headers.update(err.headers)
        self.finish(status=err.status, outcome=outcome)
        return web.json_response(err.envelope(), status=err.status, headers=headers)

    # --- admission -------------------------------------------------------------------------------

    async def run(self) -> web.StreamResponse:
        """Answer the request; whatever happens, its ledger entry ends with an outcome."""
        try:
            return await self._run()
        except Exception as exc:
            # A bug of the simulator: answer as the real service does when it fails, rather than
            # with aiohttp's plain-text 500, and never leave the entry in progress.
            log_failure(f"request {self.request_id}", exc)
            if self.response is None:
                return self.error_response(errors.server_error(), "simulator_error")
            self.finish(status=self.response.status, outcome="simulator_error")
            return self.abort()
        finally:
            if self.entry.outcome == "in_progress":
                status = self.response.status if self.response is not None else 499
                self.finish(status=status, outcome="interrupted")

    async def _run(self) -> web.StreamResponse:
        try:
            image_request, deployment, fault = await self._admit()
        except ApiError as err:
            outcome = "rate_limited" if err.status == 429 else "rejected"
            return self.error_response(err, outcome)
        except web.HTTPRequestEntityTooLarge:
            too_large = errors.request_too_large(self.request.client_max_size)
            response = self.error_response(too_large, "rejected")
            # The rest of the body was never read: this connection cannot carry another request.
            response.force_close()
            return response
        if fault is not None and fault.stage == "answer":
            return self.error_response(self._fault_error(fault), f"fault:{fault.kind}")
        return await self._generate(image_request, deployment, fault)

    async def _admit(self) -> tuple[ImageRequest, Deployment | None, FaultSpec | None]:
        config = self.state.config
        if self.route == "azure":
            version = self.request.query.get("api-version")
            if not version:
                raise errors.azure_resource_not_found()
            if config.api_versions != ANY and version not in config.api_versions:
                raise errors.api_version_not_supported()
        check_auth(self.route, self.settings, self.request.headers)
        # On OpenAI's route a body without ``model`` gets the route's default_model (None: 400).
        default_model = self.settings.default_model if self.route == "openai" else None
        deployment: Deployment | None = None
        if self.route == "azure":
            deployment = self._deployment(self.request.match_info["deployment"])
        if self.endpoint == "generations":
            body = await self._json_body()
            if self.route == "azure_v1":
                deployment = self._deployment(_model_name(body.get("model")))
            image_request = parse_generation(
                body,
                owner=self.owner,
                model=deployment.model if deployment else default_model,
                models=config.models,
                settings=config.validation,
            )
        else:
            fields, image_count, has_mask = await self._multipart_body()
            if self.route == "azure_v1":
                deployment = self._deployment(_model_name(fields.get("model")))
            image_request = parse_edit(
                fields,
                image_count=image_count,
                has_mask=has_mask,
                owner=self.owner,
                model=deployment.model if deployment else default_model,
                models=config.models,
                settings=config.validation,
            )
        self.state.ledger.update(
            self.entry,
            deployment=deployment.name if deployment else None,
            shape=image_request.shape(),
        )
        if self.settings.insufficient_quota:
            raise errors.insufficient_quota()
        self._rate_limit(image_request, deployment)
        fault = self.state.faults.take(
            RequestContext(
                route=self.route,
                deployment=deployment.name if deployment else None,
                endpoint=self.endpoint,
                stream=image_request.stream,
                size=image_request.size,
            )
        )
        return image_request, deployment, fault

    def _deployment(self, name: str) -> Deployment:
        deployment = self.state.config.deployment(name)
        if deployment is None:
            raise errors.azure_deployment_not_found()
        return deployment

    async def _json_body(self) -> Mapping[str, object]:
        raw = await self.request.read()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise errors.invalid_json() from None
        if not isinstance(body, dict):
            raise errors.invalid_request(
                "The request body must be a JSON object.", param=None, code="invalid_type"
            )
        return body

    async def _multipart_body(self) -> tuple[dict[str, str], int, bool]:
        """Text fields, the number of ``image``/``image[]`` files, and whether a mask came."""
        content_type = self.request.content_type
        if content_type != "multipart/form-data":
            raise errors.invalid_request(
                f"Invalid Content-Type header ({content_type}), expected multipart/form-data.",
                param=None,
                code=None,
            )
        fields: dict[str, str] = {}
        image_count = 0
        has_mask = False
        reader = await self.request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue  # a nested multipart: no client sends one
            name = part.name or ""
            if part.filename is not None:
                # Input images are counted and dropped chunk by chunk: never held in memory.
                while await part.read_chunk():
                    pass
                if name in ("image", "image[]"):
                    image_count += 1
                elif name == "mask":
                    has_mask = True
                else:
                    fields[name] = ""
                continue
            fields[name] = await part.text()
        return fields, image_count, has_mask

    def _rate_limit(self, image_request: ImageRequest, deployment: Deployment | None) -> None:
        rule = (deployment.rate_limit if deployment else None) or self.settings.rate_limit
        if rule is None:
            return
        key = f"azure:{deployment.name}" if deployment else f"openai:{image_request.model}"
        decision = self.state.limiter(key, rule).acquire(image_request.n)
        self.rate_headers = dict(decision.headers)
        if decision.allowed:
            return
        # azure_minus_one gives no hint in the headers; the message still names the wait.
        wait_s = decision.wait_s if decision.wait_s is not None else 0.0
        if self.settings.rate_limit_error == "azure":
            raise self._azure_rate_limit(wait_s, headers={})
        raise errors.rate_limit_exceeded(
            wait_s,
            model=image_request.model,
            window=decision.window or "requests",
            limit=decision.limit,
            used=decision.used,
            requested=decision.requested or 1,
            headers={},
        )

    def _azure_rate_limit(self, wait_s: float, *, headers: Mapping[str, str]) -> ApiError:
        # The v1 path has no api-version parameter; its 429 names the path's version instead.
        version = self.request.query.get("api-version") or "v1"
        return errors.azure_rate_limit_exceeded(
            wait_s, endpoint=self.endpoint, api_version=version, headers=headers
        )

    def _fault_error(self, fault: FaultSpec) -> ApiError:
        """The answer of a fault that stops a request before any generation."""
        scale = self.state.scale
        if fault.kind == "http_error":
            return errors.http_error(
                fault.status or 500,
                fault.message,
                type=fault.type,
                code=fault.code,
                param=fault.param,
            )
        if fault.kind == "moderation_blocked":
            return errors.moderation_blocked(self.request_id)
        if fault.kind == "content_filter":
            if fault.style == "content_filter":
                return errors.azure_content_filter("content_filter")
            return errors.azure_content_filter("contentFilter")
        if fault.kind == "insufficient_quota":
            return errors.insufficient_quota()
        if fault.kind == "auth_error":
            if fault.status == 403:
                if self.owner == "azure":
                    return errors.azure_permission_denied()
                return errors.permission_denied()
            if self.owner == "azure":
                return errors.azure_access_denied()
            return errors.openai_invalid_api_key()
        # rate_limited: the 429 storm, with the header style the fault asks for.
        wait_s = scale.report(fault.retry_after_s)
        self.rate_headers = {}
        if self.settings.rate_limit_error == "azure":
            return self._azure_rate_limit(wait_s, headers=_retry_headers(fault, wait_s))
        return errors.rate_limit_exceeded(wait_s, headers=_retry_headers(fault, wait_s))

    # --- the generation --------------------------------------------------------------------------

    async def _generate(
        self, image_request: ImageRequest, deployment: Deployment | None, fault: FaultSpec | None
    ) -> web.StreamResponse:
        state = self.state
        plan = state.latency.plan(image_request, state.rng, speed=self.settings.speed)
        generation = Generation(
            request=image_request,
            steps=build_steps(image_request, plan, fault),
            renderer=state.renderer,
            executor=state.executor,
            scale=state.scale,
            started_at=self.started,
            on_done=self._upstream_done,
            render_ahead_s=state.config.render_ahead_s,
        )
        state.ledger.update(
            self.entry,
            generation_started=True,
            generation_s=round(state.scale.report(plan.total_s), 6),
        )
        task = asyncio.create_task(generation.run(), name=f"generation {self.request_id}")
        state.upstream.add(task)
        task.add_done_callback(state.upstream.discard)
        hold_until = self.started
        if fault is not None and fault.stage == "first_byte":
            hold_until += state.scale.wait(fault.delay_s or 0.0)
        writer = _Writer(self, generation, fault, hold_until)
        try:
            return await writer.pump()
        except ClientGone:
            generation.detach()
            self.finish(
                status=self.response.status if self.response else 499, outcome="client_disconnected"
            )
            return self.response or web.Response(status=499)

    def _upstream_done(self, generation: Generation) -> None:
        state = self.state
        billable = generation.completed or (
            generation.failed and state.config.bill_failed_generations
        )
        cost = 0.0
        if billable:
            usage = usage_for(generation.request, state.config.tokens)
            cost = round(cost_usd(usage, state.config.prices), 6)
        state.ledger.update(
            self.entry,
            completed_upstream=generation.completed,
            billable=billable,
            cost_usd=cost,
            upstream_done_at=time.time(),
        )

    # --- writing ---------------------------------------------------------------------------------

    def client_gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def start_response(self, *, content_type: str) -> web.StreamResponse:
        if self.response is None:
            response = web.StreamResponse(status=200, headers=self.headers())
            response.content_type = content_type
            if content_type == "text/event-stream":
                response.headers["Cache-Control"] = "no-cache"
            else:
                response.enable_chunked_encoding()
            self.response = response
            self.state.ledger.update(self.entry, first_byte_s=round(self._elapsed(), 6))
            try:
                await response.prepare(self.request)
            except ConnectionError as exc:
                raise ClientGone from exc
        return self.response

    async def write(self, pieces: Iterable[bytes]) -> None:
        assert self.response is not None
        try:
            for piece in pieces:
                await self.response.write(piece)
                self.last_byte_at = self.loop.time()
        except ConnectionError as exc:
            raise ClientGone from exc

    async def end(self) -> None:
        assert self.response is not None
        try:
            await self.response.write_eof()
        except ConnectionError as exc:
            raise ClientGone from exc

    def abort(self) -> web.StreamResponse:
        """Cut the TCP connection (a reset, or a gateway giving up after headers went out)."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        return self.response or web.Response(status=200)


class _Writer:
    """Moves events from a generation to the client, playing the gateway and the keep-alives."""

    def __init__(
        self,
        exchange: Exchange,
        generation: Generation,
        fault: FaultSpec | None,
        hold_until: float,
    ) -> None:
        self.x = exchange
        self.generation = generation
        self.fault = fault
        self.hold_until = hold_until
        self.request = generation.request
        self.stream = self.request.stream
        state = exchange.state
        scale = state.scale
        gateway = exchange.settings.gateway
        # (seconds without a byte, outcome, applies only before the first byte)
        self.idle_limits: list[tuple[float, str, bool]] = []
        if gateway.idle_timeout_s is not None and (
            self.stream or gateway.idle_timeout_non_streamed
        ):
            self.idle_limits.append(
                (
                    scale.wait(gateway.idle_timeout_s),
                    "gateway_timeout",
                    gateway.idle_until_first_byte,
                )
            )
        if gateway.proxy_idle_timeout_s is not None:
            self.idle_limits.append(
                (scale.wait(gateway.proxy_idle_timeout_s), "proxy_timeout", False)
            )
        keep_alive = exchange.settings.keep_alive_s
        self.keep_alive = scale.wait(keep_alive) if (keep_alive and self.stream) else None
        self.pending: collections.deque[Event] = collections.deque()
        self.images: list[bytes | None] = [None] * self.request.n
        self.completed = 0

    def _kill_deadline(self) -> tuple[float, str]:
        started = self.x.response is not None
        limits = [
            (limit, kind)
            for limit, kind, first_byte_only in self.idle_limits
            if not (started and first_byte_only)
        ]
        if not limits:
            return math.inf, ""
        limit, kind = min(limits)
        return self.x.last_byte_at + limit, kind

    async def pump(self) -> web.StreamResponse:
        loop = self.x.loop
        while True:
            now = loop.time()
            if now >= self.hold_until and self.pending:
                answer = await self._deliver(self.pending.popleft())
                if answer is not None:
                    return answer
                continue
            kill_at, kill_kind = self._kill_deadline()
            if now >= kill_at:
                return self._kill(kill_kind)
            keep_alive_at = math.inf
            if self.keep_alive is not None and now >= self.hold_until:
                keep_alive_at = self.x.last_byte_at + self.keep_alive
                if now >= keep_alive_at:
                    await self.x.start_response(content_type="text/event-stream")
                    await self.x.write([sse.KEEP_ALIVE])
                    continue
            if self.x.client_gone():
                raise ClientGone
            wake = min(kill_at, keep_alive_at, now + DISCONNECT_POLL_S)
            if now < self.hold_until:
                wake = min(wake, self.hold_until)
            try:
                event = await asyncio.wait_for(self.generation.queue.get(), max(0.0, wake - now))
            except TimeoutError:
                continue
            self.pending.append(event)

    def _kill(self, outcome: str) -> web.StreamResponse:
        """The gateway (408) or proxy (504) gives up; the generation behind it runs on."""
        self.generation.detach()
        if self.x.response is None:
            err = errors.apim_timeout() if outcome == "gateway_timeout" else errors.proxy_timeout()
            return self.x.error_response(err, outcome, from_gateway=True)
        self.x.finish(status=self.x.response.status, outcome=outcome)
        return self.x.abort()

    async def _deliver(self, event: Event) -> web.StreamResponse | None:
        step = event.step
        x = self.x
        if step.kind == "reset":
            self.generation.detach()
            x.finish(
                status=x.response.status if x.response else 0, outcome="fault:connection_reset"
            )
            return x.abort()
        if step.kind == "crash":
            return await self._deliver_crash()
        if self.stream:
            return await self._deliver_stream(event)
        return await self._deliver_json(event)

    async def _deliver_crash(self) -> web.StreamResponse:
        """The generation failed inside the simulator: a 500, or an error event mid-stream."""
        x = self.x
        if x.response is None:
            return x.error_response(errors.server_error(), "simulator_error")
        x.finish(status=x.response.status, outcome="simulator_error")
        if not self.stream:
            return x.abort()
        style: Literal["azure", "openai"] = "azure" if x.owner == "azure" else "openai"
        body = errors.stream_error_event(
            errors.mid_stream_server_error(), style=style, sequence_number=x.partials_sent
        )
        await x.write([sse.error_event(body, named=self.named)])
        await self._end_stream()
        return x.response

    @property
    def named(self) -> bool:
        """Whether events carry an ``event:`` line (the route's ``sse_dialect``)."""
        return self.x.settings.sse_dialect == "event_lines"

    async def _end_stream(self) -> None:
        """A clean end of a stream; the ``data_only`` dialect says so with ``data: [DONE]``."""
        if not self.named:
            await self.x.write([sse.DONE])
        await self.x.end()

    def _fields(self) -> dict[str, Any]:
        request = self.request
        return {
            "created_at": int(time.time()),
            "size": request.size,
            "quality": request.quality,
            "background": request.background,
            "output_format": request.output_format,
        }

    async def _deliver_stream(self, event: Event) -> web.StreamResponse | None:
        step = event.step
        x = self.x
        prefix = "image_generation" if self.request.endpoint == "generations" else "image_edit"
        response = await x.start_response(content_type="text/event-stream")
        if step.kind == "partial":
            assert event.image is not None
            fields = {**self._fields(), "partial_image_index": step.partial_index}
            await x.write(
                sse.image_event(f"{prefix}.partial_image", fields, event.image, named=self.named)
            )
            x.partials_sent += 1
            return None
        if step.kind == "completed":
            assert event.image is not None
            usage = usage_for(self.request, x.state.config.tokens)
            fields = {**self._fields(), "usage": usage}
            self.completed += 1
            last = self.completed == self.request.n
            if last:
                # Recorded before the last byte: a client may act on it before write_eof returns.
                x.finish(status=200, outcome="completed")
            await x.write(
                sse.image_event(f"{prefix}.completed", fields, event.image, named=self.named)
            )
            if not last:
                return None
            await self._end_stream()
            return response
        assert self.fault is not None
        if step.kind == "error":
            err = errors.mid_stream_server_error(
                self.fault.error_type, self.fault.code, self.fault.message, self.fault.param
            )
            style: Literal["azure", "openai"] = (
                "openai" if self.fault.style == "openai" else "azure"
            )
            body = errors.stream_error_event(err, style=style, sequence_number=x.partials_sent)
            x.finish(status=200, outcome="fault:mid_stream_error")
            await x.write([sse.error_event(body, named=self.named)])
            await self._end_stream()
            return response
        # "end": the stream closes cleanly without its completed event.
        x.finish(status=200, outcome="fault:stream_without_completed")
        await self._end_stream()
        return response

    async def _deliver_json(self, event: Event) -> web.StreamResponse | None:
        step = event.step
        x = self.x
        if step.kind == "completed":
            assert event.image is not None
            self.images[step.image_index] = event.image
            self.completed += 1
            if self.completed < self.request.n:
                return None
            images = [image for image in self.images if image is not None]
            self.images = []
            response = await x.start_response(content_type="application/json")
            x.finish(status=200, outcome="completed")
            await x.write(images_response_body(self.request, images, x.state.config.tokens))
            await x.end()
            return response
        assert self.fault is not None
        if step.kind == "error":
            err = errors.mid_stream_server_error(
                self.fault.error_type, self.fault.code, self.fault.message, self.fault.param
            )
            return x.error_response(err, "fault:mid_stream_error")
        # "end" without a stream: the body stops short of what Content-Length promised.
        response = web.StreamResponse(status=200, headers=x.headers())
        response.content_type = "application/json"
        response.content_length = 1_000_000
        x.response = response
        try:
            await response.prepare(x.request)
            await x.write([b'{"created":'])
        except ClientGone:
            pass
        x.finish(status=200, outcome="fault:stream_without_completed")
        return x.abort()


def _model_name(value: object) -> str:
    """The deployment named by ``model`` on Azure's v1 path."""
    if value is None or value == "":
        raise errors.missing_parameter("model")
    if not isinstance(value, str):
        raise errors.invalid_type("model", "a string", type(value).__name__)
    return value


def _retry_headers(fault: FaultSpec, wait_s: float) -> dict[str, str]:
    """Headers of a scripted 429 in the style the fault names."""
    style = fault.header_style
    if style == "openai":
        return {
            "retry-after": str(max(1, math.ceil(wait_s))),
            "retry-after-ms": str(max(1, math.ceil(wait_s * 1000))),
            "x-ratelimit-remaining-requests": "0",
        }
    if style == "azure_minus_one":
        return {
            "x-ratelimit-limit-requests": "-1",
            "x-ratelimit-remaining-requests": "-1",
            "x-ratelimit-limit-tokens": "-1",
            "x-ratelimit-remaining-tokens": "-1",
        }
    if style == "retry_after_only":
        return {"retry-after": str(max(1, math.ceil(wait_s)))}
    return {}
