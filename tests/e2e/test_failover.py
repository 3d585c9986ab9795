"""Failover across the whole stack: a route that refuses every connection (nothing listens on
its port) moves a job to its partner, which the route's entity learns from the refusals alone
(no request of the refusing route was ever sent: rules.route_model.summary)."""

from __future__ import annotations

from loopserver import free_port

from .conftest import PROMPT, Api

# Nothing listens here: every connection to the route is refused before any request is sent.
DEAD_PORT = free_port()
STACK = {
    "extra_env": {
        "IMAGE_ROUTES": "azure,openai,dead",
        "IMAGE_ROUTE_DEAD_OWNER": "openai",
        "IMAGE_ROUTE_DEAD_BASE_URL": f"http://127.0.0.1:{DEAD_PORT}/v1",
        "IMAGE_ROUTE_DEAD_AUTH": "none",
        "IMAGE_ROUTE_DEAD_FAILOVER_TO": "openai",
    }
}


def test_a_route_that_refuses_every_connection_fails_its_job_over_to_a_partner_with_a_record(
    api: Api,
):
    # The partner has a record of sent attempts, and not a perfect one: one 503, then saved.
    api.fault(kind="http_error", status=503, count=1, match={"route": "openai"})
    warm = api.start(prompt=PROMPT, route="openai", quality="low", size="1024x1024")
    assert warm.status_code == 202, warm.text
    assert api.poll(warm.json()["id"])[-1]["state"] == "saved"
    mark = api.ledger_mark()

    started = api.start(prompt=PROMPT, route="dead", quality="low", size="1024x1024")
    assert started.status_code == 202, started.text
    final = api.poll(started.json()["id"])[-1]

    # The refusing route never had a request sent, so its sent record is empty; its refusals
    # make it the unhealthier one, and the job moved on its first retry.
    assert final["state"] == "saved", final
    assert final["retryCount"] == 1
    metadata = api.metadata(final)
    assert metadata["route"] == "openai"
    assert "failover" in metadata["retry_reason"]
    billed = [e for e in api.ledger(mark) if e.get("billable")]
    assert len(billed) == 1  # one image, on the partner
