"""Outages: storage down during the upload, devhost killed in the middle of a job.

Both end with the image saved once, the attempts recorded, and every billable generation either
stored or chosen and recorded by the policy, never a silent second generation.
"""

from __future__ import annotations

import os
import signal
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


def test_blob_that_does_not_answer_is_named_as_blob_not_the_job_store(api: Api):
    """Azurite paused (SIGSTOP): the durable job store (devhost's SQLite) answers, Blob does
    not. The 503 and devhost's log name Blob, not the job store."""
    job = api.start(**{**SLOW, "size": "1024x1024"}).json()["id"]
    azurite = api.stack.azurite
    assert azurite is not None
    assert azurite.process is not None
    pid = azurite.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        listed = api.http.get("/api/images", timeout=30)
        status = api.status(job)
    finally:
        os.kill(pid, signal.SIGCONT)
    for answer in (listed, status):
        if answer.status_code == 503:
            error = answer.json()["error"]
            assert error["code"] == "blob_timeout", error
            assert "Blob storage" in error["message"]
    assert listed.status_code == 503  # the list reads Blob first
    log = (api.stack.log_dir / "devhost.log").read_text()
    assert "Blob storage did not answer in time" in log
    assert "the durable job store did not answer in time" not in log
    api.poll(job, timeout_s=120)
