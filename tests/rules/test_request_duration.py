"""A request's expected duration against the whole-request limit: every factor the route's time
depends on (images, prompt length, size, quality, aspect) is in the estimate, and a request no
shape can serve inside the limit is refused at submit instead of being cut off, and billed, on
every attempt. Checked against the simulator's latency model, the stand-in for the real route:
whatever is accepted fits its slowest draw."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from rules.errors import RequestInvalid
from rules.models import rules_for
from rules.request import ImageJobRequest, parse_job_request
from rules.send_plan import SILENCE_MARGIN, plans, too_slow
from rules.settings import AppSettings
from simulator.latency import LatencyModel
from simulator.validation import ImageRequest

from .conftest import ENV

SETTINGS = AppSettings.from_env(ENV)
RULES = rules_for("gpt-image-2")


def request(prompt_chars: int = 10, route: str = "openai", **body: object) -> ImageJobRequest:
    return parse_job_request({"prompt": "p" * prompt_chars, "route": route, **body}, SETTINGS)


def test_the_estimate_grows_with_every_factor_of_the_routes_time():
    one = request(size="1024x1024", quality="medium").expected_generation_s(RULES)
    assert request(size="1024x1024", quality="medium", n=4).expected_generation_s(RULES) > one
    assert request(4000, size="1024x1024", quality="medium").expected_generation_s(RULES) > one
    assert request(size="1536x1024", quality="medium").expected_generation_s(RULES) > one
    assert request(size="1024x1024", quality="high").expected_generation_s(RULES) > one
    # A long prompt saturates: "complex prompts can take up to about two minutes".
    assert request(4000, size="1024x1024", quality="medium").expected_generation_s(
        RULES
    ) == request(32000, size="1024x1024", quality="medium").expected_generation_s(RULES)


@pytest.mark.parametrize(
    ("body", "prompt_chars", "field", "suggests"),
    [
        # The new user's requests: billed twice, cut off twice, no image.
        ({"n": 10, "size": "3840x2160", "quality": "high"}, 10, "n", "ask for n 3 or fewer"),
        ({"n": 10, "size": "2048x2048", "quality": "high"}, 10, "n", "ask for n 7 or fewer"),
        # One image, but a long prompt at 4K high.
        ({"size": "3840x2160", "quality": "high"}, 4000, "prompt", "shorter prompt"),
    ],
)
def test_a_request_no_shape_serves_inside_the_whole_request_limit_is_refused_naming_the_fix(
    body, prompt_chars, field, suggests
):
    refused = too_slow(request(prompt_chars, **body), SETTINGS)
    assert isinstance(refused, RequestInvalid)
    assert (refused.field, refused.code) == (field, "invalid_value")
    assert suggests in str(refused)
    assert "IMAGE_REQUEST_TIMEOUT_S 900s" in str(refused)
    assert "p" * 20 not in str(refused)  # the prompt's length, never its text


def test_the_refusal_follows_the_limit_and_the_time_scale():
    slow = request(n=10, size="3840x2160", quality="high")
    assert too_slow(slow, SETTINGS) is not None
    roomy = replace(SETTINGS, timeouts=replace(SETTINGS.timeouts, request_s=3600.0))
    assert too_slow(slow, roomy) is None
    # A scaled stack divides the estimate as it divides the limits: the same answer.
    scaled = replace(
        SETTINGS,
        time_scale=25.0,
        timeouts=replace(SETTINGS.timeouts, request_s=SETTINGS.timeouts.request_s / 25),
    )
    assert too_slow(slow, scaled) is not None
    assert too_slow(request(n=2, size="1024x1024", quality="low"), scaled) is None


def _simulator_worst(req: ImageJobRequest, *, stream: bool, partials: int) -> tuple[float, float]:
    """The simulator's slowest draw for ``req`` sent so: (longest silence, whole request)."""
    width, height = (int(edge) for edge in req.size.split("x"))
    model = LatencyModel()
    sim = ImageRequest(
        endpoint="generations",
        model="gpt-image-2",
        prompt=req.prompt,
        prompt_chars=len(req.prompt),
        n=req.n,
        width=width,
        height=height,
        size=req.size,
        quality=req.quality,
        output_format=req.output_format,
        output_compression=None,
        background="auto",
        moderation="auto",
        stream=stream,
        partial_images=partials if stream else 0,
    )
    params = model.params
    total = model.expected_total_s(sim) * (1 + params.jitter)
    if not (stream and partials):
        return total, total
    marks = [
        params.first_partial_fraction
        + (params.last_partial_fraction - params.first_partial_fraction)
        * (i / (partials - 1) if partials > 1 else 0)
        for i in range(partials)
    ]
    gaps = [marks[0], *(b - a for a, b in itertools.pairwise(marks)), 1 - marks[-1]]
    return total * max(gaps), total


SIZES = ("1024x1024", "1536x1024", "2048x2048", "2560x1440", "3840x2160")


@pytest.mark.parametrize("route", ["openai", "azure"])
@pytest.mark.parametrize("quality", ["low", "medium", "high"])
@pytest.mark.parametrize("size", SIZES)
def test_every_accepted_request_fits_the_simulators_slowest_draw(route, quality, size):
    for n, prompt_chars, partials in itertools.product(range(1, 11), (10, 1500, 4000), (0, 2)):
        req = request(prompt_chars, route, size=size, quality=quality, n=n, partial_images=partials)
        if too_slow(req, SETTINGS) is not None:
            continue
        plan = plans(req, SETTINGS).first
        silence, total = _simulator_worst(req, stream=plan.stream, partials=plan.partial_images)
        case = f"n {n} {size} {quality}, {prompt_chars} chars, partials {partials}, {route}"
        assert total <= SETTINGS.timeouts.request_s, case
        assert silence <= (plan.read_idle_s or SETTINGS.timeouts.read_idle_s), case


def test_an_accepted_request_is_planned_with_room_for_its_images():
    # n 4 at 2048x2048 high: the new user's second request was killed at its read limit.
    req = request(size="2048x2048", quality="high", n=4, partial_images=0)
    assert too_slow(req, SETTINGS) is None
    plan = plans(req, SETTINGS).first
    expected = req.expected_generation_s(RULES) * SILENCE_MARGIN
    assert (plan.stream, plan.partial_images) == (True, 0)  # no gateway on this route
    assert plan.read_idle_s is not None
    assert plan.read_idle_s >= expected  # the whole generation's silence, with margin
