"""What a generation cost, from the ``usage`` the service returned.

Prices per million tokens. Image output is gpt-image-2's published figure ($30 per 1M, in
docs/reference/gpt-image-2-api.md); text and image input prices are assumptions carried over from
the gpt-image family and kept as data here, so a price change is one edit and every metadata file
says which prices it used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Prices:
    text_input_per_m: float = 5.0
    image_input_per_m: float = 8.0
    image_output_per_m: float = 30.0


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
