"""local.settings.json and host.json, read with Core Tools' precedence."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from devhost.settings import (
    HostConfig,
    SettingsError,
    apply_local_settings,
    read_host_json,
    resolve_setting,
    restore_local_settings,
)


def write(path: Path, data: object) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def test_values_go_into_the_environment_but_a_set_variable_wins(tmp_path, caplog):
    write(tmp_path / "local.settings.json", {"Values": {"A": "local", "B": "local", "C": "local"}})
    env = {"A": "from-env", "B": ""}
    with caplog.at_level(logging.INFO):
        result = apply_local_settings(tmp_path, env)
    assert env == {"A": "from-env", "B": "local", "C": "local"}
    assert result.skipped == ("A",)
    assert set(result.applied) == {"B", "C"}
    assert "Skipping 'A' from local settings" in caplog.text
    assert "from-env" not in caplog.text
    assert "local" not in caplog.text.replace("local settings", "")


def test_the_sample_file_is_the_fallback_and_the_log_says_so(tmp_path, caplog):
    write(tmp_path / "local.settings.sample.json", {"Values": {"X": "1"}})
    env: dict[str, str] = {}
    with caplog.at_level(logging.WARNING):
        result = apply_local_settings(tmp_path, env)
    assert result.used_sample
    assert env == {"X": "1"}
    assert "local.settings.json not found" in caplog.text


def test_local_settings_json_is_preferred_over_the_sample(tmp_path):
    write(tmp_path / "local.settings.json", {"Values": {"X": "real"}})
    write(tmp_path / "local.settings.sample.json", {"Values": {"X": "sample"}})
    env: dict[str, str] = {}
    assert not apply_local_settings(tmp_path, env).used_sample
    assert env == {"X": "real"}


def test_no_settings_file_at_all_is_fine(tmp_path):
    env: dict[str, str] = {}
    assert apply_local_settings(tmp_path, env).path is None
    assert env == {}


def test_a_broken_settings_file_is_an_error_naming_it(tmp_path):
    (tmp_path / "local.settings.json").write_text("{not json")
    with pytest.raises(SettingsError, match=r"local\.settings\.json"):
        apply_local_settings(tmp_path, {})


def test_encrypted_local_settings_are_refused_not_misread(tmp_path):
    write(tmp_path / "local.settings.json", {"IsEncrypted": True, "Values": {"A": "x"}})
    with pytest.raises(SettingsError, match="IsEncrypted"):
        apply_local_settings(tmp_path, {})


def test_setting_references_resolve_and_a_missing_one_is_named():
    assert resolve_setting("%A%-%B%", {"A": "1", "B": "2"}) == "1-2"
    assert resolve_setting("0 */5 * * * *", {}) == "0 */5 * * * *"
    with pytest.raises(KeyError, match="NOPE"):
        resolve_setting("%NOPE%", {})


def test_host_json_settings(tmp_path):
    write(
        tmp_path / "host.json",
        {
            "functionTimeout": "00:05:00",
            "extensions": {
                "http": {"routePrefix": "/v1/"},
                "durableTask": {"hubName": "%HUB%", "maxConcurrentActivityFunctions": 3},
            },
        },
    )
    config = read_host_json(tmp_path, {"HUB": "MyHub"})
    assert config.route_prefix == "v1"
    assert config.hub_name == "MyHub"
    assert config.max_concurrent_activities == 3
    assert config.function_timeout == "00:05:00"


def test_host_json_defaults(tmp_path):
    config = read_host_json(tmp_path, {"WEBSITE_SITE_NAME": "my-app_01"})
    assert config.route_prefix == "api"
    assert config.hub_name == "myapp01"
    assert config.max_concurrent_activities == HostConfig().max_concurrent_activities


def test_an_empty_route_prefix_removes_it(tmp_path):
    write(tmp_path / "host.json", {"extensions": {"http": {"routePrefix": ""}}})
    assert read_host_json(tmp_path, {}).route_prefix == ""


def test_restore_puts_back_exactly_what_was_replaced(tmp_path):
    write(tmp_path / "local.settings.json", {"Values": {"A": "local", "B": "local", "C": "x"}})
    env = {"A": "", "C": "from-env", "OTHER": "kept"}
    result = apply_local_settings(tmp_path, env)
    restore_local_settings(result, env)
    assert env == {"A": "", "C": "from-env", "OTHER": "kept"}


def test_a_name_devhost_wrote_is_not_taken_for_the_environment(tmp_path, monkeypatch):
    # A host that was never stopped left its value in os.environ: the next app's value still
    # applies, and restoring gives back the value from before either of them.
    monkeypatch.setenv("DEVHOST_TEST_LEFTOVER", "")
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    write(first / "local.settings.json", {"Values": {"DEVHOST_TEST_LEFTOVER": "first"}})
    write(second / "local.settings.json", {"Values": {"DEVHOST_TEST_LEFTOVER": "second"}})
    apply_local_settings(first)
    result = apply_local_settings(second)
    assert result.skipped == ()
    assert os.environ["DEVHOST_TEST_LEFTOVER"] == "second"
    restore_local_settings(result)
    assert os.environ["DEVHOST_TEST_LEFTOVER"] == ""
