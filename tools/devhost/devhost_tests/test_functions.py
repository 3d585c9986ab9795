"""Loading a function app and sorting its functions into what devhost hosts."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path

import pytest

from devhost.functions import AppLoadError, index_functions, load_app
from devhost.keys import AuthLevel

EXAMPLE = Path(__file__).parent / "example_app"

MIXED_APP = textwrap.dedent(
    """
    import azure.durable_functions as df
    import azure.functions as func

    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="plain", methods=["GET", "post"])
    def plain(req):
        return "ok"

    @app.route(route="with-blob")
    @app.blob_output(arg_name="out", path="c/b.txt", connection="AzureWebJobsStorage")
    def with_blob(req, out):
        return "never"

    @app.queue_trigger(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage")
    def on_queue(msg):
        pass

    @app.entity_trigger(context_name="ctx")
    def counter(ctx):
        pass

    @app.entity_trigger(context_name="ctx", entity_name="Tally")
    def tally_entity(ctx):
        pass

    @app.orchestration_trigger(context_name="context", orchestration="RenamedOrchestrator")
    def orch(context):
        yield context.call_activity("Renamed", 1)

    @app.activity_trigger(input_name="value", activity="Renamed")
    def act(value: dict) -> dict:
        return {"got": value}
    """
)


@pytest.fixture
def mixed_app(tmp_path):
    (tmp_path / "mixed_app.py").write_text(MIXED_APP)
    _module, app = load_app("mixed_app", tmp_path)
    yield app
    sys.modules.pop("mixed_app", None)
    sys.path.remove(str(tmp_path.resolve()))


def test_functions_land_in_their_buckets(mixed_app):
    index = index_functions(mixed_app)
    assert [(h.name, h.route, h.methods, h.auth_level) for h in index.http] == [
        ("plain", "plain", ("GET", "POST"), AuthLevel.ANONYMOUS)
    ]
    assert set(index.orchestrators) == {"RenamedOrchestrator"}
    assert set(index.activities) == {"Renamed"}
    unsupported = {u.name: u for u in index.unsupported}
    assert set(unsupported) == {"with_blob", "on_queue"}
    assert "blob" in unsupported["with_blob"].reason
    assert unsupported["with_blob"].route == "with-blob"
    # Entities by their trigger's entity_name or else the function name, case-insensitively.
    assert {k: name for k, (name, _) in index.entities.items()} == {
        "counter": "counter",
        "tally": "Tally",
    }
    assert unsupported["on_queue"].trigger == "queueTrigger"


def test_an_activity_decodes_and_encodes_with_the_workers_converter(mixed_app):
    index = index_functions(mixed_app)
    out = asyncio.run(index.activities["Renamed"](json.dumps({"a": [1, 2]})))
    assert out is not None
    assert json.loads(out) == {"got": {"a": [1, 2]}}
    # A payload that is not JSON falls back to the raw string, as the worker's converter does.
    out = asyncio.run(index.activities["Renamed"]("not json"))
    assert out is not None
    assert json.loads(out) == {"got": "not json"}


def test_the_example_app_indexes_with_the_durable_client_binding():
    _module, app = load_app("function_app", EXAMPLE)
    try:
        index = index_functions(app)
    finally:
        sys.modules.pop("function_app", None)
        sys.path.remove(str(EXAMPLE.resolve()))
    by_name = {h.name: h for h in index.http}
    assert by_name["start"].client_arg == "client"
    assert by_name["start"].auth_level is AuthLevel.FUNCTION  # the app's default
    assert by_name["hello"].client_arg is None
    assert {"chain", "retry_exhaustion", "fan_out", "parent", "counter"} <= set(index.orchestrators)
    assert [t.name for t in index.timers] == ["tick"]
    assert index.timers[0].schedule == "%EXAMPLE_TICK_SCHEDULE%"
    assert index.unsupported == []


def test_a_missing_module_or_app_is_an_error_naming_the_module(tmp_path):
    with pytest.raises(AppLoadError, match="nosuch"):
        load_app("nosuch", tmp_path)
    (tmp_path / "empty_app.py").write_text("x = 1\n")
    with pytest.raises(AppLoadError, match="no FunctionApp"):
        load_app("empty_app", tmp_path)
    sys.modules.pop("empty_app", None)
    sys.path.remove(str(tmp_path.resolve()))
