"""Configured rate limits and quota mode, seen through the official SDK."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai import AzureOpenAI, OpenAI

from activities.upstream_errors import retry_hint
from simulator.ledger import billable_count, count
from simulator_tests.conftest import MakeSim

# Windows of 60,000 s of service time: a minute of wall time at time scale 1000, so a window
# never rolls over during a test unless the test says so.
LONG = 60_000

SMALL: dict[str, Any] = {
    "model": "gpt-image-2",
    "prompt": "x",
    "size": "1024x1024",
    "quality": "low",
    "output_format": "jpeg",
}


def test_openai_window_sends_headers_then_a_429_with_retry_hints(make_sim: MakeSim):
    sim = make_sim(
        {
            "openai": {
                "rate_limit": {"requests_per_minute": 2, "images_per_minute": 5, "window_s": LONG}
            }
        }
    )
    client = OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)

    first = client.images.with_raw_response.generate(**SMALL)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith(("ms", "s"))
    client.images.generate(**SMALL)
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(**SMALL)

    headers = caught.value.response.headers
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert int(headers["retry-after-ms"]) > 0
    assert "Please try again in" in caught.value.message
    assert caught.value.code == "rate_limit_exceeded"
    assert count(sim.ledger(), outcome="rate_limited") == 1
    assert billable_count(sim.ledger()) == 2


def test_images_window_counts_n(make_sim: MakeSim):
    sim = make_sim(
        {
            "openai": {
                "rate_limit": {
                    "requests_per_minute": None,
                    "images_per_minute": 3,
                    "window_s": LONG,
                }
            }
        }
    )
    client = OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)
    client.images.generate(**SMALL, n=2)
    with pytest.raises(openai.RateLimitError):
        client.images.generate(**SMALL, n=2)
    assert client.images.generate(**SMALL, n=1).data
    assert [e.status for e in sim.ledger()] == [200, 429, 200]


def test_azure_minus_one_variant_per_deployment(make_sim: MakeSim):
    rule = {
        "requests_per_minute": 1,
        "images_per_minute": None,
        "header_style": "azure_minus_one",
        "window_s": LONG,
    }
    sim = make_sim({"deployments": {"a": {"model": "gpt-image-2", "rate_limit": rule}, "b": {}}})

    def client(deployment: str) -> AzureOpenAI:
        return AzureOpenAI(
            azure_endpoint=sim.azure_endpoint,
            azure_deployment=deployment,
            api_version="2025-04-01-preview",
            api_key="k",
            max_retries=0,
        )

    client("a").images.generate(**SMALL)
    with pytest.raises(openai.RateLimitError) as caught:
        client("a").images.generate(**SMALL)
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "-1"
    assert "retry-after" not in caught.value.response.headers
    assert client("b").images.generate(**SMALL).data  # another deployment, another window


def test_window_rolls_over_in_scaled_time(make_sim: MakeSim):
    # A 2,000 s window at time scale 1000 lasts 2 s: the second request comes well inside it and
    # is refused; the SDK's own retry honours retry-after-ms and lands after the roll-over.
    sim = make_sim({"openai": {"rate_limit": {"requests_per_minute": 1, "window_s": 2000}}})
    client = OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=3)
    client.images.generate(**SMALL)
    assert client.images.generate(**SMALL).data
    assert [e.status for e in sim.ledger()] == [200, 429, 200]
    assert billable_count(sim.ledger()) == 2


def test_the_429_message_names_the_window_that_denied_with_its_counts(make_sim: MakeSim):
    rule = {"requests_per_minute": 2, "images_per_minute": 50, "window_s": LONG}
    sim = make_sim({"openai": {"rate_limit": rule}})
    client = OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)
    client.images.generate(**SMALL)
    client.images.generate(**SMALL)

    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(**SMALL, n=3)

    assert "on requests per min (RPM): Limit 2, Used 2, Requested 1." in caught.value.message


def test_the_images_window_reports_images_used_and_n(make_sim: MakeSim):
    rule = {"requests_per_minute": 50, "images_per_minute": 4, "window_s": LONG}
    sim = make_sim({"openai": {"rate_limit": rule}})
    client = OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)
    client.images.generate(**SMALL, n=3)

    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(**SMALL, n=2)

    assert "on images per min (IPM): Limit 4, Used 3, Requested 2." in caught.value.message


def azure_rate_limited(make_sim: MakeSim, base: str) -> tuple[OpenAI, OpenAI]:
    """Two clients of a deployment allowing one request per 120 s, at time scale 10."""
    rule = {"requests_per_minute": 1, "header_style": "azure", "window_s": 120}
    sim = make_sim(
        {"azure": {"speed": 10.0}, "deployments": {"gpt-image-2": {"rate_limit": rule}}},
        time_scale=10,
    )
    if base == "deployment":
        return tuple(  # type: ignore[return-value]
            AzureOpenAI(
                azure_endpoint=sim.azure_endpoint,
                api_version="2025-04-01-preview",
                api_key="k",
                max_retries=0,
            )
            for _ in range(2)
        )
    return tuple(  # type: ignore[return-value]
        OpenAI(base_url=sim.azure_v1_base_url, api_key="k", max_retries=0) for _ in range(2)
    )


@pytest.mark.parametrize(("base", "version"), [("deployment", "2025-04-01-preview"), ("v1", "v1")])
def test_azure_rate_limit_is_azures_429_with_a_wait_the_product_parses(
    make_sim: MakeSim, base: str, version: str
):
    first, second = azure_rate_limited(make_sim, base)
    first.images.generate(**SMALL)

    with pytest.raises(openai.RateLimitError) as caught:
        second.images.generate(**SMALL)

    body = caught.value.body
    assert isinstance(body, dict)
    assert set(body) == {"code", "message"}
    assert body["code"] == "429"
    assert body["message"].startswith(
        f"Requests to the Images_Generations Operation under Azure OpenAI API version {version} "
        "have exceeded call rate limit of your current OpenAI S0 pricing tier. "
    )
    # The product reads the message when no header helps: it must say the scaled wait, the same
    # whole seconds as retry-after (at most 120 s / time scale 10, not unscaled service time).
    wait, source = retry_hint({}, body["message"])
    assert source == "message"
    assert wait == float(caught.value.response.headers["retry-after"])
    assert wait is not None
    assert 1 <= wait <= 12


def test_azure_route_can_answer_rate_limits_in_openais_shape(make_sim: MakeSim):
    rule = {"requests_per_minute": 1, "window_s": LONG}
    sim = make_sim(
        {
            "azure": {"rate_limit_error": "openai"},
            "deployments": {"gpt-image-2": {"rate_limit": rule}},
        }
    )
    client = OpenAI(base_url=sim.azure_v1_base_url, api_key="k", max_retries=0)
    client.images.generate(**SMALL)
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(**SMALL)
    assert caught.value.code == "rate_limit_exceeded"


def test_insufficient_quota_mode(make_sim: MakeSim):
    sim = make_sim({"openai": {"insufficient_quota": True}})
    client = OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(**SMALL)
    assert (caught.value.type, caught.value.code) == ("insufficient_quota", "insufficient_quota")
    assert billable_count(sim.ledger()) == 0


def test_reset_clears_the_windows(make_sim: MakeSim):
    # A window of a week of service time: only a reset lets the second request through.
    rule = {"requests_per_minute": 1, "images_per_minute": None, "window_s": 604800}
    sim = make_sim({"openai": {"rate_limit": rule}})
    client = OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)
    client.images.generate(**SMALL)
    with pytest.raises(openai.RateLimitError):
        client.images.generate(**SMALL)

    sim.reset()

    assert client.images.generate(**SMALL).data
    assert len(sim.ledger()) == 1
