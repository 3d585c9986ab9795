"""The simulator's own failures end every request: an answer for the client, an outcome recorded.

A bug in rendering (or anywhere in a generation) must not leave a client waiting until its read
timeout and a ledger entry forever ``in_progress``; a body over the size limit gets the JSON error
envelope, not aiohttp's plain text.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from loopserver.testing import wait_until
from simulator.faults import FaultQueue, FaultStage, RequestContext
from simulator.images import ImageRenderer
from simulator.server import Simulator
from simulator.validation import ImageRequest
from simulator_tests.conftest import MakeSim, drain
from simulator_tests.openapi_schema import violations

SMALL: dict[str, Any] = {
    "model": "gpt-image-2",
    "prompt": "a red apple",
    "size": "1024x1024",
    "quality": "low",
    "output_format": "jpeg",
}


class BrokenRenderer(ImageRenderer):
    """Draws partial images but fails on every final one, as a rendering bug would."""

    def final(self, request: ImageRequest, image_index: int) -> bytes:
        raise RuntimeError("the renderer is broken")


def broken(sim: Simulator) -> Simulator:
    sim.state.renderer = BrokenRenderer()
    return sim


def client(sim: Simulator) -> OpenAI:
    # A short read timeout: before the fix the request hung until it, now it must not.
    return OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0, timeout=20)


def settled(sim: Simulator) -> None:
    wait_until(
        lambda: sim.ledger() and all(e.upstream_done_at for e in sim.ledger()),
        what="the generations to end upstream",
    )


def test_a_failure_in_a_generation_answers_500_server_error(make_sim: MakeSim):
    sim = broken(make_sim())

    with pytest.raises(openai.InternalServerError) as caught:
        client(sim).images.generate(**SMALL)

    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"
    settled(sim)
    (entry,) = sim.ledger()
    assert (entry.status, entry.outcome, entry.billable) == (500, "simulator_error", False)


def test_a_failure_after_the_stream_started_is_an_error_event(make_sim: MakeSim):
    sim = broken(make_sim())
    seen: list[str] = []

    with pytest.raises(openai.APIError) as caught:
        drain(client(sim).images.generate(**SMALL, stream=True, partial_images=1), seen)

    assert seen == ["image_generation.partial_image"]
    assert caught.value.type == "server_error"
    settled(sim)
    (entry,) = sim.ledger()
    assert (entry.status, entry.outcome, entry.partials_sent) == (200, "simulator_error", 1)


def test_a_failure_before_the_first_event_of_a_stream_is_a_500(make_sim: MakeSim):
    sim = broken(make_sim())

    with pytest.raises(openai.InternalServerError):
        list(client(sim).images.generate(**SMALL, stream=True, partial_images=0))

    settled(sim)
    assert [(e.status, e.outcome) for e in sim.ledger()] == [(500, "simulator_error")]


class BrokenFaultQueue(FaultQueue):
    """Fails when a request looks for its fault, as a bug before any generation would."""

    def take(self, ctx: RequestContext, *, stages: Collection[FaultStage] = ()) -> None:
        raise RuntimeError("the fault queue is broken")


def test_a_failure_before_the_generation_answers_500_and_closes_the_entry(make_sim: MakeSim):
    sim = make_sim()
    sim.state.faults = BrokenFaultQueue()

    with pytest.raises(openai.InternalServerError) as caught:
        client(sim).images.generate(**SMALL)

    assert caught.value.type == "server_error"
    assert [(e.status, e.outcome) for e in sim.ledger()] == [(500, "simulator_error")]


def test_a_body_over_the_size_limit_is_a_413_in_the_openai_envelope(sim: Simulator):
    response = httpx.post(
        f"{sim.url}/v1/images/generations",
        json={**SMALL, "prompt": "x" * (9 * 2**20)},
        headers={"Authorization": "Bearer sk-test"},
        timeout=30,
    )

    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    assert violations(body, "ErrorResponse") == []
    (entry,) = sim.ledger()
    assert (entry.status, entry.outcome) == (413, "rejected")
