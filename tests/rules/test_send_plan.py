"""The send plan against every idle limit on the path: the shape that stays inside them, the
read limit raised for a long silence, a different shape after a silence kill, and the start-up
check for the slowest request."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rules.errors import SettingsInvalid
from rules.outcome import Failure, FailureKind, Layer
from rules.request import parse_job_request
from rules.route_records import Expectation
from rules.send_plan import SILENCE_MARGIN, PlanBasis, SendPlan, plans, plans_by, silence_kill
from rules.settings import AppSettings

from .conftest import ENV

SETTINGS = AppSettings.from_env(ENV)


def plan_for(
    body: dict[str, object], settings: AppSettings = SETTINGS, fix: str = "partial_images"
) -> tuple[SendPlan, SendPlan | None]:
    """(the first plan, the plan after our read-idle limit fired)."""
    request = parse_job_request({"prompt": "p", **body}, settings)
    planned = plans(request, replace(settings, silent_stream_fix=fix))
    return planned.first, planned.after_read_idle


def gateway_plan_for(body: dict[str, object], fix: str = "partial_images") -> SendPlan | None:
    request = parse_job_request({"prompt": "p", **body}, SETTINGS)
    return plans(request, replace(SETTINGS, silent_stream_fix=fix)).after_gateway_kill


def test_a_4k_high_job_behind_a_60s_gateway_is_not_streamed_and_waits_long_enough():
    # The first partial of a 3840x2160 high stream comes after ~70 s: past the gateway's 60 s.
    first, after = plan_for({"size": "3840x2160", "quality": "high"})
    assert (first.stream, first.partial_images) == (False, 0)
    assert first.read_idle_s is not None
    assert first.read_idle_s > SETTINGS.timeouts.read_idle_s  # ~392 s of silence, plus margin
    assert first.read_idle_s <= SETTINGS.timeouts.request_s
    assert any("60s gateway idle limit" in note for note in first.notes)
    assert any("read limit raised" in note for note in first.notes)
    assert after is not None
    assert not after.same_shape(first)


def test_the_gateway_watching_non_streamed_requests_too_leaves_no_shape_and_says_so():
    env = dict(ENV, IMAGE_ROUTE_AZURE_GATEWAY_IDLE_NON_STREAMED="true", IMAGE_ROUTES="azure")
    with pytest.raises(SettingsInvalid) as caught:
        AppSettings.from_env(env)
    assert caught.value.setting == "IMAGE_REQUEST_TIMEOUT_S"
    assert "3840x2160" in str(caught.value)


def test_a_silent_4k_stream_without_a_gateway_gets_a_longer_read_limit_not_a_new_shape():
    first, after = plan_for(
        {"size": "3840x2160", "quality": "high", "partial_images": 0, "route": "openai"}
    )
    assert (first.stream, first.partial_images) == (True, 0)  # as asked: no extra partials
    assert first.read_idle_s is not None
    assert first.read_idle_s >= 390 * SILENCE_MARGIN
    # After a read-idle kill: streamed with a partial image (it speaks within ~70 s).
    assert after is not None
    assert (after.stream, after.partial_images) == (True, 1)


def test_a_2k_high_silent_stream_behind_the_gateway_gets_one_partial():
    first, _ = plan_for({"size": "2048x2048", "quality": "high", "partial_images": 0})
    assert (first.stream, first.partial_images) == (True, 1)
    assert first.read_idle_s is None


def test_what_fits_is_sent_as_asked():
    first, _ = plan_for({"size": "1024x1024", "quality": "low", "partial_images": 2})
    assert (first.stream, first.partial_images, first.read_idle_s) == (True, 2, None)
    assert first.notes == ()


@pytest.mark.parametrize(
    "body",
    [
        {"size": "3840x2160", "quality": "high"},
        {"size": "3840x2160", "quality": "high", "partial_images": 0, "route": "openai"},
        {"size": "2048x2048", "quality": "high", "partial_images": 0},
        {"size": "3840x2160", "quality": "medium", "partial_images": 0},
        {"size": "2160x3840", "quality": "high", "partial_images": 3},
    ],
)
@pytest.mark.parametrize("fix", ["partial_images", "non_streaming"])
def test_a_resend_after_a_silence_kill_never_repeats_the_silent_shape(body, fix):
    first, after = plan_for(body, fix=fix)
    assert after is not None
    assert not after.same_shape(first)


def test_silence_kills_are_a_gateway_timeout_or_our_read_idle_limit():
    def failure(kind: FailureKind, timeout: str | None = None) -> Failure:
        return Failure(kind=kind, layer=Layer.GATEWAY, message="m", sent=True, timeout=timeout)

    assert silence_kill(failure(FailureKind.GATEWAY_TIMEOUT)) == "gateway"
    assert silence_kill(failure(FailureKind.LOCAL_TIMEOUT, "read_idle")) == "read_idle"
    assert silence_kill(failure(FailureKind.LOCAL_TIMEOUT, "request")) is None
    assert silence_kill(failure(FailureKind.SERVER_ERROR)) is None


def test_a_request_limit_too_short_for_the_slowest_silence_is_refused_at_start_up():
    with pytest.raises(SettingsInvalid) as caught:
        AppSettings.from_env(dict(ENV, IMAGE_REQUEST_TIMEOUT_S="400"))
    assert caught.value.setting == "IMAGE_REQUEST_TIMEOUT_S"
    assert "IMAGE_READ_IDLE_TIMEOUT_S" in str(caught.value)


def test_the_time_scale_divides_estimates_limits_and_waits_alike():
    scaled = AppSettings.from_env(dict(ENV, IMAGE_TIME_SCALE="25"))
    assert scaled.timeouts.read_idle_s == SETTINGS.timeouts.read_idle_s / 25
    # The network's limits, not the model's, keep their seconds.
    assert scaled.timeouts.connect_s == SETTINGS.timeouts.connect_s
    assert scaled.route("azure").gateway_idle_timeout_s == 60 / 25
    assert scaled.retry.post_send_wait_s == SETTINGS.retry.post_send_wait_s / 25
    real_waits = SETTINGS.retry.transient_waits_s
    assert scaled.retry.transient_waits_s == tuple(w / 25 for w in real_waits)
    # The same shapes are chosen at any scale.
    bodies: list[dict[str, object]] = [
        {"size": "3840x2160", "quality": "high"},
        {"size": "2048x2048", "partial_images": 0},
    ]
    for body in bodies:
        real, _ = plan_for(body)
        fast, _ = plan_for(body, scaled)
        assert (real.stream, real.partial_images) == (fast.stream, fast.partial_images)


def test_a_scaled_clock_is_refused_in_azure():
    with pytest.raises(SettingsInvalid) as caught:
        AppSettings.from_env(dict(ENV, IMAGE_TIME_SCALE="10", WEBSITE_INSTANCE_ID="abc"))
    assert caught.value.setting == "IMAGE_TIME_SCALE"


def test_a_silent_stream_is_judged_by_its_longest_gap_against_the_read_limit():
    # One partial at ~18 % leaves ~82 % of a 4K high generation silent before the final image.
    first, _ = plan_for({"size": "3840x2160", "quality": "high", "route": "openai"})
    assert (first.stream, first.partial_images) == (True, 1)
    assert first.read_idle_s is not None
    assert first.read_idle_s > SETTINGS.timeouts.read_idle_s
    three, _ = plan_for(
        {"size": "3840x2160", "quality": "high", "route": "openai", "partial_images": 3}
    )
    assert three.read_idle_s is None  # gaps of ~31 % fit the 360 s read limit


def test_after_a_gateway_kill_only_another_shape_is_sent_never_a_longer_read_limit():
    # 2048x2048 high asked with one partial fits behind the gateway; after a gateway kill the
    # resend goes without streaming, a different shape.
    after = gateway_plan_for({"size": "2048x2048", "quality": "high", "partial_images": 1})
    assert after is not None
    assert after.stream is False
    # Where only one shape fits (4K high on Azure: not streamed), nothing else is sent after a
    # gateway kill, while after our own read-idle limit a longer one may still help.
    assert gateway_plan_for({"size": "3840x2160", "quality": "high"}) is None
    first, after_read_idle = plan_for({"size": "3840x2160", "quality": "high"})
    assert after_read_idle is not None
    assert after_read_idle.read_idle_s is not None
    assert first.read_idle_s is not None
    assert after_read_idle.read_idle_s > first.read_idle_s


def learned(total_s: float, *, first_partial_s: float | None = None) -> Expectation:
    return Expectation(
        first_byte_s=0.5,
        first_partial_s=first_partial_s,
        total_s=total_s,
        early_s=total_s * 0.9,
        late_s=total_s * 1.1,
        samples=20,
    )


def test_measured_clocks_replace_the_calibration_once_the_route_has_them():
    request = parse_job_request(
        {"prompt": "p", "size": "1024x1024", "quality": "high", "partial_images": 0}, SETTINGS
    )
    # The calibration (100 s at 1024 high, with margin 120 s) is past the 60 s gateway: one
    # partial image is added. The route measured 40 s (44 s at its 90th percentile): as asked.
    assert plans(request, SETTINGS).first.partial_images == 1
    fast = plans(request, SETTINGS, learned=learned(40.0)).first
    assert (fast.stream, fast.partial_images, fast.notes) == (True, 0, ())
    # Measured slower than the calibration: the learned figure wins the other way too.
    slow_request = replace(request, size="1536x1024", quality="low")
    assert plans(slow_request, SETTINGS).first.partial_images == 0
    assert plans(slow_request, SETTINGS, learned=learned(80.0)).first.partial_images == 1


def test_a_learned_first_partial_share_decides_the_first_silence():
    request = parse_job_request(
        {"prompt": "p", "size": "2048x2048", "quality": "high", "partial_images": 1}, SETTINGS
    )
    # 200 s in all: a first partial at 18% (36 s, 43 s with margin) fits the 60 s gateway ...
    assert plans(request, SETTINGS, learned=learned(200.0, first_partial_s=36.0)).first.stream
    # ... one measured at 60 s (66 s at the slow end, 79 s with margin) does not: not streamed
    # behind a gateway that only watches streams.
    late = plans(request, SETTINGS, learned=learned(200.0, first_partial_s=60.0)).first
    assert late.stream is False


def test_a_learned_expectation_without_samples_is_the_calibration():
    request = parse_job_request({"prompt": "p", "quality": "high", "partial_images": 0}, SETTINGS)
    guess = replace(learned(10.0), samples=0)
    assert plans(request, SETTINGS, learned=guess) == plans(request, SETTINGS)


@pytest.mark.parametrize("fix", ["partial_images", "non_streaming"])
@pytest.mark.parametrize(
    "body",
    [
        {"size": "1024x1024", "quality": "high", "partial_images": 0},
        {"size": "3840x2160", "quality": "high"},
        {"size": "1536x1024", "quality": "low", "partial_images": 2},
        {"size": "1024x1024", "quality": "low", "route": "openai"},
    ],
)
@pytest.mark.parametrize("measured", [None, 40.0, 400.0])
def test_a_frozen_basis_plans_exactly_as_the_settings_it_was_taken_from(body, fix, measured):
    """A job plans again on measured clocks from the basis frozen in its input
    (rules.job_records.RouteDecided): the same plans the settings gave when it started."""
    settings = replace(SETTINGS, silent_stream_fix=fix)
    request = parse_job_request({"prompt": "p", **body}, settings)
    clocks = learned(measured) if measured is not None else None
    basis = PlanBasis.of(request.route, settings)
    assert plans_by(request, basis, learned=clocks) == plans(request, settings, learned=clocks)


def test_a_frozen_basis_plans_the_same_whatever_the_settings_become():
    request = parse_job_request({"prompt": "p", "quality": "high", "partial_images": 0}, SETTINGS)
    basis = PlanBasis.of("azure", SETTINGS)
    before = plans_by(request, basis, learned=learned(90.0))
    assert before == plans(request, SETTINGS, learned=learned(90.0))
    without_gateway = replace(
        SETTINGS,
        routes={
            **SETTINGS.routes,
            "azure": replace(SETTINGS.routes["azure"], gateway_idle_timeout_s=None),
        },
    )
    assert plans(request, without_gateway, learned=learned(90.0)) != before
    assert plans_by(request, basis, learned=learned(90.0)) == before
    with pytest.raises(SettingsInvalid):
        PlanBasis.of("gone", SETTINGS)
