"""The escalation packet (rules.evidence): built from the records a job really writes
(activities.finish.build_metadata), every part of field report A's packet there, and nothing
of its never-list: no key, prompt, address, signed link or caller, however the route echoed them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from activities.finish import build_metadata
from rules.evidence import (
    SERVICE_VERSION,
    JobFacts,
    JobMetadata,
    build_evidence,
    infrastructure,
    is_loopback,
    sanitize,
    timeout_layer,
)
from rules.inputs import InputRef
from rules.job_records import AttemptRecord, FinishInput, JobState, Outcome
from rules.outcome import AttemptResult, Failure, FailureKind, Layer, SentAs, Timings
from rules.records import RecordUnreadable
from rules.redaction import Secrets
from rules.request import parse_job_request
from rules.retry import Decision
from rules.settings import AppSettings

from .conftest import ENV

ROOT = Path(__file__).resolve().parents[2]
KEY = "azkey-5f1c0e2d9b8a7766aa"
PROMPT = "Zebrafinch quartzviolin on a white background"
CALLER = "caller-digest-0123"
JOB = "img-0123456789abcdef01234567-1"
ECHO = (
    f"prompt '{PROMPT}' refused for key {KEY}; log at "
    "https://x.example/l?sig=SIGMARK&code=CODEMARK from 192.0.2.9 and 2001:db8::7"
)
NOW = datetime(2026, 5, 7, 13, 46, 12, tzinfo=UTC)


def settings(**env: str) -> AppSettings:
    return AppSettings.from_env({**ENV, **env})


def timings(start: str, **clocks: Any) -> Timings:
    return Timings(request_started_at=start, connect_ms=3, first_byte_ms=400, **clocks)


def failed_job(**body: Any) -> FinishInput:
    """A job that failed on its second attempt after a retry; the route echoed everything."""
    request = parse_job_request({"prompt": PROMPT, "quality": "low", **body}, settings())
    first = Failure(
        kind=FailureKind.SERVER_ERROR,
        layer=Layer.ROUTE,
        message="The engine is overloaded.",
        sent=True,
        http_status=503,
        error_type="server_error",
        request_id="req_1",
    )
    second = Failure(
        kind=FailureKind.REJECTED,
        layer=Layer.ROUTE,
        message=ECHO,
        sent=True,
        http_status=400,
        error_type="invalid_request_error",
        code="moderation_blocked",
        param="prompt",
        request_id="req_2",
    )
    sent_as = SentAs(stream=True, partial_images=1)
    attempts = (
        AttemptRecord(
            AttemptResult(
                attempt=1,
                ok=False,
                timings=timings("2026-05-07T13:46:00.000Z", http_status=503, request_id="req_1"),
                failure=first,
                request_sent_as=sent_as,
            ),
            Decision(retry=True, wait_s=5.0, reason="server_error: bounded retry 1 after 5s"),
        ),
        AttemptRecord(
            AttemptResult(
                attempt=2,
                ok=False,
                timings=timings(
                    "2026-05-07T13:46:06.000Z",
                    http_status=400,
                    request_id="req_2",
                    rate_limit={"x-ratelimit-remaining-requests": "9"},
                ),
                failure=second,
                request_sent_as=sent_as,
            ),
            Decision(retry=False, wait_s=0.0, reason="rejected is never retried"),
        ),
    )
    outcome = Outcome(
        state=JobState.FAILED,
        attempt=2,
        failure="returned_error",
        error=second,
        retry_count=1,
        retry_reason="server_error: bounded retry 1 after 5s",
        timings=attempts[-1].result.timings,
        metadata_blob=f"{JOB}/metadata.json",
    )
    return FinishInput(
        job_id=JOB, request=request, outcome=outcome, attempts=attempts, caller=CALLER
    )


def facts_of(finish: FinishInput, state: JobState = JobState.FAILED) -> JobFacts:
    return JobFacts(
        job_id=finish.job_id,
        state=state,
        failure=finish.outcome.failure,
        created_at="2026-05-07T13:45:59.000Z",
        updated_at="2026-05-07T13:46:07.000Z",
        request=finish.request.shape(),
        route=finish.request.route,
        endpoint="edits" if finish.request.is_edit else "generations",
        sent_as=SentAs(stream=True, partial_images=1),
        priority="interactive",
        outcome=finish.outcome,
    )


def packet(
    finish: FinishInput, *, with_metadata: bool = True, app: AppSettings | None = None, **env: str
) -> dict[str, Any]:
    app = app or settings()
    metadata = None
    if with_metadata:
        metadata = JobMetadata.from_json(json.dumps(build_metadata(finish, app, NOW)))
    route = app.routes.get(finish.request.route)
    evidence = build_evidence(
        facts_of(finish),
        metadata,
        route=route,
        infrastructure=infrastructure(app, route, env=env, devhost=False, python="3.11.9"),
        secrets=Secrets.of(("api-key", KEY), PROMPT),
        generated_at="2026-05-07T13:50:00.000Z",
    )
    result: dict[str, Any] = evidence.to_json()
    return result


def never_in(text: str) -> None:
    lowered = text.lower()
    for piece in (
        KEY,
        KEY[6:16],
        PROMPT,
        "zebrafinch",
        "quartzviolin",
        CALLER,
        "SIGMARK",
        "CODEMARK",
    ):
        assert piece.lower() not in lowered, piece
    assert "192.0.2.9" not in text
    assert "2001:db8::7" not in text
    assert "127.0.0.1" not in text


def test_every_part_of_the_escalation_packet_is_there():
    answer = packet(failed_job())
    assert answer["v"] == 1
    assert answer["complete"] is True
    assert answer["state"] == "failed"
    assert answer["failure"] == "returned_error"
    moment = answer["moment"]
    assert moment["timezone"] == "UTC"
    assert moment["firstSendAt"] == "2026-05-07T13:46:00.000Z"
    assert moment["lastSendAt"] == "2026-05-07T13:46:06.000Z"
    assert moment["finishedAt"] == "2026-05-07T13:46:12.000Z"
    assert "2 attempts" in moment["occurrence"]
    route = answer["route"]
    assert route["name"] == route["owner"] == "azure"
    assert route["model"] == "gpt-image-2"
    assert route["endpoint"] == "generations"
    assert route["path"] == "/openai/deployments/gpt-image-2/images/generations"
    assert route["apiVersion"] == "2025-04-01-preview"
    assert route["stream"] is True
    assert answer["request"]["quality"] == "low"
    assert answer["request"]["promptChars"] == len(PROMPT)
    assert "prompt" not in answer["request"]
    assert answer["timings"]["firstByteMs"] == 400
    assert answer["retries"]["count"] == 1
    assert answer["retries"]["reasons"] == ["server_error: bounded retry 1 after 5s"]
    returned = answer["returned"]
    assert returned["httpStatus"] == 400
    assert returned["error"]["code"] == "moderation_blocked"
    assert returned["error"]["param"] == "prompt"
    assert returned["requestIds"] == ["req_1", "req_2"]
    assert returned["rateLimit"] == {"x-ratelimit-remaining-requests": "9"}
    assert [a["outcome"] for a in answer["attempts"]] == ["server_error", "rejected"]
    assert answer["attempts"][0]["decision"]["waitS"] == 5.0
    assert answer["service"]["version"] == SERVICE_VERSION
    infra = answer["infrastructure"]
    assert infra["storage"] == "Azurite (local stand-in)"
    assert infra["gateway"]["idleTimeoutS"] == 60
    assert infra["timeoutsS"]["readIdle"] == 360
    assert answer["reproduction"]["curl"].startswith("curl ")
    assert answer["withheld"]


def test_the_route_echoing_key_prompt_address_and_signed_link_leaves_no_trace():
    answer = packet(failed_job())
    text = json.dumps(answer)
    never_in(text)
    message = answer["returned"]["error"]["message"]
    assert "[redacted prompt]" in message
    assert "[redacted key]" in message
    assert "https://x.example/l " in message
    assert message.count("[ip]") == 2


def test_the_route_host_that_is_an_address_is_never_shown():
    answer = packet(failed_job())
    assert answer["route"]["host"] == "[ip]:8089"
    assert "ROUTE_HOST:8089" in answer["reproduction"]["curl"]
    assert any("ROUTE_HOST" in note for note in answer["reproduction"]["notes"])
    named = settings(IMAGE_ROUTE_AZURE_BASE_URL="https://my-resource.openai.azure.com")
    answer = packet(failed_job(), app=named)
    assert answer["route"]["host"] == "my-resource.openai.azure.com"
    assert (
        "https://my-resource.openai.azure.com/openai/deployments/"
        in (answer["reproduction"]["curl"])
    )


def test_the_reproduction_has_placeholders_for_the_prompt_and_the_key():
    answer = packet(failed_job())
    curl = answer["reproduction"]["curl"]
    assert '"api-key: $IMAGE_ROUTE_KEY"' in curl
    assert "--url-query api-version=2025-04-01-preview" in curl
    body = json.loads(re.search(r"-d '(.*)'$", curl).group(1))  # type: ignore[union-attr]
    assert body["prompt"] == "PROMPT"
    assert body["quality"] == "low"
    assert body["stream"] is True
    assert body["partial_images"] == 1
    python = answer["reproduction"]["python"]
    assert "AzureOpenAI(" in python
    assert "os.environ['IMAGE_ROUTE_KEY']" in python
    assert "prompt='PROMPT'" in python
    compile(python, "reproduction", "exec")  # it is Python


def test_an_openai_route_is_reproduced_with_a_bearer_key_and_the_model():
    answer = packet(failed_job(route="openai"))
    curl = answer["reproduction"]["curl"]
    assert "http://ROUTE_HOST:8089/v1/images/generations" in curl
    assert '"Authorization: Bearer $IMAGE_ROUTE_KEY"' in curl
    assert '"model": "gpt-image-2"' in curl
    assert "OpenAI(base_url='http://ROUTE_HOST:8089/v1'" in answer["reproduction"]["python"]
    assert answer["route"]["path"] == "/v1/images/generations"


def test_an_edit_is_reproduced_with_input_placeholders_never_hashes():
    finish = failed_job()
    image = InputRef(sha256="ab" * 32, format="png", bytes=1000, width=1024, height=1024)
    mask = dataclasses.replace(image, sha256="cd" * 32)
    edit = dataclasses.replace(finish.request, images=(image,), mask=mask, moderation="auto")
    finish = dataclasses.replace(finish, request=edit)
    answer = packet(finish)
    assert answer["route"]["endpoint"] == "edits"
    curl = answer["reproduction"]["curl"]
    assert "image[]=@INPUT-0.png" in curl
    assert "mask=@MASK.png" in curl
    assert "moderation" not in curl
    assert "ab" * 32 not in json.dumps(answer)
    assert "image=[open('INPUT-0.png', 'rb')]" in answer["reproduction"]["python"]


def test_a_running_job_gives_a_partial_packet():
    finish = failed_job()
    facts = dataclasses.replace(facts_of(finish, JobState.GENERATING), outcome=None, failure=None)
    app = settings()
    route = app.route("azure")
    evidence = build_evidence(
        facts,
        None,
        route=route,
        infrastructure=infrastructure(app, route, env={}, devhost=True, python="3.11.9"),
        secrets=Secrets(),
        generated_at="2026-05-07T13:50:00.000Z",
    ).to_json()
    assert evidence["complete"] is False
    assert evidence["state"] == "generating"
    assert evidence["attempts"] == []
    assert evidence["moment"]["occurrence"] == "no attempt recorded yet"
    assert (
        "devhost (the Functions host and Durable Task)"
        in (evidence["infrastructure"]["localStandIns"])
    )


def test_without_metadata_the_outcome_stands_in_and_is_still_redacted():
    answer = packet(failed_job(), with_metadata=False)
    assert answer["complete"] is False
    assert answer["returned"]["error"]["code"] == "moderation_blocked"
    assert answer["retries"]["count"] == 1
    never_in(json.dumps(answer))


def test_a_purged_job_is_told_from_its_metadata_alone():
    finish = failed_job()
    metadata = JobMetadata.from_json(json.dumps(build_metadata(finish, settings(), NOW)))
    facts = JobFacts.from_metadata(metadata)
    assert facts.state is JobState.FAILED
    assert facts.route == "azure"
    assert facts.sent_as.stream is True
    assert metadata.caller == CALLER  # kept to check who asks; never put in the packet


@pytest.mark.parametrize(
    ("env", "host"),
    [
        ({"WEBSITE_INSTANCE_ID": "abc", "REGION_NAME": "Sweden Central"}, "Azure Functions"),
        ({}, "a local Azure Functions host (Core Tools)"),
    ],
)
def test_the_infrastructure_says_what_hosts_the_app(env, host):
    app = settings(IMAGES_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=https;AccountName=a")
    found = infrastructure(app, app.route("azure"), env=env, devhost=False, python="3.11.9")
    assert found.host == host
    assert found.storage == "Azure Blob Storage"
    assert found.stand_ins == (
        "the route's service is on this machine (the gpt-image-2 simulator)",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("at http://u:p@192.0.2.7:80/x?sig=S#f.", "at http://[ip]:80/x."),
        ("from 2001:db8::1, ::1 and [fe80::1]:443", "from [ip], [ip] and [ip]:443"),
        ("https://[2001:db8::2]:8443/p?q=1", "https://[ip]:8443/p"),
        (
            "https://acct.blob.core.windows.net/c/b.png?sv=1&sig=abc%3D",
            "https://acct.blob.core.windows.net/c/b.png",
        ),
        ("at 13:46:12, version 3.11.7, 10.0.0.256", "at 13:46:12, version 3.11.7, 10.0.0.256"),
        ("host ROUTE_HOST:5 keeps its case", "host ROUTE_HOST:5 keeps its case"),
    ],
)
def test_sanitize_takes_out_addresses_and_what_links_carry(text, expected):
    assert sanitize(text) == expected
    assert sanitize(expected) == expected


@pytest.mark.parametrize(
    ("kind", "layer", "timeout", "expected"),
    [
        ("gateway_timeout", "gateway", None, "gateway"),
        ("local_timeout", "http_client", "read_idle", "http_client (read_idle)"),
        ("server_error", "route", None, None),
    ],
)
def test_the_timeout_layer_names_the_limit_that_fired(kind, layer, timeout, expected):
    assert timeout_layer(kind, layer, timeout) == expected


def test_loopback_hosts_are_local_stand_ins():
    assert is_loopback("127.0.0.1")
    assert is_loopback("localhost")
    assert is_loopback("::1")
    assert not is_loopback("my-resource.openai.azure.com")
    assert not is_loopback(None)


def test_a_metadata_record_of_a_newer_version_is_unreadable_not_guessed():
    record = build_metadata(failed_job(), settings(), NOW)
    with pytest.raises(RecordUnreadable):
        JobMetadata.from_json(json.dumps({**record, "v": 99}))
    with pytest.raises(RecordUnreadable):
        JobMetadata.from_json(json.dumps({k: v for k, v in record.items() if k != "attempts"}))


def test_the_service_version_is_the_projects():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["version"] == SERVICE_VERSION
