"""Validating a request to start an image job, by the target model's rules, before anything runs.

    job = parse_job_request(body, settings)      # ImageJobRequest, or raises RequestInvalid

A request that the model would refuse is refused here with a 400 naming the field, so no job is
started (and no worker or upstream call is spent) for it. The prompt travels inside the request
object but is never part of ``shape()``, ``repr`` or any error message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rules.errors import RequestInvalid
from rules.inputs import InputRef
from rules.models import ModelRules, SizeRules, rules_for
from rules.route_records import Priority
from rules.settings import AppSettings

FIELDS = (
    "prompt",
    "size",
    "quality",
    "output_format",
    "output_compression",
    "background",
    "moderation",
    "n",
    "partial_images",
    "route",
    # Who waits for the image (rules.route_records.Priority): a job lever, not sent upstream.
    "priority",
    # Whether a failure before the send may move the job to the route's failover partner.
    "failover",
    # An edit's input images and mask (rules.inputs): resolved by the starter, not here.
    "images",
    "mask",
    # Where the job's end is posted (rules.webhooks): a job lever, not sent upstream.
    "webhookUrl",
)
_SIZE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")


@dataclass(frozen=True)
class ImageJobRequest:
    """A validated job request; everything resolved except what the service itself resolves
    (``size`` and ``quality`` may stay ``auto``)."""

    prompt: str = field(repr=False)
    size: str
    quality: str
    output_format: str
    background: str
    moderation: str
    n: int
    partial_images: int
    route: str
    output_compression: int | None = None
    # An edit's input images, by content hash (rules.inputs), and its mask; none: a generation.
    images: tuple[InputRef, ...] = ()
    mask: InputRef | None = None

    @property
    def is_edit(self) -> bool:
        return bool(self.images)

    @property
    def input_count(self) -> int:
        """Input images sent with the request, the mask included."""
        return len(self.images) + (1 if self.mask is not None else 0)

    def expected_generation_s(self, rules: ModelRules) -> float:
        """How long this request may take at the route's model (seconds, real service time,
        erring long): its size, quality, images, prompt length and inputs
        (ModelRules.expected_generation_s)."""
        return rules.expected_generation_s(
            self.quality,
            self.size,
            n=self.n,
            prompt_chars=len(self.prompt),
            input_images=self.input_count,
        )

    def shape(self) -> dict[str, Any]:
        """The request without its prompt text: safe for status answers, logs and metadata.
        An edit's inputs are described by format, size and bytes, never by hash."""
        shape = self.to_json()
        del shape["prompt"]
        shape["prompt_chars"] = len(self.prompt)
        if self.is_edit:
            shape["images"] = [image.describe() for image in self.images]
            shape["mask"] = self.mask.describe() if self.mask else None
        return shape

    def inputs_summary(self) -> dict[str, Any] | None:
        """An edit's inputs for metadata.json and the log event: count, formats, sizes and
        bytes, the mask's too; never a hash. None for a generation."""
        if not self.is_edit:
            return None
        every = [*self.images, *([self.mask] if self.mask else [])]
        return {
            "images": len(self.images),
            "mask": self.mask is not None,
            "formats": [ref.format for ref in every],
            "sizes": [f"{ref.width}x{ref.height}" for ref in every],
            "bytes": sum(ref.bytes for ref in every),
        }

    def to_json(self) -> dict[str, Any]:
        """The orchestration input (the prompt included: the activity needs it). A
        generation's has no ``images`` or ``mask`` key, as before edits existed: its
        fingerprint, and so its job id, stays what it was."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        del data["images"], data["mask"]
        if self.is_edit:
            data["images"] = [image.to_json() for image in self.images]
            data["mask"] = self.mask.to_json() if self.mask else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageJobRequest:
        values = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        values["images"] = tuple(InputRef.from_json(i) for i in data.get("images") or ())
        mask = data.get("mask")
        values["mask"] = InputRef.from_json(mask) if mask else None
        return cls(**values)


def parse_job_request(body: object, settings: AppSettings) -> ImageJobRequest:
    """Validate a start request's JSON body against the route's model rules."""
    if not isinstance(body, dict):
        raise RequestInvalid("body", "invalid_type", "the body must be a JSON object")
    route_name = _string(body, "route", settings.default_route)
    if route_name not in settings.routes:
        choices = ", ".join(sorted(settings.routes))
        raise RequestInvalid("route", "invalid_value", f"route must be one of: {choices}")
    route = settings.routes[route_name]
    rules = rules_for(route.model)
    refused = sorted(rules.refused_parameters & set(body))
    if refused:
        raise RequestInvalid(
            refused[0], "unsupported", f"{rules.name} does not accept {refused[0]}"
        )
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise RequestInvalid(unknown[0], "unknown_field", f"unknown field {unknown[0]!r}")
    defaults = settings.defaults

    prompt = body.get("prompt")
    if prompt is None:
        raise RequestInvalid("prompt", "missing", "prompt is required")
    if not isinstance(prompt, str):
        raise RequestInvalid("prompt", "invalid_type", "prompt must be a string")
    if not prompt.strip():
        raise RequestInvalid("prompt", "invalid_value", "prompt must not be empty")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestInvalid(
            "prompt", "invalid_value", "prompt must be valid Unicode text (a lone surrogate?)"
        ) from None
    if len(prompt) > rules.prompt_max_chars:
        raise RequestInvalid(
            "prompt",
            "too_long",
            f"prompt has {len(prompt)} characters; {rules.name} takes at most "
            f"{rules.prompt_max_chars}",
        )

    size = _string(body, "size", defaults.size)
    check_size(size, rules.sizes, rules.name)
    quality = _choice(body, "quality", defaults.quality, rules.qualities)
    output_format = _string(body, "output_format", defaults.output_format)
    accepted = rules.formats_for(route.owner)
    if output_format not in accepted:
        elsewhere = sorted(
            name
            for name, other in settings.routes.items()
            if output_format in rules_for(other.model).formats_for(other.owner)
        )
        where = f"; route {' or '.join(elsewhere)} accepts {output_format}" if elsewhere else ""
        raise RequestInvalid(
            "output_format",
            "invalid_value",
            f"route {route_name} takes output_format {', '.join(sorted(accepted))}{where}",
        )
    background = _choice(body, "background", defaults.background, rules.backgrounds)
    if background == "transparent" and output_format not in rules.transparent_formats:
        raise RequestInvalid(
            "background",
            "invalid_value",
            f"a transparent background needs output_format "
            f"{' or '.join(sorted(rules.transparent_formats))}, not {output_format}",
        )
    moderation = _choice(body, "moderation", defaults.moderation, rules.moderations)
    n = _integer(body, "n", defaults.n, 1, rules.n_max)
    partial_images = _integer(
        body, "partial_images", defaults.partial_images, 0, rules.partial_images_max
    )
    compression = _compression(body, output_format, rules)
    return ImageJobRequest(
        prompt=prompt,
        size=size,
        quality=quality,
        output_format=output_format,
        output_compression=compression,
        background=background,
        moderation=moderation,
        n=n,
        partial_images=partial_images,
        route=route_name,
    )


def parse_priority(body: object) -> Priority:
    """The job's ``priority``: ``interactive`` (the default) or ``batch``; RequestInvalid
    naming the field otherwise."""
    if not isinstance(body, Mapping):
        return Priority.INTERACTIVE
    value = _choice(
        body,
        "priority",
        Priority.INTERACTIVE.value,
        frozenset(priority.value for priority in Priority),
    )
    return Priority(value)


def parse_failover(body: object) -> bool:
    """The job's ``failover`` (default true); RequestInvalid naming the field unless a boolean."""
    if not isinstance(body, Mapping) or body.get("failover") is None:
        return True
    value = body["failover"]
    if not isinstance(value, bool):
        raise RequestInvalid("failover", "invalid_type", "failover must be true or false")
    return value


def check_size(size: str, rules: SizeRules, model: str) -> None:
    """Raise RequestInvalid naming ``size`` unless the model accepts it."""
    if size == "auto":
        if rules.allow_auto:
            return
        raise RequestInvalid("size", "invalid_value", f"{model} does not take size auto")
    match = _SIZE.match(size)
    if not match:
        raise RequestInvalid("size", "invalid_value", "size must be 'auto' or WIDTHxHEIGHT")
    width, height = int(match[1]), int(match[2])
    problem = size_problem(width, height, rules)
    if problem:
        raise RequestInvalid("size", "invalid_value", f"size {size}: {problem} ({model})")


def size_problem(width: int, height: int, rules: SizeRules) -> str | None:
    """Why ``width`` x ``height`` breaks the rules, or None when it does not."""
    if width % rules.multiple_of or height % rules.multiple_of:
        return f"both edges must be multiples of {rules.multiple_of}"
    if max(width, height) > rules.max_edge:
        return f"the longest edge must be at most {rules.max_edge}"
    if max(width, height) > rules.max_ratio * min(width, height):
        return f"the long edge must be at most {rules.max_ratio:g} times the short edge"
    pixels = width * height
    if not rules.min_pixels <= pixels <= rules.max_pixels:
        return f"total pixels must be between {rules.min_pixels:,} and {rules.max_pixels:,}"
    return None


def _string(body: Mapping[str, object], name: str, default: str) -> str:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise RequestInvalid(name, "invalid_type", f"{name} must be a string")
    return value


def _choice(body: Mapping[str, object], name: str, default: str, allowed: frozenset[str]) -> str:
    value = _string(body, name, default)
    if value not in allowed:
        raise RequestInvalid(
            name, "invalid_value", f"{name} must be one of: {', '.join(sorted(allowed))}"
        )
    return value


def _integer(body: Mapping[str, object], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    # bool is an int in Python; JSON true is not a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestInvalid(name, "invalid_type", f"{name} must be a whole number")
    if not low <= value <= high:
        raise RequestInvalid(name, "invalid_value", f"{name} must be between {low} and {high}")
    return value


def _compression(body: Mapping[str, object], output_format: str, rules: ModelRules) -> int | None:
    if body.get("output_compression") is None:
        return None
    value = _integer(body, "output_compression", 100, 0, 100)
    if output_format not in rules.compression_formats:
        raise RequestInvalid(
            "output_compression",
            "invalid_value",
            f"output_compression applies to {' and '.join(sorted(rules.compression_formats))} "
            f"only, not {output_format}",
        )
    return value
