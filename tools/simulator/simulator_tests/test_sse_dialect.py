"""The ``sse_dialect`` route setting: streams as OpenAI and Azure write them (``event:`` and
``data:`` lines) or as some compatible gateways do (``data:`` lines alone, the JSON ``type``
naming each event, ``data: [DONE]`` at the end); the official SDK reads both the same."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import OpenAI

from simulator.faults import parse_fault
from simulator_tests.conftest import MakeSim

BODY = {"model": "gpt-image-2", "prompt": "a red apple", "size": "1024x1024", "quality": "low"}


def raw_stream(sim, **extra: object) -> str:
    response = httpx.post(
        f"{sim.openai_base_url}/images/generations",
        headers={"authorization": "Bearer sk-test"},
        json={**BODY, "stream": True, **extra},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return response.text


def client(sim) -> OpenAI:
    return OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)


def test_data_only_streams_have_no_event_lines_and_end_with_done(make_sim: MakeSim):
    sim = make_sim({"openai": {"sse_dialect": "data_only"}})
    text = raw_stream(sim, partial_images=2)
    assert "event:" not in text
    events = [block for block in text.split("\n\n") if block]
    assert all(block.startswith("data: ") for block in events)
    assert events[-1] == "data: [DONE]"
    types = [json.loads(block.removeprefix("data: "))["type"] for block in events[:-1]]
    assert types == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]


def test_event_lines_stay_the_default_and_azure_is_untouched(make_sim: MakeSim):
    sim = make_sim({"openai": {"sse_dialect": "data_only"}})
    azure = httpx.post(
        f"{sim.url}/openai/deployments/gpt-image-2/images/generations",
        params={"api-version": "2025-04-01-preview"},
        headers={"api-key": "k"},
        json={**BODY, "stream": True, "partial_images": 1},
        timeout=30,
    )
    assert "event: image_generation.completed" in azure.text
    assert "[DONE]" not in azure.text
    default = make_sim()
    text = raw_stream(default, partial_images=1)
    assert "event: image_generation.partial_image" in text
    assert "[DONE]" not in text


@pytest.mark.parametrize("dialect", ["event_lines", "data_only"])
def test_the_official_sdk_reads_both_dialects_alike(make_sim: MakeSim, dialect: str):
    sim = make_sim({"openai": {"sse_dialect": dialect}})
    stream = client(sim).images.generate(
        model="gpt-image-2", prompt="a red apple", quality="low", stream=True, partial_images=2
    )
    events = list(stream)
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]


def test_a_mid_stream_error_in_the_data_only_dialect(make_sim: MakeSim):
    sim = make_sim({"openai": {"sse_dialect": "data_only"}})
    sim.faults.add(
        parse_fault(
            {
                "kind": "mid_stream_error",
                "style": "openai",
                "error_type": "image_generation_user_error",
                "message": "Your request was rejected by the safety system.",
                "param": "prompt",
            }
        )
    )
    text = raw_stream(sim, partial_images=1)
    assert "event:" not in text
    error_block, done = [block for block in text.split("\n\n") if block]
    error = json.loads(error_block.removeprefix("data: "))
    assert error["type"] == "error"
    assert error["error"]["type"] == "image_generation_user_error"
    assert error["error"]["param"] == "prompt"
    assert done == "data: [DONE]"
    sim.faults.add(parse_fault({"kind": "mid_stream_error", "style": "openai"}))
    with pytest.raises(openai.APIError):
        list(
            client(sim).images.generate(
                model="gpt-image-2", prompt="a red apple", stream=True, partial_images=1
            )
        )


def test_an_http_error_fault_names_its_param(make_sim: MakeSim):
    sim = make_sim()
    fault = {"kind": "http_error", "status": 400, "code": "invalid_value", "param": "size"}
    sim.faults.add(parse_fault({**fault, "type": "invalid_request_error", "message": "no"}))
    with pytest.raises(openai.BadRequestError) as caught:
        client(sim).images.generate(model="gpt-image-2", prompt="a red apple")
    assert caught.value.param == "size"
    assert caught.value.code == "invalid_value"
