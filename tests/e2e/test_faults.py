"""The fault suite: the field reports' failures injected by the simulator, through the whole app.

devhost runs with virtual time, so the policy's waits (5 s, 15 s, 120 s after a post-send failure,
a 429's retry-after) pass at once while still being chosen, recorded and checked. The simulator
and the service run at time scale 25 (IMAGE_TIME_SCALE): the Azure gateway's 60 s idle limit,
which the route declares, is 2.4 s here, and the client's read idle limit of 100 s is 4 s, short
so that a slow first byte can outlast it. Settings below are in real seconds.

A 429's cases are in test_rate_limits.py, on the wall clock: the route's entity keeps the wall
clock, so under virtual time its cool-down outlasts the job's durable timers (see there).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import PROMPT, Api
from .faults import check_case, run_case

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

# Marker keys the routes are called with: a route that echoes one must not get it shown.
OPENAI_KEY = "sk-marker-Q7vTzLmK2pX9aBcDeFgHiJkLmNoPwXyZ"
AZURE_KEY = "azmarker0f3e9d2c1b0a99887766554433"
STACK = {
    "virtual_time": True,
    "extra_env": {
        "IMAGE_ROUTE_OPENAI_KEY": OPENAI_KEY,
        "IMAGE_ROUTE_AZURE_KEY": AZURE_KEY,
        "IMAGE_ROUTE_AZURE_GATEWAY_IDLE_TIMEOUT_S": "60",
        "IMAGE_READ_IDLE_TIMEOUT_S": "100",
        "IMAGE_CONNECT_TIMEOUT_S": "2",
        "IMAGE_REQUEST_TIMEOUT_S": "1200",
        "IMAGE_UPLOAD_TIMEOUT_S": "500",
    },
}
SMALL: dict[str, Any] = {"prompt": PROMPT, "size": "1024x1024", "quality": "low"}


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ({"kind": "insufficient_quota"}, "insufficient_quota"),
        ({"kind": "moderation_blocked"}, "moderation_blocked"),
        ({"kind": "content_filter"}, "contentFilter"),
        ({"kind": "auth_error", "status": 401}, None),
    ],
)
def test_outcomes_that_are_never_retried(api: Api, fault: dict[str, Any], code: str | None):
    final, metadata, ledger = run_case(api, [fault], **SMALL)
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
    assert final["error"]["layer"] == "route"
    if code:
        assert final["error"]["code"] == code
    assert metadata["attempts"][0]["decision"]["retry"] is False


def test_5xx_before_any_byte_is_retried_with_bounded_backoff(api: Api):
    fault = {"kind": "http_error", "status": 503, "type": "server_error", "count": 2}
    final, metadata, ledger = run_case(api, [fault], **SMALL)
    check_case(api, final, metadata, ledger, state="saved", attempts=3, billable=1)
    # 5 s and 15 s (plus jitter) in real seconds; at time scale 25, a 25th of that.
    waits = [round(a["decision"]["wait_s"] * 25, 1) for a in metadata["attempts"][:2]]
    assert 5 <= waits[0] <= 6
    assert 15 <= waits[1] <= 18


@pytest.mark.parametrize("after", [1, 2])
def test_a_mid_stream_server_error_after_partials(api: Api, after: int):
    fault = {"kind": "mid_stream_error", "after_partials": after, "style": "azure"}
    final, metadata, ledger = run_case(api, [fault], **SMALL, partial_images=3)
    check_case(api, final, metadata, ledger, state="saved", attempts=2, billable=1)
    first = metadata["attempts"][0]
    assert first["outcome"] == "server_error"
    assert len(first["previews"]) == after


def test_a_stream_that_ends_without_completed(api: Api):
    fault = {"kind": "stream_without_completed", "after_partials": 1}
    final, metadata, ledger = run_case(api, [fault], **SMALL, partial_images=2)
    check_case(api, final, metadata, ledger, state="saved", attempts=2, billable=1)
    assert metadata["attempts"][0]["outcome"] == "stream_incomplete"


def test_partial_images_zero_at_2k_behind_the_gateway_is_sent_with_one(api: Api):
    """Field report B's first failure, avoided: the silent stream would be killed at 60 s."""
    # 2048x2048 low: the longest silence after the one partial stays inside this stack's read
    # idle limit, which is short so that other cases can outlast it.
    final, metadata, ledger = run_case(
        api, [], prompt=PROMPT, size="2048x2048", quality="low", partial_images=0
    )
    check_case(api, final, metadata, ledger, state="saved", attempts=1, billable=1)
    assert any("sent with partial_images 1" in note for note in metadata["send_notes"])
    assert metadata["attempts"][0]["request_sent_as"]["partial_images"] == 1
    assert final["sentAs"] == metadata["send_notes"]


def test_the_gateway_idle_kill_is_a_post_send_failure_resent_once(api: Api):
    """The gateway answers 408 while the generation behind it runs on and is billed."""
    fault = {"kind": "slow_first_byte", "delay_s": 100}
    final, metadata, ledger = run_case(api, [fault], **SMALL)
    check_case(api, final, metadata, ledger, state="saved", attempts=2, billable=2)
    first = metadata["attempts"][0]
    assert first["outcome"] == "gateway_timeout"
    assert first["layer"] == "gateway"
    assert first["http_status"] == 408
    assert first["decision"]["post_send_resend"] is True
    assert metadata["post_send_resends"] == 1
    assert ledger[0]["outcome"] == "gateway_timeout"
    # Both generations were billed: the killed one is counted too, estimated from its shape.
    billed = sum(e["cost_usd"] for e in ledger if e["billable"])
    assert first["cost_estimated"] is True
    assert final["costEstimated"] is True
    assert final["costUsd"] == pytest.approx(billed, rel=0.05)


def test_a_connection_reset_after_the_send_is_a_post_send_resend(api: Api):
    """The reset comes after the request arrived: the generation it started is billed too."""
    fault = {"kind": "connection_reset", "at": "before_headers"}
    final, metadata, ledger = run_case(api, [fault], **SMALL)
    check_case(api, final, metadata, ledger, state="saved", attempts=2, billable=2)
    first = metadata["attempts"][0]
    assert first["outcome"] == "connection_lost"
    assert first["layer"] == "network"
    assert first["sent"] is True
    assert first["decision"]["post_send_resend"] is True


def test_a_slow_first_byte_beyond_the_read_idle_limit_is_a_local_timeout(api: Api):
    fault = {"kind": "slow_first_byte", "delay_s": 150, "match": {"route": "openai"}}
    final, metadata, ledger = run_case(api, [fault], **SMALL, route="openai")
    check_case(api, final, metadata, ledger, state="saved", attempts=2, billable=2)
    first = metadata["attempts"][0]
    assert first["outcome"] == "local_timeout"
    assert first["layer"] == "http_client"
    assert first["timings"]["first_byte_ms"] is None
    assert first["decision"]["post_send_resend"] is True


def test_a_local_timeout_twice_fails_as_a_local_timeout(api: Api):
    fault = {"kind": "slow_first_byte", "delay_s": 150, "count": 2, "match": {"route": "openai"}}
    final, metadata, ledger = run_case(api, [fault], **SMALL, route="openai")
    check_case(
        api,
        final,
        metadata,
        ledger,
        state="failed",
        failure="local_timeout",
        attempts=2,
        billable=2,
    )
    assert final["error"]["timeout"] == "read_idle"
    assert "local timeout" in final["stateText"]


def test_a_safety_rejection_mid_stream_is_failed_after_one_request(api: Api):
    """OpenAI's style, before any partial image: the user's family, never retried."""
    fault = {
        "kind": "mid_stream_error",
        "after_partials": 0,
        "style": "openai",
        "error_type": "image_generation_user_error",
        "message": "Your request was rejected by the safety system. If you believe this is an "
        "error, contact us at help.openai.com.",
        "match": {"route": "openai"},
    }
    final, metadata, ledger = run_case(api, [fault], **SMALL, route="openai", partial_images=2)
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
    assert len(ledger) == 1
    assert final["error"]["kind"] == "rejected"
    assert final["error"]["type"] == "image_generation_user_error"
    assert "safety system" in final["error"]["message"]
    assert metadata["attempts"][0]["decision"]["retry"] is False


def test_a_403_on_the_openai_route_keeps_the_routes_words(api: Api):
    """Credentials accepted, access refused (the organization is not verified): said as the
    route said it, not as "the credentials were refused", and not retried."""
    fault = {"kind": "auth_error", "status": 403, "match": {"route": "openai"}}
    final, metadata, ledger = run_case(api, [fault], **SMALL, route="openai")
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
    error = final["error"]
    assert error["kind"] == "permission_denied"
    assert error["httpStatus"] == 403
    assert error["type"] == "invalid_request_error"
    assert "organization must be verified" in error["message"]
    assert metadata["attempts"][0]["outcome"] == "permission_denied"


def test_a_400_from_the_route_names_the_field(api: Api):
    fault = {
        "kind": "http_error",
        "status": 400,
        "type": "invalid_request_error",
        "code": "invalid_value",
        "param": "size",
        "message": "Invalid value for size.",
    }
    final, metadata, ledger = run_case(api, [fault], **SMALL)
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
    error = final["error"]
    assert (error["type"], error["code"], error["param"], error["field"]) == (
        "invalid_request_error",
        "invalid_value",
        "size",
        "size",
    )
    assert metadata["error"]["field"] == "size"
    assert metadata["attempts"][0]["param"] == "size"


MARKER_PROMPT = "MARKER PROMPT violet giraffe reading a newspaper on the moon, oil on canvas"


@pytest.mark.parametrize(
    ("route", "key", "fault"),
    [
        (
            "openai",
            OPENAI_KEY,
            {
                "kind": "http_error",
                "status": 400,
                "type": "image_generation_user_error",
                "code": "moderation_blocked",
                "message": f"Your prompt '{MARKER_PROMPT[:30]}...' was rejected. Key in use: "
                f"sk-marker-****{OPENAI_KEY[-4:]}; full key {OPENAI_KEY}.",
            },
        ),
        (
            "azure",
            AZURE_KEY,
            {
                "kind": "mid_stream_error",
                "after_partials": 1,
                "error_type": "image_generation_user_error",
                "message": f"rejected: {MARKER_PROMPT} (subscription key ...{AZURE_KEY[-6:]})",
            },
        ),
    ],
    ids=["openai-answer", "azure-stream"],
)
def test_a_route_echoing_the_key_and_the_prompt_leaves_no_trace(
    api: Api, route: str, key: str, fault: dict[str, Any]
):
    log = api.stack.log_dir / "devhost.log"
    log_start = log.stat().st_size if log.exists() else 0
    mark = api.ledger_mark()
    api.fault(**fault, match={"route": route})
    started = api.start(prompt=MARKER_PROMPT, size="1024x1024", quality="low", route=route)
    assert started.status_code == 202, started.text
    answers = api.poll(started.json()["id"], timeout_s=180)
    final = answers[-1]
    metadata = api.metadata(final)
    check_case(
        api,
        final,
        metadata,
        api.ledger(mark),
        state="failed",
        failure="returned_error",
        attempts=1,
        billable=0,
    )
    assert "[redacted" in final["error"]["message"]
    forbidden = [key, key[-4:], key[:14], MARKER_PROMPT[:12], MARKER_PROMPT[-12:]]
    texts = {"status answers": json.dumps(answers), "metadata.json": json.dumps(metadata)}
    for name in api.blobs(final["id"]):
        if name.endswith(".json"):
            texts[name] = api.blob_text(name)
    texts["devhost log"] = log.read_bytes()[log_start:].decode(errors="replace")
    assert "image_job_finished" in texts["devhost log"]  # the job's own log event is in it
    for where, text in texts.items():
        for piece in forbidden:
            assert piece.lower() not in text.lower(), (where, piece)
