"""What an attempt may have cost: from usage where it arrived, else estimated from the shape
when the route may have billed it, else nothing."""

from __future__ import annotations

import pytest

from rules.cost import attempt_cost, estimated_cost_usd
from rules.outcome import Failure, FailureKind, Layer
from rules.request import ImageJobRequest

REQUEST = ImageJobRequest(
    prompt="p",
    size="2048x2048",
    quality="high",
    output_format="png",
    background="auto",
    moderation="auto",
    n=1,
    partial_images=2,
    route="azure",
)
ESTIMATE = estimated_cost_usd(
    "gpt-image-2", size="2048x2048", quality="high", n=1, partial_images=2
)


def failure(kind: FailureKind, *, sent: bool = True) -> Failure:
    return Failure(kind=kind, layer=Layer.ROUTE, message="m", sent=sent)


def cost(failure_: Failure | None, usage: dict[str, int] | None = None):
    return attempt_cost(
        "gpt-image-2", REQUEST, stream=True, partial_images=2, failure=failure_, usage=usage
    )


def test_published_prices_scale_by_area_and_partials_add_100_tokens_each():
    assert estimated_cost_usd(
        "gpt-image-2", size="1024x1024", quality="low", n=1, partial_images=0
    ) == pytest.approx(0.006)
    assert estimated_cost_usd(
        "gpt-image-2", size="1536x1024", quality="high", n=2, partial_images=1
    ) == pytest.approx(2 * (0.165 + 100 * 30 / 1e6))
    assert pytest.approx(4 * 0.211 + 2 * 100 * 30 / 1e6) == ESTIMATE
    assert (
        estimated_cost_usd("not-a-model", size="1024x1024", quality="low", n=1, partial_images=0)
        is None
    )


def test_usage_wins_whenever_it_arrived():
    priced = cost(failure(FailureKind.STORAGE_FAILED), {"output_tokens": 1000})
    assert (priced.usd, priced.estimated) == (0.03, False)


RUN_ON = [
    FailureKind.GATEWAY_TIMEOUT,
    FailureKind.LOCAL_TIMEOUT,
    FailureKind.CONNECTION_LOST,
    FailureKind.CANCELLED,
    FailureKind.INTERNAL_ERROR,
    FailureKind.STREAM_INCOMPLETE,
    FailureKind.PROTOCOL_ERROR,
    FailureKind.IMAGE_INVALID,
    FailureKind.STORAGE_FAILED,
]
ANSWERED_INSTEAD = [
    FailureKind.RATE_LIMITED,
    FailureKind.QUOTA_EXHAUSTED,
    FailureKind.REJECTED,
    FailureKind.AUTH_FAILED,
    FailureKind.PERMISSION_DENIED,
    FailureKind.NOT_FOUND,
    FailureKind.SERVER_ERROR,
    # Never sent at all: the worker came too late for its admission, or its slot was taken.
    FailureKind.ADMISSION_EXPIRED,
    FailureKind.SLOT_TAKEN,
]


def test_every_failure_kind_is_decided_one_way_or_the_other():
    assert set(RUN_ON) | set(ANSWERED_INSTEAD) == set(FailureKind)


@pytest.mark.parametrize("kind", RUN_ON)
def test_a_sent_attempt_that_may_have_run_on_is_estimated(kind):
    priced = cost(failure(kind))
    assert (priced.usd, priced.estimated) == (ESTIMATE, True)
    assert cost(failure(kind, sent=False)).usd is None  # never sent: never billed


@pytest.mark.parametrize("kind", ANSWERED_INSTEAD)
def test_errors_answered_instead_of_a_generation_cost_nothing(kind):
    assert cost(failure(kind)).usd is None


def test_a_success_without_usage_is_estimated():
    priced = cost(None)
    assert (priced.usd, priced.estimated) == (ESTIMATE, True)
