"""The official openai SDK, unchanged, against the simulator's OpenAI routes."""

from __future__ import annotations

import base64
import io

import openai
import pytest
from openai import OpenAI
from openai.types import ImageGenCompletedEvent, ImagesResponse
from PIL import Image

from simulator.ledger import billable_count, count, generations_started
from simulator_tests.conftest import MakeSim, png_bytes


def decode(b64: str | None) -> Image.Image:
    assert b64 is not None
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def first_image(result: ImagesResponse) -> Image.Image:
    assert result.data
    return decode(result.data[0].b64_json)


def client(sim, **kwargs) -> OpenAI:
    kwargs.setdefault("max_retries", 0)
    return OpenAI(base_url=sim.openai_base_url, api_key="sk-test", **kwargs)


def test_generate_returns_an_image_of_the_exact_size_and_format(sim):
    result = client(sim).images.generate(
        model="gpt-image-2", prompt="a red apple", size="1536x1024", quality="low"
    )

    image = first_image(result)
    assert (image.format, image.size) == ("PNG", (1536, 1024))
    assert (result.size, result.quality, result.output_format, result.background) == (
        "1536x1024",
        "low",
        "png",
        "opaque",
    )
    assert result.usage is not None
    assert result.usage.output_tokens > 0
    assert result.created > 0


def test_generate_jpeg_and_webp_and_transparent_png(sim):
    images = client(sim).images
    jpeg = images.generate(model="gpt-image-2", prompt="x", output_format="jpeg", quality="low")
    webp = images.generate(model="gpt-image-2", prompt="x", output_format="webp", quality="low")
    clear = images.generate(model="gpt-image-2", prompt="x", background="transparent")

    assert first_image(jpeg).format == "JPEG"
    assert first_image(webp).format == "WEBP"
    assert first_image(clear).mode == "RGBA"
    assert clear.background == "transparent"


def test_n_images_come_back_as_n_entries(sim):
    result = client(sim).images.generate(
        model="gpt-image-2", prompt="x", n=3, output_format="jpeg", quality="low"
    )
    assert result.data is not None
    assert len(result.data) == 3
    assert billable_count(sim.ledger()) == 1


def test_stream_sends_partials_then_completed_with_usage(sim):
    events = list(
        client(sim).images.generate(
            model="gpt-image-2",
            prompt="a red apple",
            size="1024x1024",
            quality="low",
            output_format="jpeg",
            stream=True,
            partial_images=3,
        )
    )

    assert [e.type for e in events] == ["image_generation.partial_image"] * 3 + [
        "image_generation.completed"
    ]
    assert [getattr(e, "partial_image_index", None) for e in events[:3]] == [0, 1, 2]
    final = events[-1]
    assert isinstance(final, ImageGenCompletedEvent)
    assert decode(final.b64_json).size == (1024, 1024)
    assert final.usage.total_tokens > 0
    (entry,) = sim.ledger()
    assert (entry.partials_sent, entry.outcome, entry.billable) == (3, "completed", True)


def test_stream_with_zero_partials_sends_only_the_final_event(sim):
    events = list(
        client(sim).images.generate(
            model="gpt-image-2", prompt="x", quality="low", stream=True, partial_images=0
        )
    )
    assert [e.type for e in events] == ["image_generation.completed"]


def test_edit_with_several_images_and_a_mask(sim):
    result = client(sim).images.edit(
        model="gpt-image-2",
        image=[("a.png", png_bytes(), "image/png"), ("b.png", png_bytes(), "image/png")],
        mask=("mask.png", png_bytes(), "image/png"),
        prompt="put them together",
        size="1024x1536",
        quality="low",
    )

    assert first_image(result).size == (1024, 1536)
    (entry,) = sim.ledger()
    assert entry.shape is not None
    assert (entry.endpoint, entry.shape["input_images"], entry.shape["has_mask"]) == (
        "edits",
        2,
        True,
    )


def test_edit_streams_image_edit_events(sim):
    events = list(
        client(sim).images.edit(
            model="gpt-image-2",
            image=("a.png", png_bytes(), "image/png"),
            prompt="brighter",
            quality="low",
            output_format="jpeg",
            stream=True,
            partial_images=1,
        )
    )
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]


def test_invalid_size_is_a_bad_request_naming_size(sim):
    with pytest.raises(openai.BadRequestError) as caught:
        client(sim).images.generate(model="gpt-image-2", prompt="x", size="1000x1000")

    assert caught.value.status_code == 400
    assert caught.value.param == "size"
    assert caught.value.type == "invalid_request_error"
    assert count(sim.ledger(), outcome="rejected") == 1
    assert billable_count(sim.ledger()) == 0


def test_wrong_key_is_an_authentication_error(make_sim: MakeSim):
    sim = make_sim({"openai": {"keys": ["sk-right"]}})
    wrong = OpenAI(base_url=sim.openai_base_url, api_key="sk-wrong", max_retries=0)

    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.images.generate(model="gpt-image-2", prompt="x")

    assert caught.value.code == "invalid_api_key"
    assert "sk-wrong" not in str(caught.value)
    right = OpenAI(base_url=sim.openai_base_url, api_key="sk-right", max_retries=0)
    assert right.images.generate(model="gpt-image-2", prompt="x", quality="low").data


def test_unknown_model_is_not_found(sim):
    with pytest.raises(openai.NotFoundError) as caught:
        client(sim).images.generate(model="gpt-image-9", prompt="x")
    assert caught.value.code == "model_not_found"


def test_unknown_path_answers_the_openai_404_envelope(sim):
    import httpx

    response = httpx.post(f"{sim.url}/v1/images/variations", json={})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (POST /v1/images/variations)"


def test_response_headers_are_the_real_ones(sim):
    raw = client(sim).images.with_raw_response.generate(
        model="gpt-image-2", prompt="x", quality="low"
    )
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["openai-version"] == "2020-10-01"
    assert int(raw.headers["openai-processing-ms"]) >= 1
    assert raw.headers["x-request-id"] == sim.ledger()[0].request_id


def test_default_sdk_retries_pay_twice_for_a_server_error(sim):
    # One 500, then success: the SDK's own retry sends the request again, and the ledger shows
    # both attempts (the failed one is not billable, the retry is).
    sim.faults.add(_fault({"kind": "http_error", "status": 500}))
    sdk = OpenAI(base_url=sim.openai_base_url, api_key="sk-test")  # default: 2 retries

    result = sdk.images.generate(model="gpt-image-2", prompt="x", quality="low")

    assert result.data
    entries = sim.ledger()
    assert [e.status for e in entries] == [500, 200]
    assert [e.retry_count for e in entries] == [0, 1]
    assert billable_count(entries) == 1


def test_default_sdk_retries_after_a_connection_reset_bill_twice(sim):
    # The reset cuts the client off, the generation behind it runs on and is billed; the SDK
    # retries: two billable generations for one image the caller received.
    sim.faults.add(_fault({"kind": "connection_reset", "at": "before_headers"}))
    sdk = OpenAI(base_url=sim.openai_base_url, api_key="sk-test")

    result = sdk.images.generate(model="gpt-image-2", prompt="x", quality="low")

    assert result.data
    from loopserver.testing import wait_until

    wait_until(lambda: billable_count(sim.ledger()) == 2, what="both generations billed")
    assert len(sim.ledger()) == 2


def _fault(spec: dict[str, object]):
    from simulator.faults import parse_fault

    return parse_fault(spec)


def test_more_than_sixteen_input_images_are_refused(sim):
    with pytest.raises(openai.BadRequestError) as caught:
        client(sim).images.edit(
            model="gpt-image-2",
            image=[("a.png", png_bytes(), "image/png")] * 17,
            prompt="x",
        )
    assert caught.value.param is not None
    assert caught.value.param.startswith("image")
    assert generations_started(sim.ledger()) == 0


def test_a_body_without_model_is_a_400_unless_a_default_model_is_set(make_sim: MakeSim):
    plain = make_sim()
    with pytest.raises(openai.BadRequestError) as caught:
        client(plain).images.generate(prompt="x", quality="low", output_format="jpeg")
    assert (caught.value.param, caught.value.code) == ("model", "missing_required_parameter")

    with_default = make_sim({"openai": {"default_model": "gpt-image-2"}})
    result = client(with_default).images.generate(prompt="x", quality="low", output_format="jpeg")
    assert first_image(result).format == "JPEG"
    edited = client(with_default).images.edit(
        image=("a.png", png_bytes(), "image/png"), prompt="x", quality="low"
    )
    assert edited.data
    assert [e.status for e in with_default.ledger()] == [200, 200]
