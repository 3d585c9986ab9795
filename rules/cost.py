"""What a generation cost: from the ``usage`` the service returned, or, for a generation that
may have been billed without a usage reaching us, estimated from the request's shape.

Prices per million tokens. Image output is gpt-image-2's published figure ($30 per 1M, in
docs/reference/gpt-image-2-api.md); text and image input prices are assumptions carried over from
the gpt-image family and kept as data here, so a price change is one edit and every metadata file
says which prices it used.

An edit is priced like a generation, plus its input images: from the usage's
``input_tokens_details.image_tokens`` when a usage came back; else estimated with the tokens an
input image and a mask are assumed to take (no published figure: the same assumptions as the
simulator's, tools/simulator/simulator/usage.py, and docs/reference/gpt-image-2-api.md, Prices).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from rules.outcome import Failure, FailureKind
from rules.request import ImageJobRequest


@dataclass(frozen=True)
class Prices:
    text_input_per_m: float = 5.0
    image_input_per_m: float = 8.0
    image_output_per_m: float = 30.0
    # Published USD per image by quality, at 1024x1024 and at 1536x1024 (or 1024x1536); other
    # sizes scale by pixel area from the nearer row (square from the first, the rest from the
    # second). Each partial image adds 100 output tokens.
    per_image_square: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({"low": 0.006, "medium": 0.053, "high": 0.211})
    )
    per_image_oblong: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({"low": 0.005, "medium": 0.041, "high": 0.165})
    )
    partial_image_tokens: int = 100
    # ASSUMED (no published figure): image input tokens of one edit input image, and of a mask.
    input_image_tokens: int = 1_000
    mask_tokens: int = 200


PRICES: Mapping[str, Prices] = {
    "gpt-image-2": Prices(),
    "gpt-image-2-2026-04-21": Prices(),
}


def cost_usd(model: str, usage: Mapping[str, Any] | None) -> float | None:
    """The cost implied by ``usage``; None when there is no usage or no price for the model."""
    if not usage or model not in PRICES:
        return None
    prices = PRICES[model]
    try:
        details = usage.get("input_tokens_details") or {}
        text_in = int(details.get("text_tokens", usage.get("input_tokens", 0)) or 0)
        image_in = int(details.get("image_tokens", 0) or 0)
        output = int(usage.get("output_tokens", 0) or 0)
    except (AttributeError, TypeError, ValueError):
        return None  # usage the route sent in an unexpected shape: no cost, not a failure
    total = (
        text_in * prices.text_input_per_m
        + image_in * prices.image_input_per_m
        + output * prices.image_output_per_m
    ) / 1_000_000
    return round(total, 6)


def estimated_cost_usd(
    model: str,
    *,
    size: str,
    quality: str,
    n: int,
    partial_images: int,
    input_images: int = 0,
    mask: bool = False,
) -> float | None:
    """What one generation (or an edit with ``input_images`` and a ``mask``) of this shape is
    expected to cost, from the published per-image prices (``auto`` size is priced as 1536x1024
    and ``auto`` quality as high, the dearest reading) and the assumed input image tokens; None
    when there is no price for the model."""
    if model not in PRICES:
        return None
    prices = PRICES[model]
    width, height = (1536, 1024) if size == "auto" else (int(e) for e in size.split("x"))
    square = width == height
    row = prices.per_image_square if square else prices.per_image_oblong
    reference = 1024 * 1024 if square else 1536 * 1024
    per_image = row.get(quality, row["high"]) * width * height / reference
    partials = partial_images * prices.partial_image_tokens * prices.image_output_per_m / 1e6
    input_tokens = input_images * prices.input_image_tokens + (prices.mask_tokens if mask else 0)
    inputs = input_tokens * prices.image_input_per_m / 1e6
    return round(n * (per_image + partials) + inputs, 6)


# Failures after which the route may have finished (and billed) the generation although no
# usage reached us: it ran on behind a gateway or proxy that gave up, behind a connection that
# was lost or closed (a cancel), or it delivered an image that we could not read, check or store.
BILLED_WITHOUT_USAGE = frozenset(
    {
        FailureKind.GATEWAY_TIMEOUT,
        FailureKind.LOCAL_TIMEOUT,
        FailureKind.CONNECTION_LOST,
        FailureKind.CANCELLED,
        FailureKind.INTERNAL_ERROR,
        FailureKind.STREAM_INCOMPLETE,
        FailureKind.PROTOCOL_ERROR,
        FailureKind.IMAGE_INVALID,
        FailureKind.STORAGE_FAILED,
    }
)


@dataclass(frozen=True)
class AttemptCost:
    usd: float | None
    # True when ``usd`` is an estimate from the shape (no usage reached us).
    estimated: bool = False


def attempt_cost(
    model: str,
    request: ImageJobRequest,
    *,
    stream: bool,
    partial_images: int,
    failure: Failure | None,
    usage: Mapping[str, Any] | None,
) -> AttemptCost:
    """What one attempt may have cost: from its usage when one arrived; else, when the attempt
    may have been billed (it succeeded, or it was sent and failed in a way that leaves the
    generation running or delivered), estimated from its shape; else nothing. Errors the route
    answered before or instead of generating (429, 4xx, an error event) are not billed."""
    if usage:
        return AttemptCost(cost_usd(model, usage))
    if failure is not None and not (failure.sent and failure.kind in BILLED_WITHOUT_USAGE):
        return AttemptCost(None)
    estimate = estimated_cost_usd(
        model,
        size=request.size,
        quality=request.quality,
        n=request.n,
        partial_images=partial_images if stream else 0,
        input_images=len(request.images),
        mask=request.mask is not None,
    )
    return AttemptCost(estimate, estimated=estimate is not None)
