"""Credentials per route owner, decided from headers alone."""

from __future__ import annotations

import pytest

from simulator.auth import check_auth
from simulator.config import RouteSettings
from simulator.errors import ApiError

LISTED = RouteSettings(keys=("key-1",), entra_tokens=("token-1",))


def status(route: str, settings: RouteSettings, headers: dict[str, str]) -> int:
    try:
        check_auth(route, settings, headers)
    except ApiError as err:
        return err.status
    return 200


@pytest.mark.parametrize(
    ("route", "headers", "expected"),
    [
        ("openai", {"Authorization": "Bearer key-1"}, 200),
        ("openai", {"Authorization": "Bearer key-2"}, 401),
        ("openai", {"Authorization": "Basic key-1"}, 401),
        ("openai", {"api-key": "key-1"}, 401),
        ("openai", {}, 401),
        ("azure", {"api-key": "key-1"}, 200),
        ("azure", {"api-key": "key-2"}, 401),
        ("azure", {"Authorization": "Bearer token-1"}, 200),
        ("azure", {"Authorization": "Bearer key-1"}, 401),  # keys go in api-key on this path
        ("azure_v1", {"Authorization": "Bearer key-1"}, 200),  # the plain OpenAI client
        ("azure_v1", {"Authorization": "Bearer token-1"}, 200),
        ("azure_v1", {}, 401),
    ],
)
def test_listed_credentials(route, headers, expected):
    assert status(route, LISTED, headers) == expected


def test_defaults_accept_any_non_empty_credential():
    settings = RouteSettings()
    assert status("openai", settings, {"Authorization": "Bearer anything"}) == 200
    assert status("openai", settings, {"Authorization": "Bearer "}) == 401
    assert status("azure", settings, {"Authorization": "Bearer any-token"}) == 200
    assert status("azure", settings, {"api-key": ""}) == 401


def test_azure_401_has_only_code_and_message():
    with pytest.raises(ApiError) as caught:
        check_auth("azure", LISTED, {"api-key": "not-this-key"})
    assert caught.value.envelope()["error"] == {
        "code": "401",
        "message": caught.value.message,
    }
    assert "not-this-key" not in caught.value.message
