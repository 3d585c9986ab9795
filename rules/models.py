"""Each image model's request rules, as data.

The rules come from docs/reference/gpt-image-2-api.md (OpenAI's gpt-image-2 model page and
OpenAPI document, Azure's how-to). A newer model is a new entry here plus a route setting, not new
code. Route owners differ in what they accept (Azure serves png and jpeg only), so format sets are
per owner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

ROUTE_OWNERS = ("openai", "azure", "gateway")


@dataclass(frozen=True)
class SizeRules:
    """What ``WxH`` sizes a model accepts."""

    multiple_of: int
    max_edge: int
    max_ratio: float
    min_pixels: int
    max_pixels: int
    # Above this the model page calls the size experimental: accepted, but worth a warning.
    experimental_above_pixels: int
    # The largest size accepted (the slowest to generate): the start-up budget check uses it.
    largest: str
    allow_auto: bool = True


@dataclass(frozen=True)
class InputRules:
    """What an edit's input images must be (``/images/edits``): how many, which formats, how
    large, and what a mask must be. gpt-image-2's: docs/reference/gpt-image-2-api.md, Edits."""

    max_images: int
    # PIL's format names in lower case: png, jpeg, webp.
    image_formats: frozenset[str]
    # Bytes of one input image, at most.
    image_max_bytes: int
    mask_formats: frozenset[str]
    mask_max_bytes: int
    # The mask applies to the first image: it must have that image's width and height.
    mask_same_size: bool = True
    # The mask's fully transparent pixels say where to edit: it needs an alpha channel.
    mask_needs_alpha: bool = True
    # Request fields of a generation that the edits endpoint does not take (400 naming them).
    refused_fields: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class ModelRules:
    """Everything a request to one model must satisfy."""

    name: str
    sizes: SizeRules
    qualities: frozenset[str]
    output_formats: Mapping[str, frozenset[str]]  # route owner -> accepted formats
    backgrounds: frozenset[str]
    transparent_formats: frozenset[str]
    compression_formats: frozenset[str]
    moderations: frozenset[str]
    n_max: int
    partial_images_max: int
    prompt_max_chars: int
    # Parameters the model refuses outright (400 naming them), e.g. input_fidelity.
    refused_parameters: frozenset[str] = field(default_factory=frozenset)
    # A cautious guess at generation time, for deciding whether a stream would sit silent past
    # a gateway's idle limit: seconds at 1024x1024 per quality, growing with pixels ** exponent.
    expected_s_at_1mp: Mapping[str, float] = field(default_factory=dict)
    expected_pixel_exponent: float = 0.66
    # What an edit's input images must be; None: the model takes no edits.
    inputs: InputRules | None = None
    # Each input image (the mask included) adds this much to an edit's expected time.
    expected_s_per_input_image: float = 0.0
    # Each image past the first adds this share of one image's time (the images of one request
    # are not made one after another, but they are not free either).
    expected_extra_image_share: float = 0.0
    # A long prompt multiplies the time, up to this factor at ``expected_prompt_saturation``
    # characters and above, growing evenly from 1 (no prompt) to there.
    expected_prompt_factor_max: float = 1.0
    expected_prompt_saturation: int = 4000
    # A size that is not square takes this much longer.
    expected_non_square_factor: float = 1.0

    def expected_generation_s(
        self,
        quality: str,
        size: str,
        *,
        n: int = 1,
        prompt_chars: int = 0,
        input_images: int = 0,
    ) -> float:
        """How long one request may take (seconds, real service time): ``n`` images of
        ``size`` at ``quality`` for a prompt of ``prompt_chars`` characters (an edit with
        ``input_images`` inputs, mask included), erring long (field reports, not a promise)."""
        width, height = (1536, 1024) if size == "auto" else map(int, size.split("x"))
        # auto quality is treated as the slowest: Azure's default is high.
        base = self.expected_s_at_1mp.get(quality) or max(self.expected_s_at_1mp.values())
        total = base * ((width * height) / (1024 * 1024)) ** self.expected_pixel_exponent
        if width != height:
            total *= self.expected_non_square_factor
        saturation = min(1.0, max(0, prompt_chars) / self.expected_prompt_saturation)
        total *= 1.0 + (self.expected_prompt_factor_max - 1.0) * saturation
        total *= 1.0 + self.expected_extra_image_share * (max(1, n) - 1)
        return float(total + self.expected_s_per_input_image * input_images)

    def formats_for(self, owner: str) -> frozenset[str]:
        return self.output_formats.get(owner, self.output_formats["openai"])


_ALL_FORMATS = frozenset({"png", "jpeg", "webp"})

GPT_IMAGE_2 = ModelRules(
    name="gpt-image-2",
    sizes=SizeRules(
        multiple_of=16,
        max_edge=3840,
        max_ratio=3.0,
        min_pixels=655_360,
        max_pixels=8_294_400,
        experimental_above_pixels=3_686_400,
        largest="3840x2160",
    ),
    qualities=frozenset({"low", "medium", "high", "auto"}),
    output_formats=MappingProxyType(
        {
            "openai": _ALL_FORMATS,
            "gateway": _ALL_FORMATS,
            "azure": frozenset({"png", "jpeg"}),
        }
    ),
    backgrounds=frozenset({"transparent", "opaque", "auto"}),
    transparent_formats=frozenset({"png", "webp"}),
    compression_formats=frozenset({"jpeg", "webp"}),
    moderations=frozenset({"auto", "low"}),
    n_max=10,
    partial_images_max=3,
    prompt_max_chars=32_000,
    refused_parameters=frozenset({"input_fidelity", "response_format"}),
    # Field reports (docs/reference/gpt-image-2-api.md, Latency): Azure 1024x1024 low about 22 s;
    # complex prompts near 2 min; 2048x2048 high 200-250 s. These err long on purpose.
    expected_s_at_1mp=MappingProxyType({"low": 30.0, "medium": 60.0, "high": 100.0}),
    # The edits endpoint (OpenAPI CreateImageEditRequest; the official SDK's images.edit): up
    # to 16 png, webp or jpg images under 50 MB each; a mask is a PNG under 4 MB with the first
    # image's size and an alpha channel. The edit request has no moderation field.
    inputs=InputRules(
        max_images=16,
        image_formats=frozenset({"png", "jpeg", "webp"}),
        image_max_bytes=50 * 1024 * 1024,
        mask_formats=frozenset({"png"}),
        mask_max_bytes=4 * 1024 * 1024,
        refused_fields=frozenset({"moderation"}),
    ),
    # No published figure: the simulator assumes 2 s per input image (latency.py); this errs
    # long, as the figures above do.
    expected_s_per_input_image=3.0,
    # No published figure for n > 1 (UNCERTAIN, docs/reference/gpt-image-2-api.md, Latency):
    # the simulator assumes a quarter of an image's time per extra image; this errs long.
    expected_extra_image_share=0.3,
    # "Complex prompts can take up to about two minutes" (docs/reference, Latency) against
    # about 45 s for a plain 1024x1024 medium one: prompt length is the measure of complexity
    # a service has, so the longest prompts are expected to take up to 2.67 times as long.
    expected_prompt_factor_max=2.67,
    expected_prompt_saturation=4000,
    # "Square sizes are fastest" (docs/reference, Latency): by how much is not published.
    expected_non_square_factor=1.05,
)

MODELS: Mapping[str, ModelRules] = MappingProxyType(
    {
        "gpt-image-2": GPT_IMAGE_2,
        "gpt-image-2-2026-04-21": GPT_IMAGE_2,
    }
)


def rules_for(model: str) -> ModelRules:
    """The rules of ``model``; a model we hold no rules for is a settings error, said plainly."""
    try:
        return MODELS[model]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise KeyError(f"no request rules for model {model!r} (known: {known})") from None
