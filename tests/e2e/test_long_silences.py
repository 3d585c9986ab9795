"""Long silences on the default local stack, in scaled time: each job is sent in a shape that
stays inside every idle limit on its path, so it is saved with exactly one billable generation.

The stack's defaults: the Azure route behind the simulator's 60 s gateway (which watches
streams), the OpenAI route without a gateway, a read-idle limit of 360 s; simulator and service
both at time scale 25. Ledger entries are read per job (the three run concurrently).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from .conftest import PROMPT, Api
from .faults import check_case

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

JOBS: dict[str, dict[str, Any]] = {
    # The first partial would come ~70 s in: past the gateway. Sent without streaming, with a
    # read limit long enough for the whole generation.
    "4k_high_azure": {"size": "3840x2160", "quality": "high", "output_format": "png"},
    # No gateway, but ~390 s of silence against a 360 s read limit: the limit is raised.
    "4k_high_silent_openai": {
        "size": "3840x2160",
        "quality": "high",
        "partial_images": 0,
        "route": "openai",
    },
    # Silent for ~230 s behind the 60 s gateway: sent with one partial image.
    "2k_high_silent_azure": {"size": "2048x2048", "quality": "high", "partial_images": 0},
}


def run(api: Api, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    started = api.start(prompt=PROMPT, **body)
    assert started.status_code == 202, started.text
    final = api.poll(started.json()["id"], timeout_s=240)[-1]
    return final, api.metadata(final)


def test_long_silences_are_planned_around_and_each_job_bills_once(api: Api):
    mark = api.ledger_mark()
    with ThreadPoolExecutor(len(JOBS)) as pool:
        results = dict(zip(JOBS, pool.map(lambda body: run(api, body), JOBS.values()), strict=True))
    ledger = api.ledger(mark)
    for name, (final, metadata) in results.items():
        ours = [e for e in ledger if e.get("request_id") in _request_ids(metadata)]
        check_case(api, final, metadata, ours, state="saved", attempts=1, billable=1)
        assert final["sentAs"], name  # the change from the request is said, and why

    azure_4k = results["4k_high_azure"][1]["attempts"][0]["request_sent_as"]
    assert azure_4k["stream"] is False
    openai_4k = results["4k_high_silent_openai"][1]
    assert openai_4k["attempts"][0]["request_sent_as"]["partial_images"] == 0
    assert any("read limit raised" in note for note in openai_4k["send_notes"])
    azure_2k = results["2k_high_silent_azure"][1]["attempts"][0]["request_sent_as"]
    assert (azure_2k["stream"], azure_2k["partial_images"]) == (True, 1)


def _request_ids(metadata: dict[str, Any]) -> set[str]:
    return {a["request_id"] for a in metadata["attempts"] if a["request_id"]}
