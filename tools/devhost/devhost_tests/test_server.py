"""DevHost as a whole: keys under the state directory, the CLI's keys command, what is refused."""

from __future__ import annotations

import json
import logging
import os
import sys
import textwrap

import httpx
import pytest

from devhost.__main__ import main
from devhost.http_host import _is_loopback
from devhost.keys import key_file_path
from devhost.server import DevHost
from devhost_tests.example_client import EXAMPLE, App

UNSUPPORTED_APP = textwrap.dedent(
    """
    import azure.functions as func

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="with-blob")
    @app.blob_output(arg_name="out", path="c/b.txt", connection="AzureWebJobsStorage")
    def with_blob(req, out):
        return "never"

    @app.queue_trigger(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage")
    def on_queue(msg):
        pass
    """
)


def test_keys_are_kept_under_the_state_dir_across_restarts(tmp_path):
    with DevHost(app_dir=EXAMPLE, state_dir=tmp_path, virtual_time=True) as first:
        keys = (first.master_key, first.function_key, first.system_key)
    assert key_file_path(tmp_path).exists()
    with DevHost(app_dir=EXAMPLE, state_dir=tmp_path, virtual_time=True) as second:
        assert (second.master_key, second.function_key, second.system_key) == keys


def test_the_keys_command_prints_the_default_function_key(tmp_path, capsys):
    assert main(["keys", "--state", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.strip()
    assert main(["keys", "--state", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == printed
    with DevHost(app_dir=EXAMPLE, state_dir=tmp_path, virtual_time=True) as host:
        assert host.function_key == printed


def test_functions_devhost_cannot_host_are_named_at_start_and_refused(tmp_path, caplog):
    (tmp_path / "unsupported_app.py").write_text(UNSUPPORTED_APP)
    with (
        caplog.at_level(logging.WARNING, logger="devhost"),
        DevHost("unsupported_app", app_dir=tmp_path) as host,
    ):
        r = httpx.get(f"{host.url}/api/with-blob")
        assert r.status_code == 501
        assert "with_blob" in r.text
    assert "NOT HOSTED: function on_queue (queueTrigger)" in caplog.text
    assert "NOT HOSTED: function with_blob (httpTrigger)" in caplog.text


def test_one_devhost_per_process_and_the_app_leaves_sys_modules_as_it_found_it():
    before = sys.modules.get("function_app")
    with DevHost(app_dir=EXAMPLE), pytest.raises(RuntimeError, match="another DevHost"):
        DevHost(app_dir=EXAMPLE).start()
    assert sys.modules.get("function_app") is before
    assert str(EXAMPLE.resolve()) not in sys.path


def test_a_failed_start_names_the_problem_and_leaves_nothing_behind(tmp_path):
    (tmp_path / "bad_timer_app.py").write_text(
        textwrap.dedent(
            """
            import azure.functions as func

            app = func.FunctionApp()

            @app.timer_trigger(schedule="%DEVHOST_TEST_MISSING_SCHEDULE%", arg_name="t")
            def tick(t):
                pass
            """
        )
    )
    with pytest.raises(KeyError, match="DEVHOST_TEST_MISSING_SCHEDULE"):
        DevHost("bad_timer_app", app_dir=tmp_path).start()
    assert "bad_timer_app" not in sys.modules
    assert str(tmp_path.resolve()) not in sys.path
    with DevHost(app_dir=EXAMPLE) as host:  # the one-per-process slot was released
        assert httpx.get(f"{host.url}/").status_code == 200


SETTING_APP = textwrap.dedent(
    """
    import os

    import azure.functions as func

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="setting")
    def setting(req):
        return os.environ.get("DEVHOST_TEST_SETTING", "<unset>")
    """
)


def _app_with_setting(directory, value: str):
    directory.mkdir()
    (directory / "setting_app.py").write_text(SETTING_APP)
    (directory / "local.settings.json").write_text(
        json.dumps({"Values": {"DEVHOST_TEST_SETTING": value}})
    )
    return directory


def test_a_second_devhost_reads_its_own_app_settings_and_stop_puts_the_environment_back(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("DEVHOST_TEST_SETTING", raising=False)
    first = _app_with_setting(tmp_path / "first", "first")
    second = _app_with_setting(tmp_path / "second", "second")
    with DevHost("setting_app", app_dir=first) as host:
        assert httpx.get(f"{host.url}/api/setting").text == "first"
    assert "DEVHOST_TEST_SETTING" not in os.environ
    with DevHost("setting_app", app_dir=second) as host:
        assert httpx.get(f"{host.url}/api/setting").text == "second"
    assert "DEVHOST_TEST_SETTING" not in os.environ


def test_a_variable_set_before_the_host_still_wins_and_is_kept_after_stop(tmp_path, monkeypatch):
    monkeypatch.setenv("DEVHOST_TEST_SETTING", "from-env")
    app_dir = _app_with_setting(tmp_path / "app", "local")
    with DevHost("setting_app", app_dir=app_dir) as host:
        assert httpx.get(f"{host.url}/api/setting").text == "from-env"
    assert os.environ["DEVHOST_TEST_SETTING"] == "from-env"


def test_durable_client_calls_work_when_the_host_listens_on_another_loopback_address():
    # 127.0.0.2 is loopback but not 127.0.0.1: the client binding's RPC base must still answer.
    with DevHost(app_dir=EXAMPLE, host="127.0.0.2", virtual_time=True) as host:
        assert host.url.startswith("http://127.0.0.2:")
        app = App(host)
        started = app.start("chain", ["Lima"])
        done = app.wait(started["id"])
        app.http.close()
    assert done["runtimeStatus"] == "Completed"
    assert done["output"] == ["Hello Lima!"]


def test_the_rpc_listener_is_loopback_and_serves_only_the_management_api():
    with DevHost(app_dir=EXAMPLE, host="127.0.0.2", virtual_time=True) as host:
        assert host.rpc_url.startswith("http://127.0.0.1:")
        assert host.rpc_url != host.url
        r = httpx.post(f"{host.rpc_url}/durabletask/orchestrators/chain", json=["Rome"])
        assert r.status_code == 202
        app = App(host)
        done = app.wait(r.json()["id"])
        app.http.close()
        assert done["output"] == ["Hello Rome!"]
        # No HTTP functions, admin or key-protected routes on the keyless listener.
        assert httpx.get(f"{host.rpc_url}/api/hello/World").status_code == 404
        assert httpx.get(f"{host.rpc_url}/").status_code == 404
        webhook = f"{host.rpc_url}/runtime/webhooks/durabletask/instances"
        assert httpx.get(webhook).status_code == 404


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("::ffff:127.0.0.3", True),
        ("192.168.1.5", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("not an address", False),
    ],
)
def test_only_loopback_peers_may_use_the_keyless_rpc_base(address, loopback):
    assert _is_loopback(address) is loopback
