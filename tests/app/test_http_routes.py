"""The app's HTTP routes as the host indexes them: the catch-all's name sorts after every other
function's, since the host orders routes of equal standing by function name."""

from __future__ import annotations

import functools
import importlib
import json
import os
from pathlib import Path
from typing import Any
from unittest import mock

import wiring
from http_api.blueprint import CATCH_ALL

ROOT = Path(__file__).resolve().parents[2]


def _app() -> Any:
    """function_app checks the app settings at import: imported under the sample's, which are
    then taken out of the environment and of wiring's cache again."""
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    with mock.patch.dict(os.environ, values):
        module = importlib.import_module("function_app")
    wiring.settings.cache_clear()
    return module.app


@functools.cache  # the SDK indexes an app once: a second get_functions() call raises
def http_triggers() -> dict[str, Any]:
    """Each HTTP function's trigger (route, methods, auth level), by function name."""
    triggers = {}
    for function in _app().get_functions():
        trigger = function.get_trigger()
        if trigger is not None and trigger.get_binding_name() == "httpTrigger":
            triggers[function.get_function_name()] = trigger
    return triggers


def _http_functions() -> dict[str, str]:
    return {name: trigger.route for name, trigger in http_triggers().items()}


def test_the_catch_all_sorts_after_every_other_http_function():
    routes = _http_functions()
    assert routes[CATCH_ALL] == "{*path}"
    assert max(routes) == CATCH_ALL, sorted(routes)


def test_every_route_of_the_api_is_there():
    assert set(_http_functions().values()) == {
        "images",
        "images/{id}",
        "images/{id}/cancel",
        "images/{id}/client-timings",
        "images/{id}/evidence",
        "routes",
        "batches",
        "batches/{id}",
        "batches/{id}/cancel",
        "uploads",
        "ui/{file?}",
        "webhook-secret",
        "openapi.json",
        "{*path}",
    }
