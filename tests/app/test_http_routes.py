"""The app's HTTP routes as the host indexes them: the catch-all's name sorts after every other
function's, since the host orders routes of equal standing by function name."""

from __future__ import annotations

import functools

from function_app import app
from http_api.blueprint import CATCH_ALL


@functools.cache  # the SDK indexes an app once: a second get_functions() call raises
def _http_functions() -> dict[str, str]:
    routes = {}
    for function in app.get_functions():
        trigger = function.get_trigger()
        if trigger is not None and trigger.get_binding_name() == "httpTrigger":
            routes[function.get_function_name()] = trigger.route
    return routes


def test_the_catch_all_sorts_after_every_other_http_function():
    routes = _http_functions()
    assert routes[CATCH_ALL] == "{*path}"
    assert max(routes) == CATCH_ALL, sorted(routes)


def test_every_route_of_the_api_is_there():
    assert set(_http_functions().values()) == {
        "images",
        "images/{id}",
        "images/{id}/cancel",
        "uploads",
        "{*path}",
    }
