"""LocalStack without its children: taken ports, log folders, and the settings it gives the app.

The scenario tests hold the two sides together: whatever a scenario's simulator config accepts
(parsed by the simulator's own loader), the settings the stack gives the app (parsed by the app's
own `AppSettings.from_env`, over local.settings) must ask for exactly that: deployment, key,
API version, gateway idle limit. Otherwise the documented command answers 401 or 404.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator

import pytest

from localrun.scenarios import SCENARIOS, matching_settings
from localrun.stack import KEEP_RUNS, LocalStack, PortInUse
from localrun_tests.conftest import ROOT
from rules.settings import AppSettings
from simulator.config import ANY, SimulatorConfig, config_from_dict


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No app setting from the test runner's own environment."""
    for name in list(os.environ):
        if name.startswith(("IMAGE_", "IMAGES_")) or name == "AzureWebJobsStorage":
            monkeypatch.delenv(name)


def test_a_taken_port_fails_the_start_at_once_naming_it(tmp_path, held_port):
    stack = LocalStack(
        ROOT, state_dir=tmp_path / "state", azurite_port=0, simulator_port=0, devhost_port=held_port
    )
    started = time.monotonic()
    with pytest.raises(PortInUse) as info:
        stack.start()
    assert time.monotonic() - started < 2
    assert info.value.ports == {held_port: "devhost"}
    assert f"port {held_port} (devhost) already in use" in str(info.value)
    assert "stop it, or choose other ports" in str(info.value)
    assert stack.children() == []
    assert not (tmp_path / "state").exists()  # nothing was started, nothing written


def test_every_taken_port_is_named(held_port):
    stack = LocalStack(ROOT, azurite_port=held_port, simulator_port=held_port, devhost_port=0)
    with pytest.raises(PortInUse, match=f"ports? {held_port} "):
        stack.check_ports()


def test_each_run_writes_its_own_log_folder_and_latest_points_at_it(tmp_path):
    first = LocalStack(ROOT, state_dir=tmp_path)
    first._prepare_logs()
    (first.log_dir / "devhost.log").write_text("the first run's log")
    second = LocalStack(ROOT, state_dir=tmp_path)
    second._prepare_logs()
    assert first.log_dir != second.log_dir
    assert (first.log_dir / "devhost.log").read_text() == "the first run's log"
    latest = tmp_path / "logs" / "latest"
    assert latest.is_symlink()
    assert latest.resolve() == second.log_dir.resolve()
    # One path for `tail -f` across runs: logs/devhost.log is the latest run's.
    (second.log_dir / "devhost.log").write_text("the second run's log")
    assert (tmp_path / "logs" / "devhost.log").read_text() == "the second run's log"
    assert (tmp_path / "logs").stat().st_mode & 0o777 == 0o700
    assert second.log_dir.stat().st_mode & 0o777 == 0o700


def test_only_the_last_runs_are_kept(tmp_path):
    logs = tmp_path / "logs"
    for day in range(1, KEEP_RUNS + 6):
        (logs / f"202601{day:02d}-120000-1").mkdir(parents=True)
    stack = LocalStack(ROOT, state_dir=tmp_path)
    stack._prepare_logs()
    runs = sorted(p.name for p in logs.iterdir() if not p.is_symlink())
    assert len(runs) == KEEP_RUNS
    assert stack.log_dir.name in runs
    assert "20260101-120000-1" not in runs


# --- the settings the stack gives the app, against the simulator's config ---------------------


def app_settings(stack: LocalStack) -> tuple[AppSettings, dict[str, str]]:
    """What the app reads under the stack's environment: devhost's precedence, then the app's
    own parser (which also checks the timeout budget against the gateway limit)."""
    env = stack.app_settings(stack.app_env())
    return AppSettings.from_env(env), env


def assert_agree(config: SimulatorConfig, settings: AppSettings, env: dict[str, str]) -> None:
    checked = 0
    for route in settings.routes.values():
        if route.owner not in ("azure", "openai"):
            continue
        served = config.azure if route.owner == "azure" else config.openai
        if route.owner == "azure":
            deployments = {d.name: d.model for d in config.deployments}
            assert deployments.get(route.deployment or "") == route.model, route.name
            if config.api_versions != ANY:
                assert route.api_version in config.api_versions
        else:
            assert route.model in config.models
        assert route.key_setting is not None
        key = env.get(route.key_setting, "")
        assert key, f"{route.key_setting} is empty"
        assert served.keys == ANY or key in served.keys, f"{route.name}: key not accepted"
        idle = served.gateway.idle_timeout_s
        if idle is None:
            assert route.gateway_idle_timeout_s is None
        else:
            # Both sides divide it by the same time scale.
            assert route.gateway_idle_timeout_s is not None
            assert route.gateway_idle_timeout_s * settings.time_scale == pytest.approx(idle)
        checked += 1
    assert checked >= 2  # the sample's azure and openai routes


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("time_scale", [1.0, 25.0])
def test_the_app_gets_settings_that_agree_with_the_scenarios_simulator(name, time_scale, clean_env):
    scenario = SCENARIOS[name]
    stack = LocalStack(ROOT, scenario=name, time_scale=time_scale, azurite_port=1, devhost_port=2)
    settings, env = app_settings(stack)
    assert_agree(scenario.config(), settings, env)
    assert settings.time_scale == time_scale
    assert env["IMAGE_ROUTE_AZURE_BASE_URL"] == stack.simulator_url


def test_the_azure_gateway_scenario_is_field_report_bs_deployment(clean_env):
    scenario = SCENARIOS["azure-gateway"]
    assert scenario.simulator_config is not None
    assert scenario.simulator_config.name == "seed-004-azure.json"
    stack = LocalStack(ROOT, scenario="azure-gateway")
    assert stack.simulator_config == scenario.simulator_config
    settings, env = app_settings(stack)
    azure = settings.route("azure")
    assert (azure.deployment, env[azure.key_setting or ""]) == ("gpt-image-2-1", "local-azure-key")
    assert azure.gateway_idle_timeout_s == 60


def test_a_local_settings_file_of_ones_own_is_matched_too(tmp_path, clean_env):
    # A user's local.settings.json that keeps the key in another setting and names another
    # deployment: the stack changes the setting the route names, and the deployment.
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    values["IMAGE_ROUTE_AZURE_KEY_SETTING"] = "MY_AZURE_KEY"
    values["MY_AZURE_KEY"] = "my-real-key"
    values["IMAGE_ROUTE_AZURE_DEPLOYMENT"] = "prod-image"
    root = tmp_path / "app"
    root.mkdir()
    (root / "local.settings.json").write_text(json.dumps({"Values": values}))
    shutil.copy(ROOT / "host.json", root / "host.json")
    stack = LocalStack(root, scenario="azure-gateway")
    settings, env = app_settings(stack)
    assert_agree(SCENARIOS["azure-gateway"].config(), settings, env)
    assert env["MY_AZURE_KEY"] == "local-azure-key"


def test_matching_settings_changes_only_what_disagrees():
    config = config_from_dict(
        {
            "deployments": {"img-a": "gpt-image-2"},
            "api_versions": ["2025-04-01-preview"],
            "azure": {"keys": ["k1", "k2"], "gateway": {"idle_timeout_s": 30}},
            "openai": {"keys": "any"},
        }
    )
    app = {
        "IMAGE_ROUTES": "azure,openai,edge",
        "IMAGE_ROUTE_AZURE_DEPLOYMENT": "img-a",
        "IMAGE_ROUTE_AZURE_API_VERSION": "2024-01-01",
        "IMAGE_ROUTE_AZURE_KEY": "k2",
        "IMAGE_ROUTE_OPENAI_KEY": "",
        "IMAGE_ROUTE_EDGE_OWNER": "gateway",
    }
    assert matching_settings(config, app) == {
        "IMAGE_ROUTE_AZURE_API_VERSION": "2025-04-01-preview",
        "IMAGE_ROUTE_AZURE_GATEWAY_IDLE_TIMEOUT_S": "30",
        "IMAGE_ROUTE_OPENAI_KEY": "local-simulator-key",
    }


def test_a_callers_own_simulator_config_wins_over_the_scenario(tmp_path):
    config = tmp_path / "sim.json"
    config.write_text("{}")
    assert LocalStack(ROOT, simulator_config=config).simulator_config == config
    assert LocalStack(ROOT).simulator_config is None
    own = LocalStack(ROOT, scenario="azure-gateway", simulator_config=config)
    assert own.simulator_config == config


def test_the_service_waits_are_divided_by_the_time_scale_once(clean_env):
    # bench-retries runs the stack at its scale; its settings are real seconds, divided once.
    from localrun.bench_retries import SCALE, SERVICE_ENV

    stack = LocalStack(ROOT, time_scale=SCALE, extra_env=SERVICE_ENV)
    settings, _env = app_settings(stack)
    assert settings.retry.transient_waits_s == pytest.approx((5 / SCALE, 15 / SCALE, 30 / SCALE))
    assert settings.retry.post_send_wait_s == pytest.approx(120 / SCALE)
    assert settings.retry.rate_limit_base_s == pytest.approx(10 / SCALE)
    assert settings.timeouts.read_idle_s == pytest.approx(360 / SCALE)
