"""Who is calling: the Easy Auth principal where it can be trusted, else the settings' default.

App Service Authentication (Easy Auth) sets ``x-ms-client-principal-id`` and strips it from
client requests, so the header is trusted only where Easy Auth is on (or a setting says a
trusted front end sets it); anywhere else a client could claim to be anyone.
"""

from __future__ import annotations

import azure.functions as func

from rules.settings import AppSettings

PRINCIPAL_HEADER = "x-ms-client-principal-id"


def caller_of(req: func.HttpRequest, settings: AppSettings) -> str:
    if settings.trust_principal_header:
        return req.headers.get(PRINCIPAL_HEADER) or settings.default_caller
    return settings.default_caller
