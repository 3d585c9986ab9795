"""The typed job contract: each record round-trips through JSON, an older (unversioned) layout
is still read, and a newer or broken one is refused, never guessed."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from rules.inputs import InputRef
from rules.job_records import (
    JOB_INPUT_DECIDED_VERSION,
    JOB_INPUT_SCHEMA_VERSION,
    REQUEST_SCHEMA_VERSION,
    AttemptInput,
    AttemptRecord,
    CancelMarker,
    CustomStatus,
    FailoverDecided,
    FinishInput,
    JobDecided,
    JobInput,
    JobState,
    Outcome,
    Phase,
    ProgressRecord,
    RouteDecided,
)
from rules.outcome import (
    AttemptResult,
    Failure,
    FailureKind,
    KeptImage,
    Layer,
    Preview,
    SentAs,
    StoredImage,
    Timings,
    status_error,
)
from rules.records import RecordUnreadable
from rules.request import ImageJobRequest
from rules.retry import Decision, RetryPolicy
from rules.send_plan import PlanBasis, SendPlan
from rules.webhooks import WebhookTarget

REQUEST = ImageJobRequest(
    prompt="a red apple",
    size="1024x1024",
    quality="low",
    output_format="png",
    background="auto",
    moderation="auto",
    n=1,
    partial_images=1,
    route="azure",
)
EDIT = ImageJobRequest(
    prompt="a red apple in a basket",
    size="1024x1024",
    quality="low",
    output_format="png",
    background="auto",
    moderation="auto",
    n=1,
    partial_images=1,
    route="azure",
    images=(
        InputRef("ab" * 32, "png", 2048, 1024, 1024),
        InputRef("cd" * 32, "jpeg", 1024, 512, 768),
    ),
    mask=InputRef("ef" * 32, "png", 512, 1024, 1024),
)
SEND = SendPlan(stream=True, partial_images=1, notes=("sent with partial_images 1",))
CREATED = "2026-05-07T13:46:12.000Z"
FAILURE = Failure(
    kind=FailureKind.RATE_LIMITED,
    layer=Layer.ROUTE,
    message="slow down",
    sent=True,
    http_status=429,
    retry_after_s=12.0,
    retry_after_source="retry-after",
)
REJECTED = Failure(
    kind=FailureKind.REJECTED,
    layer=Layer.ROUTE,
    message="Invalid value: '1000x1000'.",
    sent=True,
    http_status=400,
    error_type="invalid_request_error",
    code="invalid_value",
    param="size",
)
IMAGE = StoredImage("img/image.png", "image/png", 3, 1024, 1024)
PREVIEW = Preview(index=0, partial_image_index=0, blob="img/preview-1-0.png", bytes=2, stored=True)
RESULT = AttemptResult(
    attempt=2,
    ok=True,
    timings=Timings(request_started_at=CREATED, first_byte_ms=5, partial_images_ms=[7]),
    images=(IMAGE,),
    previews=(PREVIEW,),
    usage={"output_tokens": 272},
    cost_usd=0.008,
    request_sent_as=SentAs(stream=True, partial_images=1, notes=("n",)),
    kept_images=(KeptImage("img/attempt-1-image-0.png", "image/png", 3, stored=True),),
)
FAILED = AttemptResult(attempt=1, ok=False, failure=FAILURE)
DECISION = Decision(retry=True, wait_s=12.346, reason="rate limited")
OUTCOME = Outcome(
    state=JobState.SAVED,
    attempt=2,
    retry_count=1,
    retry_reason="rate limited",
    images=(IMAGE,),
    previews=(PREVIEW,),
    timings=RESULT.timings,
    cost_usd=0.008,
    metadata_blob="img/metadata.json",
)

RECORDS: list[Any] = [
    JobInput(REQUEST, SEND, RetryPolicy(max_attempts=3), "digest", "fingerprint", CREATED),
    AttemptInput("img-1", 2, REQUEST, SEND, CREATED),
    CustomStatus(Phase.GENERATING, 1),
    CustomStatus(Phase.WAITING_TO_RETRY, 1, retry_at=CREATED, reason="rate limited"),
    CustomStatus(Phase.FINISHING, 2, ending=JobState.FAILED, failure="returned_error"),
    AttemptRecord(RESULT),
    AttemptRecord(FAILED, Decision(retry=True, wait_s=12.3456, reason="rate limited")),
    OUTCOME,
    Outcome(state=JobState.FAILED, attempt=1, failure="returned_error", error=FAILURE),
    Outcome(state=JobState.FAILED, attempt=1, failure="returned_error", error=REJECTED),
    FinishInput(
        "img-1", REQUEST, OUTCOME, (AttemptRecord(FAILED, DECISION), AttemptRecord(RESULT))
    ),
    ProgressRecord(CREATED, 1, CREATED, previews=[PREVIEW], sent=True, sent_at=CREATED),
    ProgressRecord(CREATED, 2, CREATED, done=True, images=(IMAGE,), result=RESULT),
    CancelMarker(requested_at=CREATED, job_created_at=CREATED),
    JobInput(EDIT, SEND, RetryPolicy(max_attempts=3), "digest", "fingerprint", CREATED),
    AttemptInput("img-2", 1, EDIT, SEND, CREATED),
    FinishInput("img-2", EDIT, OUTCOME, (AttemptRecord(RESULT),)),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_each_record_round_trips_through_json_text(record):
    text = json.dumps(record.to_json())
    again = type(record).from_json(json.loads(text))
    if isinstance(record, AttemptRecord) and record.decision:
        # Waits are kept to the millisecond.
        assert again.decision.wait_s == round(record.decision.wait_s, 3)
        again = AttemptRecord(again.result, record.decision)
    assert again == record
    assert again.to_json() == record.to_json()


STORED = [JobInput, AttemptInput, Outcome, FinishInput, ProgressRecord, CancelMarker]


@pytest.mark.parametrize("kind", STORED, ids=lambda k: k.__name__)
def test_every_stored_record_carries_its_schema_version(kind):
    record = next(r for r in RECORDS if type(r) is kind)
    assert record.to_json()["v"] == 1  # a generation's records: what the last deployment reads


@pytest.mark.parametrize("kind", STORED, ids=lambda k: k.__name__)
def test_a_newer_version_is_refused_not_guessed(kind):
    record = next(r for r in RECORDS if type(r) is kind)
    with pytest.raises(RecordUnreadable, match="newer"):
        kind.from_json({**record.to_json(), "v": JOB_INPUT_DECIDED_VERSION + 1})


@pytest.mark.parametrize("kind", [JobInput, AttemptInput, FinishInput], ids=lambda k: k.__name__)
def test_an_edit_is_version_2_which_the_previous_deployment_refuses(kind):
    """An older worker refuses the record (its newest is 1) instead of dropping the inputs."""
    record = next(r for r in RECORDS if type(r) is kind and r.request.is_edit)
    data = record.to_json()
    assert data["v"] == 2
    assert kind.from_json(data) == record
    from rules import records

    with pytest.raises(RecordUnreadable, match="newer"):
        records.checked_version(data, kind.__name__, 1)


def test_a_job_with_a_webhook_is_version_3_which_the_previous_deployment_refuses():
    """An older worker refuses the job (its newest is 2) instead of running it without telling
    the receiver; a job without a webhook is written exactly as before."""
    plain = JobInput(REQUEST, SEND, RetryPolicy(max_attempts=3), "digest", "fingerprint", CREATED)
    assert "webhook" not in plain.to_json()
    assert plain.to_json()["v"] == 1
    target = WebhookTarget(
        "https://hooks.example.com/in?token=t", "https://svc.example.com/api/images"
    )
    hooked = JobInput(
        EDIT, SEND, RetryPolicy(max_attempts=3), "digest", "fingerprint", CREATED, webhook=target
    )
    data = hooked.to_json()
    assert data["v"] == JOB_INPUT_SCHEMA_VERSION == 3
    assert JobInput.from_json(json.loads(json.dumps(data))) == hooked
    assert "token=t" not in repr(hooked)  # the URL may carry a token: never in a repr
    from rules import records

    with pytest.raises(RecordUnreadable, match="newer"):
        records.checked_version(data, "job input", REQUEST_SCHEMA_VERSION)


def test_an_edit_request_keeps_hashes_and_a_generation_keeps_its_old_layout():
    assert "images" not in REQUEST.to_json()
    assert "mask" not in REQUEST.to_json()
    assert ImageJobRequest.from_json(REQUEST.to_json()) == REQUEST
    data = EDIT.to_json()
    assert data["images"][0] == {
        "sha256": "ab" * 32,
        "format": "png",
        "bytes": 2048,
        "width": 1024,
        "height": 1024,
    }
    assert data["mask"]["sha256"] == "ef" * 32
    assert ImageJobRequest.from_json(data) == EDIT


def test_an_edit_shape_describes_inputs_without_hashes():
    shape = EDIT.shape()
    assert shape["images"] == [
        {"format": "png", "bytes": 2048, "width": 1024, "height": 1024},
        {"format": "jpeg", "bytes": 1024, "width": 512, "height": 768},
    ]
    assert shape["mask"] == {"format": "png", "bytes": 512, "width": 1024, "height": 1024}
    text = json.dumps(shape)
    assert "ab" * 32 not in text
    assert "sha256" not in text
    assert "apple" not in text
    assert "images" not in REQUEST.shape()


@pytest.mark.parametrize("kind", [*STORED, CustomStatus], ids=lambda k: k.__name__)
@pytest.mark.parametrize("value", ["not json", b"[1]", 7, {"v": "one"}, {"v": True}])
def test_what_is_not_a_record_is_refused(kind, value):
    with pytest.raises(RecordUnreadable):
        kind.from_json(value)


def test_a_missing_field_is_named():
    data = RECORDS[0].to_json()
    del data["caller"]
    with pytest.raises(RecordUnreadable, match="'caller'"):
        JobInput.from_json(data)


def test_an_unknown_phase_is_refused():
    with pytest.raises(RecordUnreadable, match="phase"):
        CustomStatus.from_json({"phase": "finalizing", "attempt": 1})


def test_no_custom_status_yet_is_none():
    assert CustomStatus.from_json(None) is None
    assert CustomStatus.from_json("") is None


# Version 0: what was written before records carried ``v``.


def test_version_0_job_input_has_the_same_fields():
    v0 = {k: v for k, v in RECORDS[0].to_json().items() if k != "v"}
    assert JobInput.from_json(json.dumps(v0)) == RECORDS[0]


def test_version_0_attempt_input_had_the_send_plan_flat():
    v0 = {
        "job_id": "img-1",
        "attempt": 2,
        "request": REQUEST.to_json(),
        "job_created_at": CREATED,
        "stream": True,
        "partial_images": 1,
        "send_notes": ["sent with partial_images 1"],
    }
    assert AttemptInput.from_json(v0) == AttemptInput("img-1", 2, REQUEST, SEND, CREATED)


def test_version_0_outcome_kept_the_error_as_the_status_answer_shows_it():
    v0 = {
        "state": "failed",
        "failure": "returned_error",
        "attempt": 1,
        "error": {
            "layer": "route",
            "kind": "rate_limited",
            "httpStatus": 429,
            "type": None,
            "code": "rate_limit_exceeded",
            "message": "slow down",
            "requestId": "req-1",
            "timeout": None,
        },
        "retry_count": 0,
        "images": [],
        "previews": [{"index": 0, "blob": "img/preview-1-0.png"}],
        "timings": {"first_byte_ms": 4},
        "metadata_blob": "img/metadata.json",
    }
    outcome = Outcome.from_json(v0)
    assert outcome.error is not None
    assert outcome.error.kind is FailureKind.RATE_LIMITED
    assert outcome.error.request_id == "req-1"
    assert outcome.error.sent is True  # not recorded then: the cautious reading
    assert outcome.previews[0].stored is True  # version 0 listed a preview once stored
    assert outcome.timings.first_byte_ms == 4


def test_a_failure_recorded_before_param_existed_reads_without_it():
    """Records written before ``param`` was kept (any version) still read: param is None."""
    old = {k: v for k, v in REJECTED.to_json().items() if k != "param"}
    assert Failure.from_json(old) == Failure(**{**vars(REJECTED), "param": None})
    outcome = Outcome(state=JobState.FAILED, attempt=1, failure="returned_error", error=REJECTED)
    data = outcome.to_json()
    del data["error"]["param"]
    again = Outcome.from_json(data)
    assert again.error is not None
    assert again.error.param is None
    assert again.error.code == "invalid_value"


def test_the_status_error_carries_the_routes_type_code_and_param():
    error = status_error(REJECTED)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_value"
    assert error["param"] == "size"
    # Named as the service's own 400 answers name the field at fault.
    assert error["field"] == "size"
    assert error["httpStatus"] == 400
    assert error["kind"] == "rejected"


def test_version_0_progress_without_sent_reads_as_sent():
    progress = ProgressRecord.from_json({"attempt": 1, "job_created_at": CREATED})
    assert progress.sent is True
    assert progress.images is None
    assert progress.result is None


def test_records_carry_no_prompt_outside_the_request():
    for record in RECORDS:
        data = record.to_json()
        data.pop("request", None)
        assert "a red apple" not in json.dumps(data), type(record).__name__


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (Outcome, {"v": 1, "state": "exploded", "attempt": 1}),
        (
            Outcome,
            {"v": 1, "state": "failed", "attempt": 1, "error": {"kind": "??", "layer": "route"}},
        ),
        (Outcome, {"state": "failed", "attempt": 1, "error": {"message": "v0 without kind"}}),
        (ProgressRecord, {"v": 1, "attempt": 1, "previews": [{"index": 0}]}),
        (CustomStatus, {"phase": "generating"}),
        (JobInput, {**RECORDS[0].to_json(), "request": "not an object"}),
    ],
)
def test_a_record_that_breaks_its_own_shape_is_unreadable_not_a_crash(kind, value):
    with pytest.raises(RecordUnreadable):
        kind.from_json(value)


def test_a_job_that_carries_what_it_decides_by_is_version_4_and_older_inputs_read_without_it():
    """What the orchestration decides by is frozen into the input at the start (version 4); an
    input of version 3 or older has none, and is read as before (the settings decide)."""
    route = RouteDecided("azure", "gpt-image-2", 6.0, 1.0)
    partner = FailoverDecided(
        RouteDecided("openai", "gpt-image-2", 1.0, 1.0),
        SendPlan(stream=False, partial_images=0),
        None,
        SendPlan(stream=True, partial_images=2),
    )
    decided = JobDecided(route, partner)
    plain = JobInput(REQUEST, SEND, RetryPolicy(max_attempts=3), "digest", "fingerprint", CREATED)
    frozen = JobInput(
        REQUEST, SEND, RetryPolicy(max_attempts=3), "digest", "fingerprint", CREATED,
        decided=decided,
    )  # fmt: skip
    data = frozen.to_json()
    assert data["v"] == JOB_INPUT_DECIDED_VERSION == 4
    assert JobInput.from_json(json.loads(json.dumps(data))) == frozen
    assert "decided" not in plain.to_json()
    for older in (plain.to_json(), {k: v for k, v in plain.to_json().items() if k != "v"}):
        assert JobInput.from_json(older).decided is None
    alone = JobInput.from_json({**data, "decided": {**decided.to_json(), "failover": None}})
    assert alone.decided == JobDecided(route, None)
    # A job with a webhook and its decisions is version 4 too (4 carries 3's webhook).
    hooked = replace(frozen, webhook=WebhookTarget("https://example.com/hook"))
    assert hooked.to_json()["v"] == JOB_INPUT_DECIDED_VERSION
    assert JobInput.from_json(json.loads(json.dumps(hooked.to_json()))) == hooked
    # What this code refuses: an input newer than it knows, and a decided route without what
    # its send plan is made from (never planned on guessed limits).
    with pytest.raises(RecordUnreadable, match="newer"):
        JobInput.from_json({**data, "v": JOB_INPUT_DECIDED_VERSION + 1})
    planless = {k: v for k, v in route.to_json().items() if k != "read_idle_s"}
    with pytest.raises(RecordUnreadable):
        JobInput.from_json({**data, "decided": {"route": planless, "failover": None}})


def test_a_decided_route_carries_what_its_send_plan_is_made_from():
    """The basis of the send plan (rules.send_plan.PlanBasis) is frozen with the route, and
    read back as it was written: a job plans again on measured clocks from it alone."""
    route = RouteDecided(
        "azure",
        "gpt-image-2",
        6.0,
        10.0,
        gateway_idle_timeout_s=6.0,
        gateway_idle_non_streamed=True,
        read_idle_s=36.0,
        request_s=90.0,
        silent_stream_fix="non_streaming",
    )
    back = RouteDecided.from_json(json.loads(json.dumps(route.to_json())))
    assert back == route
    assert back.plan_basis == PlanBasis(
        model="gpt-image-2",
        gateway_idle_timeout_s=6.0,
        gateway_idle_non_streamed=True,
        read_idle_s=36.0,
        request_s=90.0,
        silent_stream_fix="non_streaming",
        time_scale=10.0,
    )
