"""A 429 storm through the whole app: every wait the server asked for is honoured, and the job
is saved after it with one billable generation.

The stack is test_faults.py's (time scale 25: the server's 30 s are 1.2 s here), but on the wall
clock. Under devhost's virtual time a durable timer fires at once, while the route's entity keeps
the wall clock (in Azure it is the right one: an orchestration's time can lag behind it): a job
whose route cools down after a 429 would then re-ask the entity in a tight loop until the
cool-down had passed on the wall clock, its history growing with each ask (these cases took
26-45 s each that way). On the wall clock the job's timers and the entity's cool-down run on
one clock, and the waits are the few seconds the server asked for.
"""

from __future__ import annotations

import pytest

from .conftest import Api
from .faults import check_case, run_case
from .test_faults import SMALL
from .test_faults import STACK as FAULT_STACK

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

STACK = {**FAULT_STACK, "virtual_time": False}


@pytest.mark.parametrize("style", ["openai", "retry_after_only", "message_only"])
def test_a_429_storm_waits_what_the_server_asked_each_time(api: Api, style: str):
    fault = {"kind": "rate_limited", "retry_after_s": 30, "header_style": style, "count": 3}
    final, metadata, ledger = run_case(api, [fault], **SMALL)
    check_case(api, final, metadata, ledger, state="saved", attempts=4, billable=1)
    for attempt in metadata["attempts"][:3]:
        assert attempt["outcome"] == "rate_limited"
        assert attempt["http_status"] == 429
        # The server said 30 service seconds, reported as 1.2 s at time scale 25.
        assert attempt["decision"]["wait_s"] >= 1.2
        assert "the server asked" in attempt["decision"]["reason"]


def test_an_azure_429_with_minus_one_headers_and_no_retry_after(api: Api):
    """No usable header: the wait the message names is the one honoured (backoff else)."""
    fault = {
        "kind": "rate_limited",
        "header_style": "azure_minus_one",
        "retry_after_s": 50,
        "count": 2,
    }
    final, metadata, ledger = run_case(api, [fault], **SMALL)
    check_case(api, final, metadata, ledger, state="saved", attempts=3, billable=1)
    for attempt in metadata["attempts"][:2]:
        assert attempt["decision"]["wait_s"] >= 2.0  # 50 service seconds at time scale 25
        assert "(message)" in attempt["decision"]["reason"]
