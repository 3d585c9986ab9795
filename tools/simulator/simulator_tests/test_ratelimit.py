"""Sliding request and image windows and their headers, on a hand-driven clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.errors import format_duration
from simulator.latency import TimeScale
from simulator.ratelimit import RateLimiter, RateLimitRule


class FakeClock:
    """Service seconds that move only when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0ms"),
        (0.0001, "1ms"),
        (0.012, "12ms"),
        (0.999, "999ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (17.28, "17.28s"),
        (59.9999, "1m0s"),
        (360, "6m0s"),
        (361.25, "6m1.25s"),
        (3661, "1h1m1s"),
    ],
)
def test_durations_are_written_like_openais_headers(seconds, text):
    assert format_duration(seconds) == text


def test_negative_durations_are_refused():
    with pytest.raises(ValueError, match="negative"):
        format_duration(-0.5)


def test_requests_window_allows_the_limit_then_denies_until_the_oldest_expires():
    clock = FakeClock()
    limiter = RateLimiter(RateLimitRule(requests_per_minute=3, images_per_minute=None), clock)
    remaining = []
    for _ in range(3):
        decision = limiter.acquire(1)
        assert decision.allowed
        remaining.append(decision.headers["x-ratelimit-remaining-requests"])
        clock.advance(10)
    assert remaining == ["2", "1", "0"]
    denied = limiter.acquire(1)
    assert not denied.allowed
    assert denied.retry_after_s == pytest.approx(30.0)  # the first request leaves at t0 + 60
    assert denied.headers["retry-after"] == "30"
    assert denied.headers["retry-after-ms"] == "30000"
    assert denied.headers["x-ratelimit-limit-requests"] == "3"
    clock.advance(30)
    assert limiter.acquire(1).allowed


def test_reset_header_is_the_time_until_the_window_is_empty():
    clock = FakeClock()
    limiter = RateLimiter(RateLimitRule(requests_per_minute=10, images_per_minute=None), clock)
    limiter.acquire(1)
    clock.advance(6)
    decision = limiter.acquire(1)
    assert decision.headers["x-ratelimit-reset-requests"] == "1m0s"
    clock.advance(59.988)
    assert limiter.acquire(1).headers["x-ratelimit-reset-requests"] == "1m0s"


def test_images_window_counts_images_not_requests():
    clock = FakeClock()
    limiter = RateLimiter(RateLimitRule(requests_per_minute=None, images_per_minute=5), clock)
    assert limiter.acquire(3).allowed
    clock.advance(5)
    first_denial = limiter.acquire(3)
    assert not first_denial.allowed
    assert first_denial.retry_after_s == pytest.approx(55.0)
    assert first_denial.headers["x-ratelimit-remaining-images"] == "2"
    assert limiter.acquire(2).allowed
    assert "x-ratelimit-limit-requests" not in first_denial.headers


def test_a_request_larger_than_the_image_limit_waits_a_whole_window():
    limiter = RateLimiter(RateLimitRule(None, images_per_minute=4), FakeClock())
    decision = limiter.acquire(5)
    assert not decision.allowed
    assert decision.retry_after_s == pytest.approx(60.0)


def test_denied_requests_do_not_use_the_window():
    clock = FakeClock()
    limiter = RateLimiter(RateLimitRule(requests_per_minute=1, images_per_minute=None), clock)
    assert limiter.acquire(1).allowed
    for _ in range(5):
        assert not limiter.acquire(1).allowed
    clock.advance(60)
    assert limiter.acquire(1).allowed


def test_reported_values_go_through_the_time_scale():
    clock = FakeClock()
    scale = TimeScale(10.0)
    limiter = RateLimiter(
        RateLimitRule(requests_per_minute=1, images_per_minute=None), clock, report=scale.report
    )
    allowed = limiter.acquire(1)
    assert allowed.headers["x-ratelimit-reset-requests"] == "6s"
    clock.advance(20)
    denied = limiter.acquire(1)
    assert denied.retry_after_s == pytest.approx(4.0)  # 40 service seconds / 10
    assert denied.headers["retry-after-ms"] == "4000"


def test_azure_style_sends_limit_and_remaining_without_reset():
    limiter = RateLimiter(RateLimitRule(1, None, header_style="azure"), FakeClock())
    allowed = limiter.acquire(1)
    assert allowed.headers == {
        "x-ratelimit-limit-requests": "1",
        "x-ratelimit-remaining-requests": "0",
    }
    denied = limiter.acquire(1)
    assert not denied.allowed
    assert "retry-after" in denied.headers


def test_azure_minus_one_style_sends_only_minus_ones_and_no_retry_hint():
    limiter = RateLimiter(RateLimitRule(1, 2, header_style="azure_minus_one"), FakeClock())
    assert limiter.acquire(1).allowed
    denied = limiter.acquire(1)
    assert not denied.allowed
    assert denied.retry_after_s is None
    assert set(denied.headers.values()) == {"-1"}
    assert not any(name.startswith("retry-after") for name in denied.headers)


def test_a_rule_needs_at_least_one_window():
    with pytest.raises(ValueError, match="requests_per_minute, images_per_minute or both"):
        RateLimitRule()
    assert RateLimitRule(images_per_minute=2).requests_per_minute is None
    assert RateLimitRule(requests_per_minute=2).images_per_minute is None


def test_a_denial_by_the_images_window_names_it_with_its_counts():
    limiter = RateLimiter(RateLimitRule(requests_per_minute=10, images_per_minute=3), FakeClock())
    assert limiter.acquire(2).allowed

    denied = limiter.acquire(2)

    assert (denied.allowed, denied.window) == (False, "images")
    assert (denied.limit, denied.used, denied.requested) == (3, 2, 2)


def test_a_denial_by_the_requests_window_names_it_with_its_counts():
    limiter = RateLimiter(RateLimitRule(requests_per_minute=2, images_per_minute=100), FakeClock())
    assert limiter.acquire(1).allowed
    assert limiter.acquire(1).allowed

    denied = limiter.acquire(4)

    assert (denied.allowed, denied.window) == (False, "requests")
    assert (denied.limit, denied.used, denied.requested) == (2, 2, 1)


def test_when_both_windows_deny_the_longer_wait_is_named():
    clock = FakeClock()
    limiter = RateLimiter(RateLimitRule(requests_per_minute=2, images_per_minute=3), clock)
    assert limiter.acquire(1).allowed
    clock.advance(10)
    assert limiter.acquire(2).allowed
    clock.advance(10)

    # Requests: the first request leaves at t=60 (40 s). Images: two more need the second
    # request gone too, at t=70 (50 s). The client must hear the longer wait and its window.
    denied = limiter.acquire(2)

    assert (denied.window, denied.limit, denied.used, denied.requested) == ("images", 3, 3, 2)
    assert denied.wait_s == pytest.approx(50)


def test_reset_forgets_the_window():
    limiter = RateLimiter(RateLimitRule(1, None), FakeClock())
    limiter.acquire(1)
    limiter.reset()
    assert limiter.acquire(1).allowed


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"requests_per_minute": 0, "images_per_minute": None}, "requests_per_minute"),
        ({"requests_per_minute": None, "images_per_minute": -1}, "images_per_minute"),
        ({"requests_per_minute": 1, "images_per_minute": 1, "window_s": 0}, "window_s"),
        ({"requests_per_minute": 1, "images_per_minute": 1, "header_style": "x"}, "header_style"),
    ],
)
def test_rules_refuse_impossible_values(kwargs, named):
    with pytest.raises(ValueError, match=named):
        RateLimitRule(**kwargs)


def test_images_must_be_positive():
    with pytest.raises(ValueError, match="at least one image"):
        RateLimiter(RateLimitRule(1, 1), FakeClock()).acquire(0)


@given(
    st.integers(min_value=1, max_value=5),
    st.lists(st.floats(min_value=0, max_value=30, allow_nan=False), min_size=1, max_size=60),
)
def test_no_window_ever_holds_more_accepted_requests_than_the_limit(rpm, gaps):
    clock = FakeClock()
    limiter = RateLimiter(RateLimitRule(requests_per_minute=rpm, images_per_minute=None), clock)
    accepted: list[float] = []
    for gap in gaps:
        clock.advance(gap)
        decision = limiter.acquire(1)
        if decision.allowed:
            accepted.append(clock.now)
        else:
            assert decision.retry_after_s is not None
            assert decision.retry_after_s > 0
    for stamp in accepted:
        in_window = [t for t in accepted if stamp - 60 < t <= stamp]
        assert len(in_window) <= rpm
