"""Host keys: the key file, who may call what, and where a request presents its key."""

from __future__ import annotations

import base64
import json
import stat

import pytest

from devhost.keys import (
    DURABLE_SYSTEM_KEY_NAME,
    AuthLevel,
    HostKeys,
    KeyFileError,
    key_file_path,
    load_or_create_keys,
    presented_key,
)


def test_first_start_creates_the_key_file_in_the_hosts_format(tmp_path):
    keys, created = load_or_create_keys(tmp_path)
    assert created
    path = key_file_path(tmp_path)
    data = json.loads(path.read_text())
    assert data["masterKey"] == {"name": "master", "value": keys.master_key, "encrypted": False}
    assert data["functionKeys"] == [
        {"name": "default", "value": keys.default_function_key, "encrypted": False}
    ]
    assert data["systemKeys"][0]["name"] == DURABLE_SYSTEM_KEY_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keys_are_forty_random_bytes_url_safe():
    keys = HostKeys.generate()
    raw = base64.urlsafe_b64decode(keys.master_key + "=" * (-len(keys.master_key) % 4))
    assert len(raw) == 40
    assert len({keys.master_key, keys.default_function_key, keys.durable_system_key}) == 3


def test_a_restart_reads_the_same_keys(tmp_path):
    first, _ = load_or_create_keys(tmp_path)
    second, created = load_or_create_keys(tmp_path)
    assert not created
    assert second == first


def test_missing_default_and_system_keys_are_added_to_a_hand_written_file(tmp_path):
    path = key_file_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"masterKey": {"name": "master", "value": "m"}}))
    keys, created = load_or_create_keys(tmp_path)
    assert not created
    assert keys.master_key == "m"
    again = json.loads(path.read_text())
    assert {k["name"] for k in again["functionKeys"]} == {"default"}
    assert keys.durable_system_key


def test_an_unreadable_key_file_is_an_error_naming_the_file(tmp_path):
    path = key_file_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    with pytest.raises(KeyFileError, match=r"host\.json"):
        load_or_create_keys(tmp_path)


def test_who_may_call_what():
    keys = HostKeys(
        master_key="master",
        function_keys={"default": "fn"},
        system_keys={DURABLE_SYSTEM_KEY_NAME: "sys"},
    )
    assert keys.allows(AuthLevel.ANONYMOUS, None)
    assert keys.allows(AuthLevel.FUNCTION, "fn")
    assert keys.allows(AuthLevel.FUNCTION, "master")
    assert not keys.allows(AuthLevel.FUNCTION, "sys")  # system keys are not function keys
    assert not keys.allows(AuthLevel.FUNCTION, None)
    assert not keys.allows(AuthLevel.FUNCTION, "")
    assert keys.allows(AuthLevel.ADMIN, "master")
    assert not keys.allows(AuthLevel.ADMIN, "fn")
    assert keys.allows_extension("durabletask", "sys")
    assert keys.allows_extension("durabletask", "master")
    assert not keys.allows_extension("durabletask", "fn")


def test_the_header_wins_over_code_and_code_is_case_insensitive():
    assert presented_key({"x-functions-key": "h"}, {"code": "q"}) == "h"
    assert presented_key({}, {"Code": "q"}) == "q"
    assert presented_key({}, {}) is None


def test_keys_never_show_in_repr():
    keys = HostKeys.generate()
    assert keys.master_key not in repr(keys)


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("function", AuthLevel.FUNCTION),
        ("ANONYMOUS", AuthLevel.ANONYMOUS),
        ("Admin", AuthLevel.ADMIN),
    ],
)
def test_auth_levels_parse_any_spelling(value, level):
    assert AuthLevel.parse(value) is level
