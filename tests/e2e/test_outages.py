"""Outages: storage down during the upload, devhost killed in the middle of a job.

Both end with the image saved once, the attempts recorded, and every billable generation either
stored or chosen and recorded by the policy, never a silent second generation.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from loopserver.testing import wait_until

from .conftest import PROMPT, Api
from .faults import check_case
from .test_faults import STACK as FAULT_STACK

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

STACK = {**FAULT_STACK, "persistent_azurite": True}
SLOW: dict[str, Any] = {
    "prompt": PROMPT,
    "size": "2048x2048",
    "quality": "low",
    "partial_images": 2,
    "route": "openai",
}


def test_storage_down_during_the_upload_is_retried_without_generating_again(api: Api):
    mark = api.ledger_mark()
    job = api.start(**SLOW).json()["id"]
    # Azurite goes down once the first preview is stored, and comes back 3 s later: the final
    # image arrives while it is down, and the activity's upload retries carry it over.
    wait_until(lambda: api.status(job).json()["previews"], timeout=60, what="a first preview")
    outage = threading.Thread(target=api.stack.restart_azurite, kwargs={"down_s": 3.0})
    outage.start()
    wait_until(
        lambda: api.ledger(mark) and api.ledger(mark)[0]["outcome"] == "completed",
        timeout=60,
        what="the route to deliver the image during the outage",
    )
    outage.join()
    final = api.poll(job, timeout_s=120)[-1]
    metadata = api.metadata(final)
    check_case(api, final, metadata, api.ledger(mark), state="saved", attempts=1, billable=1)
    assert metadata["upload_ms"] >= 500  # it waited for storage to come back


def test_devhost_killed_mid_job_resumes_and_the_policy_records_the_resend(api: Api):
    mark = api.ledger_mark()
    job = api.start(**SLOW).json()["id"]
    wait_until(lambda: api.status(job).json()["previews"], timeout=60, what="a first preview")
    api.stack.crash_devhost()
    final = api.poll(job, timeout_s=120)[-1]
    metadata = api.metadata(final)
    ledger = api.ledger(mark)
    # The first generation ran on after its client died and was billed; the re-run attempt
    # knew it had been sent, so the resend was the policy's choice, recorded as such.
    check_case(api, final, metadata, ledger, state="saved", attempts=2, billable=2)
    first = metadata["attempts"][0]
    assert first["outcome"] == "connection_lost"
    assert first["layer"] == "worker"
    assert first["decision"]["post_send_resend"] is True
    assert metadata["post_send_resends"] == 1
