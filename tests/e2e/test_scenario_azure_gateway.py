"""`make run SCENARIO=azure-gateway` end to end: field report B's Azure deployment in the
simulator (seed-004-azure.json: deployment gpt-image-2-1, key local-azure-key, APIM's 60 s
limit, 10 requests a minute) and the settings the stack gives the app for it. A job on the Azure
route is saved on that deployment, with that key: no 401, no 404."""

from __future__ import annotations

import pytest

from .conftest import PROMPT, Api

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

STACK = {"scenario": "azure-gateway"}


def test_a_job_on_the_azure_route_is_saved_on_the_scenarios_deployment(api: Api):
    mark = api.ledger_mark()
    response = api.start(prompt=PROMPT, size="1024x1024", quality="low", route="azure")
    assert response.status_code == 202, response.text
    final = api.poll(response.json()["id"])[-1]
    assert final["state"] == "saved", final
    entries = api.ledger(mark)
    assert [(e["route"], e["deployment"], e["outcome"]) for e in entries] == [
        ("azure", "gpt-image-2-1", "completed")
    ]


def test_the_openai_route_works_in_the_scenario_too(api: Api):
    response = api.start(prompt=PROMPT, size="1024x1024", quality="low", route="openai")
    assert response.status_code == 202, response.text
    assert api.poll(response.json()["id"])[-1]["state"] == "saved"
