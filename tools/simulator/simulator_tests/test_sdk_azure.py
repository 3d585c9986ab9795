"""The official SDK's Azure clients, unchanged, against the deployment path and the v1 path."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from openai import AzureOpenAI, OpenAI
from PIL import Image

from simulator_tests.conftest import MakeSim, png_bytes

API_VERSION = "2025-04-01-preview"


def azure(sim, **kwargs) -> AzureOpenAI:
    kwargs.setdefault("max_retries", 0)
    if "azure_ad_token_provider" not in kwargs:
        kwargs.setdefault("api_key", "azure-key")
    return AzureOpenAI(azure_endpoint=sim.azure_endpoint, api_version=API_VERSION, **kwargs)


def test_api_key_on_the_deployment_path(sim):
    raw = azure(sim).images.with_raw_response.generate(
        model="gpt-image-2", prompt="a red apple", size="1024x1024", output_format="jpeg"
    )
    result = raw.parse()

    assert result.data
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or "")))
    assert (image.format, image.size) == ("JPEG", (1024, 1024))
    assert result.quality == "high"  # Azure resolves quality "auto" to high
    assert raw.headers["apim-request-id"]
    assert raw.headers["x-ms-region"] == "Sweden Central"
    (entry,) = sim.ledger()
    assert (entry.route, entry.deployment, entry.apim_request_id) == (
        "azure",
        "gpt-image-2",
        raw.headers["apim-request-id"],
    )


def test_entra_token_provider(make_sim: MakeSim):
    sim = make_sim({"azure": {"keys": ["only-key"], "entra_tokens": ["token-1"]}})
    tokens = iter(["token-1", "token-1"])

    result = azure(sim, azure_ad_token_provider=lambda: next(tokens)).images.generate(
        model="gpt-image-2", prompt="x", quality="low", output_format="jpeg"
    )

    assert result.data
    with pytest.raises(openai.AuthenticationError):
        azure(sim, azure_ad_token_provider=lambda: "expired").images.generate(
            model="gpt-image-2", prompt="x"
        )


def test_azure_stream_with_partials(sim):
    events = list(
        azure(sim).images.generate(
            model="gpt-image-2",
            prompt="x",
            quality="low",
            output_format="jpeg",
            stream=True,
            partial_images=2,
        )
    )
    assert [e.type for e in events][-1] == "image_generation.completed"
    assert len(events) == 3


def test_azure_edit_with_images_and_mask(sim):
    result = azure(sim).images.edit(
        model="gpt-image-2",
        image=[("a.png", png_bytes(), "image/png")] * 3,
        mask=("m.png", png_bytes(), "image/png"),
        prompt="x",
        quality="low",
    )
    assert result.data
    shape = sim.ledger()[0].shape
    assert shape is not None
    assert shape["input_images"] == 3


def test_v1_path_with_the_plain_client_and_model_as_deployment(make_sim: MakeSim):
    sim = make_sim({"deployments": {"images-prod": "gpt-image-2"}})
    v1 = OpenAI(base_url=sim.azure_v1_base_url, api_key="azure-key", max_retries=0)

    result = v1.images.generate(model="images-prod", prompt="x", quality="low")

    assert result.data
    (entry,) = sim.ledger()
    assert (entry.route, entry.deployment) == ("azure_v1", "images-prod")
    with pytest.raises(openai.NotFoundError) as caught:
        v1.images.generate(model="no-such-deployment", prompt="x")
    assert caught.value.code == "DeploymentNotFound"


def test_unknown_deployment_is_not_found(sim):
    client = AzureOpenAI(
        azure_endpoint=sim.azure_endpoint,
        azure_deployment="missing",
        api_version=API_VERSION,
        api_key="k",
        max_retries=0,
    )
    with pytest.raises(openai.NotFoundError) as caught:
        client.images.generate(model="gpt-image-2", prompt="x")
    assert caught.value.body == {
        "code": "DeploymentNotFound",
        "message": caught.value.body["message"],  # type: ignore[index]
    }


def test_wrong_key_is_401_in_the_azure_envelope(make_sim: MakeSim):
    sim = make_sim({"azure": {"keys": ["right"]}})
    with pytest.raises(openai.AuthenticationError) as caught:
        azure(sim, api_key="wrong").images.generate(model="gpt-image-2", prompt="x")
    assert caught.value.code == "401"
    assert isinstance(caught.value.body, dict)
    assert set(caught.value.body) == {"code", "message"}


def test_missing_api_version_is_azures_404(sim):
    response = httpx.post(
        f"{sim.url}/openai/deployments/gpt-image-2/images/generations",
        headers={"api-key": "k"},
        json={"prompt": "x"},
    )
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "404", "message": "Resource not found"}}


def test_unsupported_api_version_when_versions_are_listed(make_sim: MakeSim):
    sim = make_sim({"api_versions": [API_VERSION]})
    response = httpx.post(
        f"{sim.url}/openai/deployments/gpt-image-2/images/generations?api-version=1999-01-01",
        headers={"api-key": "k"},
        json={"prompt": "x"},
    )
    assert response.status_code == 400
    assert azure(sim).images.generate(model="gpt-image-2", prompt="x", quality="low").data


def test_webp_is_refused_on_azure(sim):
    with pytest.raises(openai.BadRequestError) as caught:
        azure(sim).images.generate(model="gpt-image-2", prompt="x", output_format="webp")
    assert caught.value.param == "output_format"


def test_v1_path_edits(sim):
    v1 = OpenAI(base_url=sim.azure_v1_base_url, api_key="azure-key", max_retries=0)
    result = v1.images.edit(
        model="gpt-image-2",
        image=[("a.png", png_bytes(), "image/png")] * 2,
        prompt="x",
        quality="low",
    )
    assert result.data
    assert (sim.ledger()[0].route, sim.ledger()[0].endpoint) == ("azure_v1", "edits")
