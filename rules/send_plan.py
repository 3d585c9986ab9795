"""What to send for one attempt: stream or not, how many partial images, and why.

Field report B (docs/reference/field-reports.md): behind Azure's API Management a stream that sends
nothing for 60 s is answered with a 408 while the generation behind it runs on and is billed;
``partial_images: 0`` is exactly such a stream for any large image. When a route declares its
gateway's idle limit and the model may take longer than that, a request for 0 partials is sent with
1 (or without streaming, per the ``IMAGE_SILENT_STREAM_FIX`` setting), and the plan carries a note
that metadata.json keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rules.models import ModelRules, rules_for
from rules.request import ImageJobRequest
from rules.settings import RouteSettings


@dataclass(frozen=True)
class SendPlan:
    stream: bool
    partial_images: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "partial_images": self.partial_images,
            "send_notes": list(self.notes),
        }


def plan_send(request: ImageJobRequest, route: RouteSettings, *, silent_fix: str) -> SendPlan:
    rules = rules_for(route.model)
    notes = _size_notes(request, rules)
    idle = route.gateway_idle_timeout_s
    if request.partial_images > 0 or idle is None:
        return SendPlan(stream=True, partial_images=request.partial_images, notes=notes)
    expected = rules.expected_generation_s(request.quality, request.size)
    if expected <= idle:
        return SendPlan(stream=True, partial_images=0, notes=notes)
    why = (
        f"partial_images 0 would leave the stream silent for up to {expected:.0f}s, past the "
        f"route's {idle:g}s gateway idle limit"
    )
    if silent_fix == "non_streaming":
        return SendPlan(
            stream=False, partial_images=0, notes=[*notes, f"{why}: sent without streaming"]
        )
    return SendPlan(
        stream=True, partial_images=1, notes=[*notes, f"{why}: sent with partial_images 1"]
    )


def _size_notes(request: ImageJobRequest, rules: ModelRules) -> list[str]:
    if request.size == "auto":
        return []
    width, height = (int(edge) for edge in request.size.split("x"))
    limit = rules.sizes.experimental_above_pixels
    if width * height <= limit:
        return []
    return [
        f"size {request.size} is above {limit:,} pixels, which {rules.name} calls experimental: "
        "expect longer generations and more mid-stream errors"
    ]
