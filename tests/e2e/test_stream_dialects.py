"""A route that streams in a compatible gateway's dialect, through the whole app.

The simulator's OpenAI route writes ``data:`` lines alone (no ``event:`` line; the JSON ``type``
names each event) and ends with ``data: [DONE]`` (``sse_dialect: data_only``,
tests/e2e/data/sse-data-only.json). The service reads each event by its JSON type, as the
official SDK does: images are saved after one request, and error events are classified by
family as in the official dialect. The rest of the stack is test_faults.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import PROMPT, Api
from .faults import check_case, run_case
from .test_faults import STACK as FAULT_STACK

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

STACK = {**FAULT_STACK, "simulator_config": Path(__file__).parent / "data" / "sse-data-only.json"}
JOB: dict[str, Any] = {"prompt": PROMPT, "size": "1024x1024", "quality": "low", "route": "openai"}


def test_a_data_only_stream_is_saved_after_one_request(api: Api):
    final, metadata, ledger = run_case(api, [], **JOB, partial_images=2)
    check_case(api, final, metadata, ledger, state="saved", attempts=1, billable=1)
    assert len(ledger) == 1
    assert len(metadata["attempts"][0]["previews"]) == 2
    assert len(final["previews"]) == 2


def test_a_server_error_event_without_an_event_line_is_retried(api: Api):
    fault = {"kind": "mid_stream_error", "after_partials": 1, "style": "openai"}
    final, metadata, ledger = run_case(api, [fault], **JOB, partial_images=2)
    check_case(api, final, metadata, ledger, state="saved", attempts=2, billable=1)
    first = metadata["attempts"][0]
    assert first["outcome"] == "server_error"
    assert first["error_type"] == "server_error"
    assert len(first["previews"]) == 1


def test_a_user_error_event_without_an_event_line_fails_after_one_request(api: Api):
    fault = {
        "kind": "mid_stream_error",
        "style": "openai",
        "error_type": "image_generation_user_error",
        "message": "Your request was rejected by the safety system.",
    }
    final, metadata, ledger = run_case(api, [fault], **JOB, partial_images=1)
    check_case(
        api,
        final,
        metadata,
        ledger,
        state="failed",
        failure="returned_error",
        attempts=1,
        billable=0,
    )
    assert final["error"]["kind"] == "rejected"
    assert final["error"]["type"] == "image_generation_user_error"
