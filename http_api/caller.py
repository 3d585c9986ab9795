"""Who is calling: the Easy Auth principal where it can be trusted, else the settings' default.

App Service Authentication (Easy Auth) sets ``x-ms-client-principal-id`` and strips it from
client requests, so the header is trusted only where Easy Auth is on (or a setting says a
trusted front end sets it); anywhere else a client could claim to be anyone.
"""

from __future__ import annotations

import azure.functions as func

from rules.errors import RequestInvalid
from rules.settings import AppSettings

PRINCIPAL_HEADER = "x-ms-client-principal-id"


MAX_PRINCIPAL_CHARS = 256


def caller_of(req: func.HttpRequest, settings: AppSettings) -> str:
    """The caller's identity. Raises RequestInvalid (400) for a principal header that is not
    one: Easy Auth sets a short printable id, so anything else did not come from it."""
    if not settings.trust_principal_header:
        return settings.default_caller
    principal = str(req.headers.get(PRINCIPAL_HEADER) or "")
    if not principal:
        return settings.default_caller
    if not _is_principal(principal):
        raise RequestInvalid(
            PRINCIPAL_HEADER, "invalid_value", "the principal header is not a principal id"
        )
    return principal


def _is_principal(text: str) -> bool:
    try:
        text.encode("utf-8")  # a raw byte that is not UTF-8 arrives as a lone surrogate
    except UnicodeEncodeError:
        return False
    return text.isprintable() and len(text) <= MAX_PRINCIPAL_CHARS


def has_own_identity(req: func.HttpRequest, settings: AppSettings) -> bool:
    """Whether the caller is someone of its own (a trusted principal), not the shared default
    caller that every holder of a function key is."""
    return settings.trust_principal_header and bool(req.headers.get(PRINCIPAL_HEADER))
