"""The timeout budget chain, the send plan behind gateways, and deterministic job ids."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from rules.dedup import check_key, fingerprint, job_id_for
from rules.errors import RequestInvalid, SettingsInvalid
from rules.request import parse_job_request
from rules.send_plan import plans
from rules.settings import AppSettings, Timeouts

from .conftest import ENV

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"0123456789abcdef-test"


@pytest.mark.parametrize(
    ("change", "named", "outer"),
    [
        ({"IMAGE_READ_IDLE_TIMEOUT_S": "1000"}, "IMAGE_READ_IDLE_TIMEOUT_S", "IMAGE_REQUEST"),
        ({"IMAGE_CONNECT_TIMEOUT_S": "1000"}, "IMAGE_CONNECT_TIMEOUT_S", "IMAGE_REQUEST"),
        ({"IMAGE_REQUEST_TIMEOUT_S": "1750"}, "IMAGE_REQUEST_TIMEOUT_S", "IMAGE_ACTIVITY"),
        ({"IMAGE_ACTIVITY_TIMEOUT_S": "7200"}, "IMAGE_ACTIVITY_TIMEOUT_S", "IMAGE_CLIENT_POLL"),
        ({"IMAGE_HTTP_STARTER_TIMEOUT_S": "45"}, "IMAGE_HTTP_STARTER_TIMEOUT_S", "CLIENT_HTTP"),
        (
            {"IMAGE_HTTP_STARTER_TIMEOUT_S": "240", "IMAGE_CLIENT_HTTP_TIMEOUT_S": "300"},
            "IMAGE_HTTP_STARTER_TIMEOUT_S",
            "Azure front end",
        ),
        (
            {"IMAGE_ROUTE_AZURE_GATEWAY_IDLE_TIMEOUT_S": "400"},
            "IMAGE_ROUTE_AZURE_GATEWAY_IDLE_TIMEOUT_S",
            "IMAGE_READ_IDLE",
        ),
    ],
)
def test_an_inner_limit_above_its_outer_one_is_named_with_the_pair(change, named, outer):
    with pytest.raises(SettingsInvalid) as caught:
        AppSettings.from_env(dict(ENV, **change))
    assert caught.value.setting == named
    assert outer in str(caught.value)


def test_the_defaults_and_host_json_agree():
    """The activity limit in settings is host.json's functionTimeout."""
    host = json.loads((ROOT / "host.json").read_text())
    hours, minutes, seconds = (int(p) for p in host["functionTimeout"].split(":"))
    assert Timeouts().activity_s == hours * 3600 + minutes * 60 + seconds
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    AppSettings.from_env(sample)  # the sample passes its own budget check


def test_partial_images_zero_behind_a_short_gateway_is_sent_with_one(settings):
    job = parse_job_request(
        {"prompt": "p", "size": "2048x2048", "quality": "high", "partial_images": 0}, settings
    )
    plan = plans(job, settings).first
    assert plan.stream is True
    assert plan.partial_images == 1
    assert "60s gateway idle limit" in plan.notes[-1]
    assert "experimental" in plan.notes[0]  # 2048x2048 is above 2560x1440's pixel count
    plan = plans(job, replace(settings, silent_stream_fix="non_streaming")).first
    assert plan.stream is False
    assert "without streaming" in plan.notes[-1]


def test_partial_images_zero_stays_where_it_is_safe(settings):
    quick = parse_job_request(
        {"prompt": "p", "size": "1024x1024", "quality": "low", "partial_images": 0}, settings
    )
    assert plans(quick, settings).first.partial_images == 0
    slow = parse_job_request(
        {
            "prompt": "p",
            "size": "2048x2048",
            "quality": "high",
            "partial_images": 0,
            "route": "openai",
        },
        settings,
    )
    plan = plans(slow, settings).first
    assert plan.partial_images == 0  # no gateway declared on this route
    assert not any("gateway" in note for note in plan.notes)


def test_job_ids_are_deterministic_per_caller_and_key_or_body(settings):
    job = parse_job_request({"prompt": "a red apple"}, settings)
    other = parse_job_request({"prompt": "a green apple"}, settings)
    fp, fp_other = fingerprint(job), fingerprint(other)
    assert job_id_for(SECRET, "alice", None, fp, 1) == job_id_for(SECRET, "alice", None, fp, 1)
    assert job_id_for(SECRET, "alice", None, fp, 1) != job_id_for(SECRET, "bob", None, fp, 1)
    assert job_id_for(SECRET, "alice", None, fp, 1) != job_id_for(
        SECRET, "alice", None, fp_other, 1
    )
    assert job_id_for(SECRET, "alice", None, fp, 1) != job_id_for(SECRET, "alice", None, fp, 2)
    assert job_id_for(SECRET, "alice", "k1", fp, 1) == job_id_for(
        SECRET, "alice", "k1", fp_other, 1
    )
    assert "apple" not in job_id_for(SECRET, "alice", None, fp, 1)
    for bad in ("/", "\\", "#", "?"):
        assert bad not in job_id_for(SECRET, "a/b#c?d", "k\\", fp, 1)


@pytest.mark.parametrize("key", ["", "x" * 256, "bad\nkey"])
def test_a_bad_idempotency_key_is_named(key):
    with pytest.raises(RequestInvalid) as caught:
        check_key(key)
    assert caught.value.field == "Idempotency-Key"


def test_ids_depend_on_the_secret(settings):
    fp = fingerprint(parse_job_request({"prompt": "a red apple"}, settings))
    assert job_id_for(SECRET, "alice", None, fp, 1) != job_id_for(
        b"another-secret-16ch", "alice", None, fp, 1
    )
