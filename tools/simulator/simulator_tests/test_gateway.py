"""Azure's gateway idle kill (field report B), keep-alives, a generic proxy's 504, in scaled time.

At time scale 100 the 60 s gateway limit is 0.6 s and a 2048x2048 high generation (~225 s) is
~2.25 s; ``azure.speed`` 2 halves that to keep the suite quick and still leaves ~45 s of service
time (0.45 s real, jitter included) between the gate and the generation's end, for a noisy CI
machine. The generation behind a killed request runs on upstream and is billed: the ledger says
so once it finishes.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai import AzureOpenAI, OpenAI

from loopserver.testing import wait_until
from simulator.ledger import billable_count, count
from simulator.server import Simulator
from simulator_tests.conftest import MakeSim, drain

SCALE = 100.0
BIG: dict[str, Any] = {
    "model": "gpt-image-2",
    "prompt": "a red apple on a white background",
    "size": "2048x2048",
    "quality": "high",
    "output_format": "jpeg",
}
# First partial at 5 % of the generation: well inside the gateway's first minute.
EARLY_PARTIALS = {"first_partial_fraction": 0.05, "last_partial_fraction": 0.5}


def azure_client(sim: Simulator, **kwargs: Any) -> AzureOpenAI:
    kwargs.setdefault("max_retries", 0)
    return AzureOpenAI(
        azure_endpoint=sim.azure_endpoint,
        api_version="2025-04-01-preview",
        api_key="k",
        **kwargs,
    )


def all_billed(sim: Simulator, expected: int) -> None:
    wait_until(
        lambda: billable_count(sim.ledger()) == expected,
        timeout=20,
        what=f"{expected} billable generations",
    )


def test_silent_stream_gets_apims_408_while_the_generation_runs_on(make_sim: MakeSim):
    sim = make_sim({"azure": {"speed": 2.0}}, time_scale=SCALE)

    with pytest.raises(openai.APIStatusError) as caught:
        list(azure_client(sim).images.generate(**BIG, stream=True, partial_images=0))

    assert caught.value.status_code == 408
    assert caught.value.body == {"code": "Timeout", "message": "The operation was timeout."}
    assert caught.value.response.headers["apim-request-id"]
    (entry,) = sim.ledger()
    assert (entry.status, entry.outcome, entry.billable) == (408, "gateway_timeout", False)
    assert entry.elapsed_s is not None
    assert entry.elapsed_s >= 0.6
    all_billed(sim, 1)
    assert sim.ledger()[0].completed_upstream


def test_sdk_default_retries_after_408_pay_three_times(make_sim: MakeSim):
    """The SDK retries 408 twice by default: three generations billed, no image received."""
    # Speed 1.5 without jitter: every attempt lasts 152 s, 92 s (0.9 s real) past the gate.
    sim = make_sim({"azure": {"speed": 1.5}, "latency": {"jitter": 0}}, time_scale=SCALE)

    with pytest.raises(openai.APIStatusError):
        list(azure_client(sim, max_retries=2).images.generate(**BIG, stream=True))

    assert count(sim.ledger(), outcome="gateway_timeout") == 3
    all_billed(sim, 3)


def test_one_early_partial_carries_a_long_stream_through(make_sim: MakeSim):
    sim = make_sim({"azure": {"speed": 2.0}, "latency": EARLY_PARTIALS}, time_scale=SCALE)

    events = list(azure_client(sim).images.generate(**BIG, stream=True, partial_images=1))

    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert billable_count(sim.ledger(), outcome="completed") == 1


def test_keep_alive_comments_keep_a_silent_stream_alive(make_sim: MakeSim):
    # A keep-alive every 2 s (20 ms real) against the 60 s gate (600 ms real): the first one is
    # out long before the gate could fire, even on a busy machine.
    sim = make_sim({"azure": {"speed": 2.0, "keep_alive_s": 2}}, time_scale=SCALE)
    url = f"{sim.url}/openai/deployments/gpt-image-2/images/generations"

    response = httpx.post(
        url,
        params={"api-version": "2025-04-01-preview"},
        headers={"api-key": "k"},
        json={**BIG, "stream": True, "partial_images": 0},
        timeout=30,
    )

    assert response.status_code == 200
    assert response.text.startswith(": keep-alive\n\n")
    assert "event: image_generation.completed" in response.text
    events = list(azure_client(sim).images.generate(**BIG, stream=True, partial_images=0))
    assert [e.type for e in events] == ["image_generation.completed"]  # the SDK ignores them


def test_non_streamed_requests_are_not_cut_by_default(make_sim: MakeSim):
    sim = make_sim({"azure": {"speed": 2.0}}, time_scale=SCALE)
    assert azure_client(sim).images.generate(**BIG).data
    assert sim.ledger()[0].outcome == "completed"


def test_non_streamed_requests_cut_when_the_setting_says_so(make_sim: MakeSim):
    sim = make_sim(
        {"azure": {"speed": 2.0, "gateway": {"idle_timeout_non_streamed": True}}},
        time_scale=SCALE,
    )
    with pytest.raises(openai.APIStatusError) as caught:
        azure_client(sim).images.generate(**BIG)
    assert caught.value.status_code == 408
    all_billed(sim, 1)


def test_idle_limit_on_every_gap_cuts_the_stream_after_headers(make_sim: MakeSim):
    sim = make_sim(
        {
            "azure": {"speed": 2.0, "gateway": {"idle_until_first_byte": False}},
            "latency": {"first_partial_fraction": 0.05, "last_partial_fraction": 0.06},
        },
        time_scale=SCALE,
    )
    stream = azure_client(sim).images.generate(**BIG, stream=True, partial_images=1)
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        drain(stream, seen)
    assert seen == ["image_generation.partial_image"]
    (entry,) = sim.ledger()
    assert (entry.status, entry.outcome) == (200, "gateway_timeout")
    all_billed(sim, 1)


def test_openai_route_has_no_gateway_by_default(make_sim: MakeSim):
    sim = make_sim({"openai": {"speed": 2.0}}, time_scale=SCALE)
    client = OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)
    events = list(client.images.generate(**BIG, stream=True, partial_images=0))
    assert [e.type for e in events] == ["image_generation.completed"]


def test_generic_proxy_idle_limit_answers_504(make_sim: MakeSim):
    sim = make_sim(
        {"openai": {"speed": 2.0, "gateway": {"proxy_idle_timeout_s": 30}}}, time_scale=SCALE
    )
    client = OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)

    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(**BIG)

    assert caught.value.status_code == 504
    assert count(sim.ledger(), outcome="proxy_timeout") == 1
    all_billed(sim, 1)


def test_client_that_hangs_up_still_pays(make_sim: MakeSim):
    sim = make_sim({"openai": {"speed": 2.0}, "latency": EARLY_PARTIALS}, time_scale=SCALE)
    client = OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)

    stream = client.images.generate(**BIG, stream=True, partial_images=2)
    first = next(iter(stream))
    stream.close()

    assert first.type == "image_generation.partial_image"
    wait_until(
        lambda: sim.ledger()[0].outcome == "client_disconnected", what="the disconnect noticed"
    )
    all_billed(sim, 1)
