"""The Batch API's pure parts: reading an input file, output lines, settings, batch faults."""

from __future__ import annotations

import json
from typing import Any

import pytest

from simulator.batches import (
    Batch,
    BatchSettings,
    http_error_line,
    non_http_error_line,
    read_input,
    success_line,
)
from simulator.config import ConfigError, config_from_dict
from simulator.errors import invalid_value
from simulator.faults import FaultQueue, RequestContext, parse_fault

ENDPOINT = "/v1/images/generations"


def line(custom_id: str = "a", **overrides: Any) -> bytes:
    obj: dict[str, Any] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": ENDPOINT,
        "body": {"model": "gpt-image-2", "prompt": "x"},
    }
    obj.update(overrides)
    return json.dumps(obj).encode()


def read(data: bytes, *, azure: bool = False, max_requests: int = 50_000):
    return read_input(data, endpoint=ENDPOINT, azure=azure, max_requests=max_requests)


def codes(problems) -> list[tuple[str, int | None, str | None]]:
    return [(p.code, p.line, p.param) for p in problems]


def test_good_lines_with_crlf_and_a_final_newline():
    lines, problems = read(line("a") + b"\r\n" + line("b") + b"\n")
    assert problems == []
    assert [(item.line, item.custom_id) for item in lines] == [(1, "a"), (2, "b")]
    assert lines[0].body == {"model": "gpt-image-2", "prompt": "x"}


def test_each_broken_line_is_reported_with_its_number():
    data = b"\n".join(
        [
            line("a"),
            b"{not json",
            line("a"),  # duplicate
            line("c", url="/v1/chat/completions"),
            line("d", method="GET"),
            json.dumps({"custom_id": "e", "method": "POST", "url": ENDPOINT}).encode(),
            b"",  # a blank line in the middle is not JSON
            line("f", body={"model": "other-model", "prompt": "x"}),
            line("g", body=[1]),
            b"[1, 2]",
            line("h").replace(b'"h"', b"7"),
        ]
    )
    lines, problems = read(data)
    assert [item.custom_id for item in lines] == ["a"]
    assert codes(problems) == [
        ("invalid_json_line", 2, None),
        ("duplicate_custom_id", 3, "custom_id"),
        ("url_mismatch", 4, "url"),
        ("invalid_value", 5, "method"),
        ("missing_required_parameter", 6, "body"),
        ("invalid_json_line", 7, None),
        ("model_mismatch", 8, "body.model"),
        ("invalid_value", 9, "body"),
        ("invalid_json_line", 10, None),
        ("invalid_value", 11, "custom_id"),
    ]
    assert problems[0].message == "This line is not parseable as valid JSON."


def test_an_empty_file_and_too_many_requests():
    assert codes(read(b"")[1]) == [("empty_file", None, None)]
    assert codes(read(b"\n")[1]) == [("empty_file", None, None)]
    assert codes(read(line("a") + b"\n" + line("b"), max_requests=1)[1]) == [
        ("too_many_tasks", None, None)
    ]


def test_azure_lines_may_leave_out_v1():
    data = line("a", url="/images/generations") + b"\n" + line("b")
    assert read(data, azure=True)[1] == []
    assert codes(read(data)[1]) == [("url_mismatch", 1, "url")]


def test_output_lines_are_json_in_the_documented_shape():
    ok = json.loads(success_line("a", "req_1", [b'{"created":1,', b'"data":[]}']))
    failed = json.loads(http_error_line("b", "req_2", 400, invalid_value("size", "bad").envelope()))
    expired = json.loads(non_http_error_line("c", "batch_expired", "late"))

    assert ok["id"].startswith("batch_req_")
    assert ok["response"] == {
        "status_code": 200,
        "request_id": "req_1",
        "body": {"created": 1, "data": []},
    }
    assert ok["error"] is None
    assert list(ok) == ["id", "custom_id", "response", "error"]
    assert failed["response"]["status_code"] == 400
    assert failed["response"]["body"]["error"]["param"] == "size"
    assert failed["error"] is None
    assert expired["response"] is None
    assert expired["error"] == {"code": "batch_expired", "message": "late"}


def test_a_new_batch_carries_every_documented_key():
    batch = Batch(
        id="batch_1",
        route="openai",
        endpoint=ENDPOINT,
        input_file_id="file-1",
        completion_window="24h",
        created_at=10,
        expires_at=20,
    )
    body = batch.to_json()
    assert body["status"] == "validating"
    assert body["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    for name in ("in_progress_at", "finalizing_at", "completed_at", "output_file_id", "errors"):
        assert body[name] is None


def test_batch_settings_load_from_the_config_and_refuse_bad_values():
    config = config_from_dict({"batch": {"item_s": 1, "concurrency": 2, "price_factor": 0.5}})
    assert config.batch == BatchSettings(item_s=1.0, concurrency=2)
    with pytest.raises(ConfigError, match="concurrency"):
        config_from_dict({"batch": {"concurrency": 0}})
    with pytest.raises(ConfigError, match="price_factor"):
        config_from_dict({"batch": {"price_factor": 2}})
    with pytest.raises(ConfigError, match=r"unknown key batch\.items"):
        config_from_dict({"batch": {"items": 2}})


def test_batch_faults_parse_and_stay_apart_from_request_faults():
    queue = FaultQueue()
    queue.add(parse_fault({"kind": "batch_item_error", "count": 2}))
    queue.add(parse_fault({"kind": "batch_expire", "after_items": 3}))
    queue.add(parse_fault({"kind": "http_error", "status": 503}))
    ctx = RequestContext("openai", None, "generations", False, "1024x1024")

    request_fault = queue.take(ctx)
    item_fault = queue.take(ctx, stages={"batch_item"})
    batch_fault = queue.take(ctx, stages={"batch"})

    assert request_fault is not None
    assert request_fault.kind == "http_error"
    assert item_fault is not None
    assert (item_fault.kind, item_fault.status) == (
        "batch_item_error",
        500,
    )
    assert batch_fault is not None
    assert batch_fault.after_items == 3
    assert queue.pending() == [{"kind": "batch_item_error", "count": 1, "status": 500}]
    with pytest.raises(ValueError, match="after_items"):
        parse_fault({"kind": "batch_expire", "after_items": -1})
