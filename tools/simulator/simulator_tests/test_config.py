"""Settings: defaults, the example files, and errors that name the bad key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.config import (
    ANY,
    ConfigError,
    Deployment,
    SimulatorConfig,
    config_from_dict,
    load_config,
)
from simulator.ratelimit import RateLimitRule

EXAMPLES = sorted((Path(__file__).parents[1] / "simulator" / "examples").glob("*.json"))


def test_defaults_accept_any_key_with_one_deployment_and_azures_60_s_gateway():
    config = SimulatorConfig()
    assert config.openai.keys == ANY
    assert config.azure.keys == ANY
    assert config.deployments == (Deployment("gpt-image-2", "gpt-image-2"),)
    assert config.openai.rate_limit is None
    assert config.azure.rate_limit is None
    assert config.faults == ()
    assert config.time_scale == 1.0
    assert config.seed == 0
    assert config.openai.keep_alive_s is None
    assert config.azure.keep_alive_s is None
    assert config.azure.gateway.idle_timeout_s == 60.0
    assert config.openai.gateway.idle_timeout_s is None
    assert not config.azure.gateway.idle_timeout_non_streamed
    assert config_from_dict({}) == config


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_file_loads(path: Path):
    assert isinstance(load_config(path), SimulatorConfig)


def test_nested_settings_are_typed():
    config = config_from_dict(
        {
            "deployments": {
                "a": {
                    "model": "gpt-image-2",
                    "rate_limit": {"requests_per_minute": 3, "images_per_minute": None},
                }
            },
            "azure": {"keys": ["k1"], "gateway": {"proxy_idle_timeout_s": 30}, "speed": 2},
            "latency": {"jitter": 0, "base_s": {"low": 1, "medium": 2, "high": 3}},
            "faults": [{"kind": "http_error", "status": 500}],
        }
    )
    assert config.deployments[0].rate_limit == RateLimitRule(3, None)
    assert config.azure.keys == ("k1",)
    assert config.azure.gateway.idle_timeout_s == 60.0  # the default survives a partial object
    assert config.azure.gateway.proxy_idle_timeout_s == 30.0
    assert config.azure.speed == 2.0
    assert config.latency.jitter == 0.0
    assert config.faults[0].kind == "http_error"


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"time_scal": 10}, "time_scal"),
        ({"azure": {"gateway": {"idle": 1}}}, "azure.gateway.idle"),
        ({"openai": {"speed": 0}}, "openai.speed"),
        ({"openai": {"keys": "some"}}, "openai.keys"),
        ({"openai": {"keys": [""]}}, "openai.keys"),
        ({"latency": {"jitter": "high"}}, "latency.jitter"),
        ({"latency": {"no_such": 1}}, "latency.no_such"),
        (
            {
                "openai": {
                    "rate_limit": {
                        "requests_per_minute": 1,
                        "images_per_minute": 1,
                        "header_style": "x",
                    }
                }
            },
            "openai.rate_limit.header_style",
        ),
        ({"faults": [{"kind": "nope"}]}, "faults[0]"),
        ({"deployments": {"d": {"modle": "x"}}}, "deployments.d.modle"),
        ({"seed": True}, "seed"),
        ({"openai": {"rate_limit_error": "aws"}}, "openai.rate_limit_error"),
        ({"openai": {"default_model": 3}}, "openai.default_model"),
        ({"azure": {"sse_dialect": "json_lines"}}, "azure.sse_dialect"),
    ],
)
def test_errors_name_the_bad_key(raw, named):
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict(raw)


def test_load_config_names_the_file(tmp_path: Path):
    path = tmp_path / "sim.json"
    path.write_text(json.dumps({"bogus": 1}))
    with pytest.raises(ConfigError, match=r"sim\.json: unknown key bogus"):
        load_config(path)
    path.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")


def test_keys_never_appear_in_repr():
    config = config_from_dict(
        {"openai": {"keys": ["sk-secret-1"]}, "azure": {"entra_tokens": ["tok-secret"]}}
    )
    assert "sk-secret-1" not in repr(config)
    assert "tok-secret" not in repr(config)


@pytest.mark.parametrize("window", ["requests_per_minute", "images_per_minute"])
def test_a_rate_limit_with_one_window_needs_no_other_key(window: str):
    config = config_from_dict({"openai": {"rate_limit": {window: 4}}})
    assert config.openai.rate_limit is not None
    assert getattr(config.openai.rate_limit, window) == 4


def test_a_rate_limit_without_any_window_is_a_clear_config_error():
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"openai": {"rate_limit": {"window_s": 10}}})
    message = str(caught.value)
    assert message.startswith("openai.rate_limit: set requests_per_minute, images_per_minute")
    assert "__init__" not in message


def test_rate_limit_error_shape_and_default_model_per_route():
    defaults = SimulatorConfig()
    assert (defaults.openai.rate_limit_error, defaults.azure.rate_limit_error) == (
        "openai",
        "azure",
    )
    assert defaults.openai.default_model is None
    config = config_from_dict(
        {"openai": {"default_model": "gpt-image-2"}, "azure": {"rate_limit_error": "openai"}}
    )
    assert config.openai.default_model == "gpt-image-2"
    assert config.azure.rate_limit_error == "openai"


def test_the_sse_dialect_per_route():
    defaults = SimulatorConfig()
    assert (defaults.openai.sse_dialect, defaults.azure.sse_dialect) == (
        "event_lines",
        "event_lines",
    )
    config = config_from_dict({"openai": {"sse_dialect": "data_only"}})
    assert config.openai.sse_dialect == "data_only"
    assert config.azure.sse_dialect == "event_lines"
