"""Every fault kind, streamed and not, through the official SDK, with the ledger's billable count.

Billing rule under test (docs/simulator.md): a generation that ran to completion upstream is
billable even when the client never saw it; one that failed mid-way is billable only with
``bill_failed_generations``; a request answered before a generation started never is.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai import AzureOpenAI, OpenAI

from loopserver.testing import wait_until
from simulator.faults import parse_fault
from simulator.ledger import billable_count, completed_upstream_count, count
from simulator.server import Simulator
from simulator_tests.conftest import MakeSim, drain

SMALL: dict[str, Any] = {
    "model": "gpt-image-2",
    "prompt": "a red apple",
    "size": "1024x1024",
    "quality": "low",
    "output_format": "jpeg",
}


def openai_client(sim: Simulator) -> OpenAI:
    return OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)


def azure_client(sim: Simulator) -> AzureOpenAI:
    return AzureOpenAI(
        azure_endpoint=sim.azure_endpoint,
        api_version="2025-04-01-preview",
        api_key="k",
        max_retries=0,
    )


def queue(sim: Simulator, spec: dict[str, Any]) -> None:
    sim.faults.add(parse_fault(spec))


def settled(sim: Simulator) -> None:
    """Wait until no upstream generation of this simulator is still running."""
    wait_until(
        lambda: all(
            e.upstream_done_at is not None or not e.generation_started for e in sim.ledger()
        ),
        what="upstream generations to finish",
    )


# --- answered before any byte -------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_http_error_5xx(sim, stream):
    queue(sim, {"kind": "http_error", "status": 503, "code": "overloaded"})
    with pytest.raises(openai.InternalServerError) as caught:
        openai_client(sim).images.generate(**SMALL, stream=stream)
    assert caught.value.status_code == 503
    assert (caught.value.type, caught.value.code) == ("server_error", "overloaded")
    assert count(sim.ledger(), outcome="fault:http_error") == 1
    assert billable_count(sim.ledger()) == 0


@pytest.mark.parametrize("stream", [False, True])
def test_moderation_blocked(sim, stream):
    queue(sim, {"kind": "moderation_blocked"})
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(sim).images.generate(**SMALL, stream=stream)
    assert (caught.value.type, caught.value.code) == (
        "image_generation_user_error",
        "moderation_blocked",
    )
    assert billable_count(sim.ledger()) == 0


@pytest.mark.parametrize("style", ["contentFilter", "content_filter"])
@pytest.mark.parametrize("stream", [False, True])
def test_content_filter_both_azure_shapes(sim, style, stream):
    queue(sim, {"kind": "content_filter", "style": style})
    with pytest.raises(openai.BadRequestError) as caught:
        azure_client(sim).images.generate(**SMALL, stream=stream)
    assert caught.value.code == style
    if style == "content_filter":
        assert caught.value.body["innererror"]["code"] == "ResponsibleAIPolicyViolation"  # type: ignore[index]
    assert billable_count(sim.ledger()) == 0


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(401, openai.AuthenticationError), (403, openai.PermissionDeniedError)],
)
@pytest.mark.parametrize("stream", [False, True])
def test_auth_error(sim, status, error_class, stream):
    queue(sim, {"kind": "auth_error", "status": status})
    with pytest.raises(error_class):
        openai_client(sim).images.generate(**SMALL, stream=stream)
    queue(sim, {"kind": "auth_error", "status": status})
    with pytest.raises(error_class):
        azure_client(sim).images.generate(**SMALL, stream=stream)
    assert count(sim.ledger(), status=status) == 2
    assert billable_count(sim.ledger()) == 0


@pytest.mark.parametrize("stream", [False, True])
def test_insufficient_quota(sim, stream):
    queue(sim, {"kind": "insufficient_quota"})
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(sim).images.generate(**SMALL, stream=stream)
    assert caught.value.code == "insufficient_quota"
    assert billable_count(sim.ledger()) == 0


def test_rate_limited_openai_style_carries_retry_headers_scaled(make_sim: MakeSim):
    sim = make_sim(time_scale=10)
    queue(sim, {"kind": "rate_limited", "retry_after_s": 12, "header_style": "openai"})
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(sim).images.generate(**SMALL)
    headers = caught.value.response.headers
    # 12 s of service time under time scale 10: the client is told 1.2 s.
    assert headers["retry-after-ms"] == "1200"
    assert headers["retry-after"] == "2"
    assert caught.value.message.endswith("Please try again in 1.2s.")
    assert caught.value.code == "rate_limit_exceeded"
    assert billable_count(sim.ledger()) == 0


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("azure_minus_one", {"x-ratelimit-remaining-requests": "-1"}),
        ("retry_after_only", {"retry-after": "1"}),
        ("message_only", {}),
    ],
)
def test_rate_limited_other_header_styles(sim, style, expected):
    queue(sim, {"kind": "rate_limited", "retry_after_s": 1, "header_style": style, "count": 2})
    for stream in (False, True):
        with pytest.raises(openai.RateLimitError) as caught:
            azure_client(sim).images.generate(**SMALL, stream=stream)
        headers = caught.value.response.headers
        for name, value in expected.items():
            assert headers[name] == value
        if style != "retry_after_only":
            assert "retry-after" not in headers
    assert count(sim.ledger(), status=429) == 2
    assert billable_count(sim.ledger()) == 0


def test_a_429_storm_then_success_through_default_retries(sim):
    queue(sim, {"kind": "rate_limited", "retry_after_s": 50, "count": 2})
    sdk = OpenAI(base_url=sim.openai_base_url, api_key="sk-test")  # 2 retries by default
    assert sdk.images.generate(**SMALL).data
    assert [e.status for e in sim.ledger()] == [429, 429, 200]
    assert billable_count(sim.ledger()) == 1


# --- timing faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_slow_first_byte(make_sim: MakeSim, stream):
    sim = make_sim(time_scale=100)
    queue(sim, {"kind": "slow_first_byte", "delay_s": 30})
    result = openai_client(sim).images.generate(**SMALL, stream=stream)
    if stream:
        seen: list[str] = []
        drain(result, seen)
        assert seen[-1] == "image_generation.completed"
    (entry,) = sim.ledger()
    assert entry.first_byte_s is not None
    assert entry.first_byte_s >= 0.3
    assert entry.billable


def test_slow_first_byte_past_azures_gateway_is_a_408_and_still_billed(make_sim: MakeSim):
    sim = make_sim(time_scale=100)
    queue(sim, {"kind": "slow_first_byte", "delay_s": 90})
    with pytest.raises(openai.APIStatusError) as caught:
        list(azure_client(sim).images.generate(**SMALL, stream=True, partial_images=1))
    assert caught.value.status_code == 408
    settled(sim)
    assert count(sim.ledger(), outcome="gateway_timeout") == 1
    assert billable_count(sim.ledger()) == 1


# --- failures after the generation started -------------------------------------------------------


@pytest.mark.parametrize("style", ["azure", "openai"])
def test_mid_stream_error_after_one_partial(sim, style):
    queue(sim, {"kind": "mid_stream_error", "after_partials": 1, "style": style})
    stream = openai_client(sim).images.generate(**SMALL, stream=True, partial_images=2)
    seen: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        drain(stream, seen)
    assert seen == ["image_generation.partial_image"]
    assert caught.value.type == "server_error"
    settled(sim)
    (entry,) = sim.ledger()
    assert (entry.outcome, entry.partials_sent, entry.completed_upstream) == (
        "fault:mid_stream_error",
        1,
        False,
    )
    assert billable_count(sim.ledger()) == 0


def test_mid_stream_error_wire_shapes(sim):
    """The Azure shape carries sequence_number (field report B); the OpenAI shape does not."""
    url = f"{sim.url}/v1/images/generations"
    body = {**SMALL, "stream": True, "partial_images": 1}
    headers = {"Authorization": "Bearer sk-test"}
    queue(sim, {"kind": "mid_stream_error", "after_partials": 1, "style": "azure"})
    azure_text = httpx.post(url, json=body, headers=headers).text
    queue(sim, {"kind": "mid_stream_error", "after_partials": 0, "style": "openai"})
    openai_text = httpx.post(url, json=body, headers=headers).text

    assert azure_text.endswith(
        'event: error\ndata: {"type":"error","error":{"type":"server_error","code":null,'
        '"message":"An error occurred while processing the request.","param":null},'
        '"sequence_number":1}\n\n'
    )
    assert openai_text.startswith("event: error\ndata: ")
    assert "sequence_number" not in openai_text


def test_mid_stream_error_is_billed_when_the_setting_says_so(make_sim: MakeSim):
    sim = make_sim({"bill_failed_generations": True})
    queue(
        sim,
        {
            "kind": "mid_stream_error",
            "after_partials": 0,
            "error_type": "image_generation_server_error",
            "code": "image_generation_failed",
        },
    )
    with pytest.raises(openai.APIError) as caught:
        list(
            openai_client(sim).images.edit(
                model="gpt-image-2",
                image=("a.png", b"\x89PNG", "image/png"),
                prompt="x",
                quality="low",
                stream=True,
                partial_images=1,
            )
        )
    assert caught.value.code == "image_generation_failed"
    settled(sim)
    assert billable_count(sim.ledger()) == 1


def test_mid_stream_error_without_a_stream_is_a_500(sim):
    queue(sim, {"kind": "mid_stream_error"})
    with pytest.raises(openai.InternalServerError):
        openai_client(sim).images.generate(**SMALL)
    settled(sim)
    assert count(sim.ledger(), outcome="fault:mid_stream_error", status=500) == 1
    assert billable_count(sim.ledger()) == 0


def test_stream_without_completed_ends_cleanly_after_k_partials(sim):
    queue(sim, {"kind": "stream_without_completed", "after_partials": 2})
    events = list(openai_client(sim).images.generate(**SMALL, stream=True, partial_images=3))
    assert [e.type for e in events] == ["image_generation.partial_image"] * 2
    settled(sim)
    assert count(sim.ledger(), outcome="fault:stream_without_completed") == 1
    assert completed_upstream_count(sim.ledger()) == 0
    assert billable_count(sim.ledger()) == 0


def test_stream_without_completed_without_a_stream_truncates_the_body(sim):
    queue(sim, {"kind": "stream_without_completed"})
    with pytest.raises(openai.APIConnectionError):
        openai_client(sim).images.generate(**SMALL)
    settled(sim)
    assert billable_count(sim.ledger()) == 0


@pytest.mark.parametrize("stream", [False, True])
def test_connection_reset_before_headers_runs_on_and_is_billed(sim, stream):
    queue(sim, {"kind": "connection_reset", "at": "before_headers"})
    with pytest.raises(openai.APIConnectionError):
        openai_client(sim).images.generate(**SMALL, stream=stream)
    settled(sim)
    (entry,) = sim.ledger()
    assert entry.outcome == "fault:connection_reset"
    assert entry.completed_upstream
    assert entry.billable


def test_connection_reset_after_partials(sim):
    queue(sim, {"kind": "connection_reset", "at": "after_partials", "after_partials": 1})
    stream = openai_client(sim).images.generate(**SMALL, stream=True, partial_images=2)
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        drain(stream, seen)
    assert seen == ["image_generation.partial_image"]
    settled(sim)
    assert billable_count(sim.ledger(), outcome="fault:connection_reset") == 1


def test_faults_match_only_their_requests(sim):
    queue(sim, {"kind": "http_error", "status": 500, "match": {"route": "azure", "stream": True}})
    assert openai_client(sim).images.generate(**SMALL).data
    assert azure_client(sim).images.generate(**SMALL).data
    with pytest.raises(openai.InternalServerError):
        azure_client(sim).images.generate(**SMALL, stream=True)
    assert sim.faults.pending() == []


def test_faults_from_the_config_file_are_queued_at_start(make_sim: MakeSim):
    sim = make_sim({"faults": [{"kind": "http_error", "status": 502, "count": 2}]})
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            openai_client(sim).images.generate(**SMALL)
    assert openai_client(sim).images.generate(**SMALL).data
