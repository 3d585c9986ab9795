"""Who may call which route, decided from the request headers exactly as the real services do.

OpenAI takes ``Authorization: Bearer <key>``. Azure takes ``api-key: <key>`` or
``Authorization: Bearer <token>`` where the token is an Entra ID token or, on the v1 path with
the plain ``OpenAI`` client, the resource key itself. With ``entra_tokens: "any"`` (the default)
any non-empty bearer passes on Azure, as any signed-in principal would. A wrong or missing
credential answers 401 in the owner's envelope. No function here logs or echoes a credential.
"""

from __future__ import annotations

from collections.abc import Mapping

from simulator import errors
from simulator.config import ANY, RouteSettings

__all__ = ["check_auth"]


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("Authorization") or headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return token.strip()


def _key_accepted(settings: RouteSettings, key: str) -> bool:
    if not key:
        return False
    return settings.keys == ANY or key in settings.keys


def _token_accepted(settings: RouteSettings, token: str) -> bool:
    if not token:
        return False
    return settings.entra_tokens == ANY or token in settings.entra_tokens


def check_auth(route: str, settings: RouteSettings, headers: Mapping[str, str]) -> None:
    """Raise the owner's 401 ApiError unless the request carries an accepted credential.

    ``route`` is "openai", "azure" (deployment path) or "azure_v1". A bearer that is a resource
    key is accepted only on the v1 path, where Azure documents the plain OpenAI client.
    """
    if route == "openai":
        token = _bearer(headers)
        if token is None or token == "":
            raise errors.openai_missing_api_key()
        if not _key_accepted(settings, token):
            raise errors.openai_invalid_api_key()
        return
    api_key = headers.get("api-key")
    if api_key is not None:
        if _key_accepted(settings, api_key.strip()):
            return
        raise errors.azure_access_denied()
    token = _bearer(headers)
    if token and _token_accepted(settings, token):
        return
    if token and route == "azure_v1" and _key_accepted(settings, token):
        return
    raise errors.azure_access_denied()
