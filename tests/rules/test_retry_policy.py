"""The retry policy, pinned by examples from the field reports and by properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.outcome import Failure, FailureKind, Layer
from rules.retry import RetryPolicy, decide

POLICY = RetryPolicy()
# insufficient_quota, 400s (validation, moderation, content filter), 401 (credentials), 403
# (permission) are never retried; nor is a 404 or a cancel. Written out here, not taken from
# the code under test.
NEVER_RETRIED = {
    FailureKind.QUOTA_EXHAUSTED,
    FailureKind.REJECTED,
    FailureKind.AUTH_FAILED,
    FailureKind.PERMISSION_DENIED,
    FailureKind.NOT_FOUND,
    FailureKind.CANCELLED,
}


def failure(kind: FailureKind, **extra: object) -> Failure:
    values: dict[str, object] = {"layer": Layer.ROUTE, "message": "m", "sent": True}
    values.update(extra)
    return Failure(kind=kind, **values)  # type: ignore[arg-type]


def test_transient_waits_follow_the_azure_answer():
    waits = []
    previous: list[Failure] = []
    for attempt in (1, 2, 3):
        f = failure(FailureKind.SERVER_ERROR, http_status=500)
        decision = decide(f, attempt=attempt, previous=previous, policy=POLICY, jitter=0.0)
        previous.append(f)
        waits.append(decision.wait_s)
    assert waits == [5.0, 15.0, 30.0]
    last = decide(
        failure(FailureKind.SERVER_ERROR), attempt=4, previous=previous, policy=POLICY, jitter=0
    )
    assert last.retry is False
    assert last.failure == "returned_error"


def test_a_rate_limit_without_any_hint_backs_off_exponentially():
    previous: list[Failure] = []
    waits = []
    for attempt in (1, 2, 3):
        f = failure(FailureKind.RATE_LIMITED, http_status=429)
        waits.append(decide(f, attempt=attempt, previous=previous, policy=POLICY, jitter=0).wait_s)
        previous.append(f)
    assert waits == [10.0, 20.0, 40.0]


def test_post_send_failures_resend_once_after_a_wait_and_say_so():
    gateway = failure(FailureKind.GATEWAY_TIMEOUT, layer=Layer.GATEWAY, http_status=408)
    first = decide(gateway, attempt=1, previous=[], policy=POLICY, jitter=0)
    assert first.retry is True
    assert first.post_send_resend is True
    assert first.wait_s == POLICY.post_send_wait_s
    assert "gateway" in first.reason
    second = decide(gateway, attempt=2, previous=[gateway], policy=POLICY, jitter=0)
    assert second.retry is False
    never = decide(gateway, attempt=1, previous=[], policy=RetryPolicy(post_send="never"), jitter=0)
    assert never.retry is False


def test_a_local_timeout_that_gives_up_ends_as_local_timeout():
    timeout = failure(FailureKind.LOCAL_TIMEOUT, layer=Layer.HTTP_CLIENT, timeout="read_idle")
    decision = decide(
        timeout, attempt=1, previous=[], policy=RetryPolicy(post_send="never"), jitter=0
    )
    assert decision.failure == "local_timeout"


def test_a_connect_failure_before_the_send_is_an_ordinary_bounded_retry():
    refused = failure(FailureKind.CONNECTION_LOST, layer=Layer.NETWORK, sent=False)
    decision = decide(refused, attempt=1, previous=[], policy=POLICY, jitter=0)
    assert decision.retry is True
    assert decision.post_send_resend is False
    assert decision.wait_s == 5.0


kinds = st.sampled_from(list(FailureKind))
hints = st.one_of(st.none(), st.floats(min_value=0, max_value=10**9, allow_nan=False))


@st.composite
def failures(draw: st.DrawFn) -> Failure:
    kind = draw(kinds)
    return failure(
        kind,
        sent=draw(st.booleans()),
        retry_after_s=draw(hints),
        retry_after_source="retry-after" if kind is FailureKind.RATE_LIMITED else None,
    )


@given(failures(), st.floats(min_value=0, max_value=0.999), st.integers(1, 20))
def test_waits_are_never_below_what_the_server_asked(f, jitter, attempt):
    decision = decide(f, attempt=attempt, previous=[], policy=POLICY, jitter=jitter)
    if decision.retry and f.kind is FailureKind.RATE_LIMITED and f.retry_after_s is not None:
        assert decision.wait_s >= f.retry_after_s
    if decision.retry:
        assert decision.wait_s <= POLICY.max_server_wait_s * (1 + POLICY.jitter_fraction)


@given(failures(), st.floats(min_value=0, max_value=0.999), st.integers(1, 20))
def test_a_non_retryable_outcome_is_never_retried(f, jitter, attempt):
    decision = decide(f, attempt=attempt, previous=[], policy=POLICY, jitter=jitter)
    if f.kind in NEVER_RETRIED:
        assert decision.retry is False
        assert decision.failure in ("returned_error", "local_timeout")


@given(st.lists(failures(), min_size=1, max_size=40), st.floats(min_value=0, max_value=0.999))
def test_attempts_are_bounded(sequence, jitter):
    """Whatever keeps going wrong, the policy stops within its limits."""
    previous: list[Failure] = []
    bound = POLICY.max_attempts + POLICY.rate_limit_max_attempts
    for attempt, f in enumerate(sequence, start=1):
        decision = decide(f, attempt=attempt, previous=previous, policy=POLICY, jitter=jitter)
        if not decision.retry:
            break
        assert attempt < bound
        assert decision.wait_s > 0
        previous.append(f)


@pytest.mark.parametrize("kind", sorted(NEVER_RETRIED))
def test_never_retried_kinds(kind):
    assert decide(failure(kind), attempt=1, previous=[], policy=POLICY, jitter=0).retry is False


def test_a_zero_retry_after_is_not_a_tight_loop():
    zero = failure(FailureKind.RATE_LIMITED, retry_after_s=0.0, retry_after_source="retry-after")
    decision = decide(zero, attempt=1, previous=[], policy=POLICY, jitter=0)
    assert decision.wait_s >= POLICY.rate_limit_min_s
