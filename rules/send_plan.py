"""What to send for one attempt: stream or not, how many partial images, which read limit, and why.

Every layer on the path gives up on a connection that stays silent too long: a gateway in front
of the model (Azure API Management answers 408 after 60 s without a byte, while the generation
behind it runs on and is billed: field report B in docs/reference/field-reports.md) and our own
read-idle limit. How long a request stays silent depends on its shape: a stream with partial
images first speaks when the first partial arrives (about ``FIRST_PARTIAL_FRACTION`` of the
generation), a stream without partials or a non-streamed request only when the image is done.

So the plan compares the expected silence of each shape, with a margin, against the tightest
idle limit that applies to it, and picks the first shape that fits, in this order:

1. the request as asked;
2. when it asked for no partial images: one partial image, or no streaming, per the
   ``IMAGE_SILENT_STREAM_FIX`` setting (the other one next);
3. no streaming (a route's gateway may not watch non-streamed requests for idleness:
   ``IMAGE_ROUTE_<R>_GATEWAY_IDLE_NON_STREAMED``).

Our own read-idle limit is ours to raise: a shape that fits every gateway but is silent longer
than ``IMAGE_READ_IDLE_TIMEOUT_S`` is sent with a read limit of its expected silence plus the
margin, as long as that stays inside the whole-request limit. The plan also carries the shape to
use after a silence kill (a gateway's 408 or our read-idle timeout), so a resend never repeats
the request that was silent too long. Every change from the request is noted; the notes reach
the status answer and metadata.json.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from rules.errors import RequestInvalid
from rules.models import ModelRules, rules_for
from rules.outcome import Failure, FailureKind
from rules.request import ImageJobRequest
from rules.route_records import Expectation
from rules.settings import AppSettings, RouteSettings

# When the first and the last partial image arrive, as shares of the whole generation (field
# report B: a 2048x2048 high stream with partial images gets its first one well inside a
# minute); partials in between are spread evenly. A calibration, not a promise.
FIRST_PARTIAL_FRACTION = 0.18
LAST_PARTIAL_FRACTION = 0.80
# Expected silences are multiplied by this before they are compared with a limit.
SILENCE_MARGIN = 1.2
NO_SHAPE_FITS = "no request shape is expected to stay inside every idle limit on the path"


@dataclass(frozen=True)
class SendPlan:
    """How an attempt is sent: streamed or not, with how many partial images, with which read
    limit (seconds; None: the ``IMAGE_READ_IDLE_TIMEOUT_S`` setting), and why (notes that the
    status answer and metadata.json show)."""

    stream: bool
    partial_images: int
    notes: tuple[str, ...] = ()
    read_idle_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "partial_images": self.partial_images,
            "send_notes": list(self.notes),
            "read_idle_s": self.read_idle_s,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SendPlan:
        return cls(
            stream=data["stream"],
            partial_images=data["partial_images"],
            notes=tuple(data.get("send_notes") or ()),
            read_idle_s=data.get("read_idle_s"),
        )

    def same_shape(self, other: SendPlan) -> bool:
        return (self.stream, self.partial_images, self.read_idle_s) == (
            other.stream,
            other.partial_images,
            other.read_idle_s,
        )


@dataclass(frozen=True)
class Shape:
    stream: bool
    partial_images: int

    def describe(self) -> str:
        if not self.stream:
            return "without streaming"
        return f"with partial_images {self.partial_images}"


@dataclass(frozen=True)
class Silence:
    """Expected silences of one shape, in seconds: before its first byte (what a gateway that
    watches only the start sees), and the longest anywhere (what our read-idle limit sees)."""

    first_s: float
    longest_s: float
    # The whole request, first byte to last (what the whole-request limit sees).
    total_s: float


def expected_silence(
    rules: ModelRules,
    request: ImageJobRequest,
    shape: Shape,
    *,
    time_scale: float = 1.0,
    learned: Expectation | None = None,
) -> Silence:
    """The shape's expected silences. ``learned``: what the route measured for the request's
    shape class (rules.route_stats); its slow end (90th percentile) replaces the calibration,
    and its first partial image's share of the whole replaces ``FIRST_PARTIAL_FRACTION``."""
    first_share = FIRST_PARTIAL_FRACTION
    if learned is not None and learned.samples > 0:
        total = learned.late_s
        if learned.first_partial_s is not None and learned.total_s > 0:
            first_share = min(LAST_PARTIAL_FRACTION, learned.first_partial_s / learned.total_s)
    else:
        total = request.expected_generation_s(rules) / time_scale
    if not (shape.stream and shape.partial_images > 0):
        return Silence(total, total, total)
    count = shape.partial_images
    marks = [
        first_share + (LAST_PARTIAL_FRACTION - first_share) * (i / (count - 1) if count > 1 else 0)
        for i in range(count)
    ]
    gaps = [marks[0], *(b - a for a, b in itertools.pairwise(marks)), 1 - marks[-1]]
    return Silence(total * marks[0], total * max(gaps), total)


@dataclass(frozen=True)
class _Fit:
    shape: Shape
    # The longest expected silence, with the margin.
    silence_s: float
    # None: the read-idle setting suffices; else the raised read limit.
    read_idle_s: float | None


def silence_kill(failure: Failure) -> str | None:
    """Which layer gave up on silence: ``gateway`` (a gateway's 408 or 504) or ``read_idle``
    (our own read-idle limit); None for any other failure."""
    if failure.kind is FailureKind.GATEWAY_TIMEOUT:
        return "gateway"
    if failure.kind is FailureKind.LOCAL_TIMEOUT and failure.timeout == "read_idle":
        return "read_idle"
    return None


def unfit_worst_case(route: RouteSettings, settings: AppSettings) -> str | None:
    """Why no request shape of the route's slowest request (its model's largest size, high
    quality, no partial images asked) fits the idle limits on the path; None when one does.
    Checked at start-up, so a budget that cannot carry a 4K job is refused before any job."""
    rules = rules_for(route.model)
    worst = ImageJobRequest(
        prompt="-",
        size=rules.sizes.largest,
        quality="high",
        output_format="png",
        background="auto",
        moderation="auto",
        n=1,
        partial_images=0,
        route=route.name,
    )
    plan = plans(worst, settings).first
    if not any(note.startswith(NO_SHAPE_FITS) for note in plan.notes):
        return None
    unstreamed = Shape(stream=False, partial_images=0)
    silence = expected_silence(rules, worst, unstreamed, time_scale=settings.time_scale)
    timeouts = settings.timeouts
    return (
        f"a {worst.size} high generation may stay silent for "
        f"{silence.longest_s * SILENCE_MARGIN:.0f}s (expected {silence.longest_s:.0f}s plus "
        f"margin), and no request shape keeps every idle limit: route {route.name}'s gateway "
        f"idle limit {route.gateway_idle_timeout_s}s, IMAGE_READ_IDLE_TIMEOUT_S "
        f"{timeouts.read_idle_s:g}s, IMAGE_REQUEST_TIMEOUT_S {timeouts.request_s:g}s"
    )


def too_slow(request: ImageJobRequest, settings: AppSettings) -> RequestInvalid | None:
    """Why ``request`` cannot be served inside the whole-request limit (IMAGE_REQUEST_TIMEOUT_S)
    by any shape; None when it can. Such a request would be cut off at that limit every time,
    each time after a billed generation had begun: it is refused at submit instead, naming the
    first field that would bring it inside (fewer images, a shorter prompt, a lower quality, a
    smaller size), with the expected time and the limit in seconds."""
    route, timeouts = settings.route(request.route), settings.timeouts
    rules = rules_for(route.model)

    def expected(candidate: ImageJobRequest) -> float:
        return candidate.expected_generation_s(rules) / settings.time_scale * SILENCE_MARGIN

    limit = timeouts.request_s
    took = expected(request)
    if took <= limit:
        return None
    why = (
        f"n {request.n} at {request.size} {request.quality} (a {len(request.prompt)}-character "
        f"prompt) is expected to take up to {took:.0f}s with margin, past the whole-request "
        f"limit IMAGE_REQUEST_TIMEOUT_S {limit:g}s"
    )
    fewer = [n for n in range(request.n - 1, 0, -1) if expected(replace(request, n=n)) <= limit]
    if fewer:
        return RequestInvalid("n", "invalid_value", f"{why}: ask for n {fewer[0]} or fewer")
    if expected(replace(request, prompt="-")) <= limit:
        return RequestInvalid("prompt", "invalid_value", f"{why}: ask with a shorter prompt")
    lower = [q for q in ("medium", "low") if expected(replace(request, quality=q)) <= limit]
    if request.quality in ("high", "auto") and lower:
        return RequestInvalid("quality", "invalid_value", f"{why}: ask for quality {lower[0]}")
    return RequestInvalid("size", "invalid_value", f"{why}: ask for a smaller size")


@dataclass(frozen=True)
class Plans:
    """The first attempt's plan, and the plans for a resend after a layer gave up on silence:
    after a gateway's kill only another shape helps (a longer read limit of ours does not);
    after our read-idle limit fired, a longer one may. None: nothing but the silent request
    itself fits, so no resend (never the same silent request twice)."""

    first: SendPlan
    after_gateway_kill: SendPlan | None
    after_read_idle: SendPlan | None


@dataclass(frozen=True)
class PlanBasis:
    """Everything ``plans`` reads of the settings for one route: the route's model and gateway
    idle limit (and whether it watches non-streamed requests), our read-idle and whole-request
    limits, the silent-stream fix and the time scale (the limits already scaled, as the
    settings hold them). Frozen into a job's input when it starts
    (rules.job_records.RouteDecided), so a job plans the same whatever the settings become."""

    model: str
    gateway_idle_timeout_s: float | None
    gateway_idle_non_streamed: bool
    read_idle_s: float
    request_s: float
    silent_stream_fix: str
    time_scale: float

    @classmethod
    def of(cls, route: str, settings: AppSettings) -> PlanBasis:
        """The basis of ``route`` in ``settings`` (SettingsInvalid: no such route)."""
        said, timeouts = settings.route(route), settings.timeouts
        return cls(
            model=said.model,
            gateway_idle_timeout_s=said.gateway_idle_timeout_s,
            gateway_idle_non_streamed=said.gateway_idle_non_streamed,
            read_idle_s=timeouts.read_idle_s,
            request_s=timeouts.request_s,
            silent_stream_fix=settings.silent_stream_fix,
            time_scale=settings.time_scale,
        )


def plans(
    request: ImageJobRequest, settings: AppSettings, *, learned: Expectation | None = None
) -> Plans:
    """Pure: the same inputs always give the same plans. ``learned``: the route's measured
    clocks for the request's shape class, used instead of the calibration once it has any.
    SettingsInvalid when the settings name no route ``request.route``."""
    return plans_by(request, PlanBasis.of(request.route, settings), learned=learned)


def plans_by(
    request: ImageJobRequest, basis: PlanBasis, *, learned: Expectation | None = None
) -> Plans:
    """As ``plans``, from a frozen basis (a job's input) instead of the settings of now."""
    silent_fix = basis.silent_stream_fix
    rules = rules_for(basis.model)
    size_notes = _size_notes(request, rules)
    asked = Shape(stream=True, partial_images=request.partial_images)
    order = [asked]
    if request.partial_images == 0:
        one, unstreamed = Shape(True, 1), Shape(False, 0)
        order += [one, unstreamed] if silent_fix == "partial_images" else [unstreamed, one]
    else:
        order.append(Shape(False, 0))
    fits = [fit for shape in order if (fit := _fit(rules, request, basis, shape, learned))]
    if not fits:
        why = f"{NO_SHAPE_FITS}; sent as asked"
        return Plans(SendPlan(True, request.partial_images, (*size_notes, why)), None, None)
    first = _plan(fits[0], asked, request, basis, size_notes, learned)
    other = next(
        (
            _after(_plan(fit, asked, request, basis, size_notes, learned))
            for fit in fits[1:]
            if fit.shape != fits[0].shape
        ),
        None,
    )
    limit = first.read_idle_s or basis.read_idle_s
    longer = min(basis.request_s, 2 * limit)
    after_read_idle = other or (
        _after(replace(first, read_idle_s=longer)) if longer > limit else None
    )
    return Plans(first, other, after_read_idle)


def _after(plan: SendPlan) -> SendPlan:
    return replace(
        plan, notes=(*plan.notes, "a resend after a silence kill goes out in this shape")
    )


def _fit(
    rules: ModelRules,
    request: ImageJobRequest,
    basis: PlanBasis,
    shape: Shape,
    learned: Expectation | None = None,
) -> _Fit | None:
    silence = expected_silence(rules, request, shape, time_scale=basis.time_scale, learned=learned)
    first, longest = silence.first_s * SILENCE_MARGIN, silence.longest_s * SILENCE_MARGIN
    if silence.total_s * SILENCE_MARGIN > basis.request_s:
        return None  # cut off by the whole-request limit in any shape: see ``too_slow``
    gateway = basis.gateway_idle_timeout_s
    watched = shape.stream or basis.gateway_idle_non_streamed
    # A gateway is known to give up on a silent start (field report B); what it does later in
    # a stream that has spoken is not reported, so only the start is held against it.
    if gateway is not None and watched and first > gateway:
        return None
    if longest <= basis.read_idle_s:
        return _Fit(shape, longest, None)
    if longest <= basis.request_s:
        return _Fit(shape, longest, float(math.ceil(longest)))
    return None


def _plan(
    fit: _Fit,
    asked: Shape,
    request: ImageJobRequest,
    basis: PlanBasis,
    size_notes: tuple[str, ...],
    learned: Expectation | None = None,
) -> SendPlan:
    notes = list(size_notes)
    if fit.shape != asked:
        rules = rules_for(basis.model)
        silence = expected_silence(
            rules, request, asked, time_scale=basis.time_scale, learned=learned
        ).first_s
        limit = basis.gateway_idle_timeout_s
        notes.append(
            f"sent {asked.describe()}, the request could stay silent for up to "
            f"{silence * SILENCE_MARGIN:.0f}s, past the route's {limit:g}s gateway idle limit: "
            f"sent {fit.shape.describe()}"
            if limit is not None
            else f"sent {fit.shape.describe()}"
        )
    if fit.read_idle_s is not None:
        notes.append(
            f"expected silence up to {fit.silence_s:.0f}s exceeds IMAGE_READ_IDLE_TIMEOUT_S "
            f"({basis.read_idle_s:g}s): read limit raised to {fit.read_idle_s:g}s for this "
            "request"
        )
    return SendPlan(
        stream=fit.shape.stream,
        partial_images=fit.shape.partial_images,
        notes=tuple(notes),
        read_idle_s=fit.read_idle_s,
    )


def _size_notes(request: ImageJobRequest, rules: ModelRules) -> tuple[str, ...]:
    if request.size == "auto":
        return ()
    width, height = (int(edge) for edge in request.size.split("x"))
    limit = rules.sizes.experimental_above_pixels
    if width * height <= limit:
        return ()
    return (
        f"size {request.size} is above {limit:,} pixels, which {rules.name} calls experimental: "
        "expect longer generations and more mid-stream errors",
    )
