"""The ``usage`` object of a response and what it costs, from the published prices.

Prices: docs/reference/gpt-image-2-api.md, "Prices and rate limits".

The project's cost figures (and the ledger's billed total) come from here, so the numbers follow
the reference: gpt-image-2 output tokens cost $30 per 1M, and a 1024x1024 image costs $0.006 (low),
$0.053 (medium) or $0.211 (high); 1536x1024 (and 1024x1536) $0.005 / $0.041 / $0.165. Those prices
divided by $30 per 1M give the output tokens of one image. Other sizes scale by pixel area from the
nearest row (square sizes from 1024x1024, the rest from 1536x1024). Each partial image adds 100
output tokens; everything is multiplied by ``n``.

ASSUMPTIONS (not in the reference, settings in ``Prices`` / ``TokenTable``): text input $5 per 1M,
image input $8 per 1M; a prompt is ``ceil(chars / 4)`` text tokens; an edit's input image is 1,000
image tokens and a mask 200.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from simulator.validation import ImageRequest


@dataclass(frozen=True)
class Prices:
    """USD per 1M tokens. Only ``output_per_million`` is published; the rest are assumed."""

    output_per_million: float = 30.0
    text_input_per_million: float = 5.0
    image_input_per_million: float = 8.0


def _tokens(price_usd: float, prices: Prices) -> int:
    return round(price_usd / prices.output_per_million * 1_000_000)


@dataclass(frozen=True)
class TokenTable:
    """Output tokens of one image at the reference's priced sizes, and the input assumptions."""

    square_1024: Mapping[str, int] = field(
        default_factory=lambda: {
            "low": _tokens(0.006, Prices()),
            "medium": _tokens(0.053, Prices()),
            "high": _tokens(0.211, Prices()),
        }
    )
    landscape_1536: Mapping[str, int] = field(
        default_factory=lambda: {
            "low": _tokens(0.005, Prices()),
            "medium": _tokens(0.041, Prices()),
            "high": _tokens(0.165, Prices()),
        }
    )
    partial_image_tokens: int = 100
    chars_per_text_token: int = 4
    tokens_per_input_image: int = 1_000
    tokens_per_mask: int = 200


DEFAULT_PRICES = Prices()
DEFAULT_TOKENS = TokenTable()


def image_output_tokens(
    width: int, height: int, quality: str, table: TokenTable = DEFAULT_TOKENS
) -> int:
    """Output tokens of one final image of this size and quality."""
    if width == height:
        row, reference = table.square_1024, 1024 * 1024
    else:
        row, reference = table.landscape_1536, 1536 * 1024
    return max(1, round(row[quality] * width * height / reference))


def usage_for(request: ImageRequest, table: TokenTable = DEFAULT_TOKENS) -> dict[str, object]:
    """The response's ``usage`` object for a completed request (all ``n`` images)."""
    text_tokens = math.ceil(request.prompt_chars / table.chars_per_text_token)
    image_tokens = request.input_images * table.tokens_per_input_image
    if request.has_mask:
        image_tokens += table.tokens_per_mask
    per_image = image_output_tokens(request.width, request.height, request.quality, table)
    per_image += table.partial_image_tokens * request.partial_images
    output_tokens = per_image * request.n
    input_tokens = text_tokens + image_tokens
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def _int_field(mapping: Mapping[str, object], key: str) -> int:
    value = mapping.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"usage field {key!r} must be an integer, got {value!r}")
    return value


def cost_usd(usage: Mapping[str, object], prices: Prices = DEFAULT_PRICES) -> float:
    """What a ``usage`` object costs in USD."""
    details = usage.get("input_tokens_details", {})
    if not isinstance(details, Mapping):
        raise ValueError("usage field 'input_tokens_details' must be an object")
    text_tokens = _int_field(details, "text_tokens")
    image_tokens = _int_field(details, "image_tokens")
    output_tokens = _int_field(usage, "output_tokens")
    return (
        text_tokens * prices.text_input_per_million
        + image_tokens * prices.image_input_per_million
        + output_tokens * prices.output_per_million
    ) / 1_000_000
