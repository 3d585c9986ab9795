"""Many streams at once in one simulator, and the largest payload the service sends."""

from __future__ import annotations

import asyncio
import base64
import io

from openai import AsyncOpenAI, OpenAI
from openai.types import ImageGenCompletedEvent
from PIL import Image

from simulator.ledger import billable_count
from simulator_tests.conftest import MakeSim

STREAMS = 50


async def one_stream(client: AsyncOpenAI, index: int) -> list[str]:
    stream = await client.images.generate(
        model="gpt-image-2",
        prompt=f"picture number {index}",
        size="1024x1024",
        quality="low",
        output_format="jpeg",
        stream=True,
        partial_images=2,
    )
    return [event.type async for event in stream]


async def many_streams(base_url: str) -> list[list[str]]:
    async with AsyncOpenAI(base_url=base_url, api_key="sk-test", max_retries=0) as client:
        return await asyncio.gather(*(one_stream(client, i) for i in range(STREAMS)))


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant (an end before a start at a tie)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_most_at_once_counts_overlaps():
    assert most_at_once([(0, 1), (1, 2), (2, 3)]) == 1
    assert most_at_once([(0, 3), (1, 4), (2, 5), (6, 7)]) == 3


def test_fifty_streams_run_side_by_side(make_sim: MakeSim):
    # Time scale 10: each generation lasts about 2.2 s. The property is read from the recorded
    # intervals (arrival to the end upstream), not from arrival order: a simulator serving the
    # streams one after another would never have two open at once, however the client's
    # requests were spread over time on a busy machine.
    sim = make_sim(time_scale=10)

    results = asyncio.run(many_streams(sim.openai_base_url))

    assert all(types[-1] == "image_generation.completed" for types in results)
    assert all(len(types) == 3 for types in results)
    entries = sim.ledger()
    assert billable_count(entries) == STREAMS
    intervals = [(e.received_at, e.upstream_done_at or 0.0) for e in entries]
    assert most_at_once(intervals) >= STREAMS // 5, "the generations did not overlap"


def test_a_4k_png_travels_whole_in_one_sse_line(make_sim: MakeSim):
    sim = make_sim(time_scale=1000)
    client = OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)

    events = list(
        client.images.generate(
            model="gpt-image-2",
            prompt="x",
            size="3840x2160",
            quality="low",
            stream=True,
            partial_images=1,
        )
    )

    final = events[-1]
    assert isinstance(final, ImageGenCompletedEvent)
    assert len(final.b64_json) > 15_000_000
    image = Image.open(io.BytesIO(base64.b64decode(final.b64_json)))
    assert (image.format, image.size) == ("PNG", (3840, 2160))
