"""The upstream side of one request: a generation that runs on its own clock, whoever listens.

A real image service keeps generating (and billing) after a gateway cut the client off or the
client went away. So the generation is a task of its own that walks a timeline (``steps``) and
hands events to the response writer through a queue; the writer may stop listening at any time
(``detach``), and the generation then runs on to its end without rendering pictures nobody will
see, and reports whether it completed.

If anything in a generation raises (a rendering bug, a full disk in the cache), the generation
ends as failed and hands the writer a ``crash`` event, so the client gets a 500 ``server_error``
(or an error event once the stream started) instead of waiting forever.

The timeline is pure (``build_steps``): partial images at the plan's times, the final image(s) at
the plan's total, and the stream faults cut into it (a mid-stream error or a clean end after k
partials stop the generation; a connection reset only cuts the client off).

Rendering runs in a thread pool, started ``render_ahead_s`` (wall seconds) before a step is due,
so drawing overlaps the wait, 50 streams never block the event loop, and a picture is not held
in memory long before it is sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Literal

from simulator import sse
from simulator.faults import FaultSpec
from simulator.images import ImageRenderer
from simulator.latency import GenerationPlan, TimeScale
from simulator.usage import TokenTable, usage_for
from simulator.validation import ImageRequest

__all__ = [
    "Event",
    "Generation",
    "Step",
    "build_steps",
    "fault_time",
    "images_response_body",
    "log_failure",
]

StepKind = Literal["partial", "completed", "error", "end", "reset", "crash"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Step:
    """One point of the timeline, ``at_s`` service seconds after the request arrived."""

    kind: StepKind
    at_s: float
    image_index: int = 0
    partial_index: int = 0


@dataclasses.dataclass(frozen=True)
class Event:
    """What the writer receives: a step, with its picture when it has one."""

    step: Step
    image: bytes | None = None


def log_failure(what: str, exc: BaseException) -> None:
    """Log a simulator bug: the exception's type and frames, never its message (it could carry
    request data, and prompts and keys stay out of logs)."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("%s failed with %s:\n%s", what, type(exc).__name__, frames)


def images_response_body(
    request: ImageRequest, images: list[bytes], tokens: TokenTable
) -> Iterator[bytes]:
    """The non-streamed answer of a completed generation (``ImagesResponse``), in pieces: the
    same for a synchronous request and for a batch request's output line."""
    tail = {
        "background": request.background,
        "output_format": request.output_format,
        "quality": request.quality,
        "size": request.size,
        "usage": usage_for(request, tokens),
    }
    return sse.images_response({"created": int(time.time())}, images, tail)


def fault_time(plan: GenerationPlan, after_partials: int) -> float:
    """When a failure "after k partials" happens: at partial k's time, else at the final's."""
    if after_partials < len(plan.partial_at_s):
        return plan.partial_at_s[after_partials]
    return plan.total_s


def build_steps(
    request: ImageRequest, plan: GenerationPlan, fault: FaultSpec | None = None
) -> list[Step]:
    """The timeline of a generation, with a stream fault cut in where it applies."""
    steps: list[Step] = []
    for partial_index, at_s in enumerate(plan.partial_at_s):
        for image_index in range(request.n):
            steps.append(Step("partial", at_s, image_index, partial_index))
    for image_index in range(request.n):
        steps.append(Step("completed", plan.total_s, image_index))
    if fault is None or fault.stage != "stream":
        return steps
    if fault.kind == "connection_reset" and fault.at == "before_headers":
        return [Step("reset", 0.0), *steps]
    k = fault.after_partials
    at_s = fault_time(plan, k)
    before = [s for s in steps if s.kind == "partial" and s.partial_index < k]
    if fault.kind == "mid_stream_error":
        return [*before, Step("error", at_s, partial_index=min(k, len(plan.partial_at_s)))]
    if fault.kind == "stream_without_completed":
        return [*before, Step("end", at_s)]
    # connection_reset after k partials: the client is cut off, the generation runs on.
    after = [s for s in steps if s not in before]
    return [*before, Step("reset", at_s), *after]


class Generation:
    """Runs a timeline; the writer reads ``queue`` until it detaches or a terminal event comes."""

    def __init__(
        self,
        *,
        request: ImageRequest,
        steps: list[Step],
        renderer: ImageRenderer,
        executor: concurrent.futures.Executor,
        scale: TimeScale,
        started_at: float,
        on_done: Callable[[Generation], None],
        render_ahead_s: float = 3.0,
    ) -> None:
        self.request = request
        self.steps = steps
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.detached = False
        self.completed = False
        self.failed = False
        self._renderer = renderer
        self._executor = executor
        self._scale = scale
        self._started_at = started_at
        self._on_done = on_done
        self._render_ahead_s = render_ahead_s

    def detach(self) -> None:
        """The client is gone: keep time, stop rendering and queueing."""
        self.detached = True

    def _render(self, step: Step) -> bytes:
        if step.kind == "partial":
            return self._renderer.partial(self.request, step.image_index, step.partial_index)
        return self._renderer.final(self.request, step.image_index)

    async def run(self) -> None:
        try:
            for step in self.steps:
                if not await self._step(step):
                    return
            self.completed = True
        except Exception as exc:
            # A bug of the simulator, not a scripted fault: the generation fails, the writer
            # answers the client, and the task ends without an exception nobody retrieves.
            self.failed = True
            log_failure("a generation", exc)
            if not self.detached:
                self.queue.put_nowait(Event(Step("crash", 0.0)))
        finally:
            self._on_done(self)

    async def _step(self, step: Step) -> bool:
        """Wait for one step and hand it over; False when the generation stops here.

        A method of its own so the picture is referenced by nothing here once queued: a loop
        variable would keep it alive through the wait for the next step.
        """
        loop = asyncio.get_running_loop()
        due = self._started_at + self._scale.wait(step.at_s)
        rendering: asyncio.Future[bytes] | None = None
        if not self.detached and step.kind in ("partial", "completed"):
            # Render shortly before the step is due: early enough to be on time under load,
            # late enough that 50 streams do not each hold a picture for minutes.
            early = due - self._render_ahead_s - loop.time()
            if early > 0:
                await asyncio.sleep(early)
            if not self.detached:
                rendering = loop.run_in_executor(self._executor, self._render, step)
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        image = await rendering if rendering is not None else None
        if step.kind in ("error", "end"):
            self.failed = True
            if not self.detached:
                self.queue.put_nowait(Event(step))
            return False
        if not self.detached:
            self.queue.put_nowait(Event(step, image))
        if step.kind == "reset":
            self.detached = True
        return True
