"""The app's outside worlds, built once per worker process from app settings.

Activities and HTTP functions call these instead of building clients themselves, so settings are
parsed once (function_app.py reads them at import: a bad setting stops the host at start-up with
a message naming it), the Blob client and its connection pool survive between invocations.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import weakref
from typing import Any

import httpx

from rules.errors import SettingsInvalid
from rules.settings import AppSettings, RouteSettings
from storage.azure_blob import (
    AzureBlobAsyncStore,
    AzureBlobBatchStore,
    AzureBlobImageStore,
    blob_link_origin,
)

# The Azure SDKs log every HTTP request and response at INFO: noise in every job's log, and
# request lines are no place for anything. Warnings and errors still come through.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
logging.getLogger("azure.identity").setLevel(logging.WARNING)


@functools.cache
def settings() -> AppSettings:
    return AppSettings.from_env(os.environ)


@functools.cache
def store() -> AzureBlobImageStore:
    storage = settings().storage
    # A connection string carries its own key; managed identity needs the shared credential.
    credential = None if storage.connection_string else _credential()
    image_store = AzureBlobImageStore.from_settings(storage, credential=credential)
    image_store.ensure_container()
    return image_store


@functools.cache
def batch_store() -> AzureBlobBatchStore:
    """The batches container (manifests, waves, results, reports), on the images store's
    account and credential."""
    batches = AzureBlobBatchStore(store(), settings().storage.batches_container)
    batches.ensure_container()
    return batches


@functools.cache
def link_origin() -> str:
    """Where the store's read links point (``scheme://host[:port]``): the web page's
    Content-Security-Policy lets images come from there and nowhere else."""
    return blob_link_origin(settings().storage)


# One asyncio Blob client per event loop: an aiohttp session must not outlive, or leave, the
# loop it was made on. The Functions worker runs every async function on one loop.
_edge_stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AzureBlobAsyncStore] = (
    weakref.WeakKeyDictionary()
)


async def edge_store() -> AzureBlobAsyncStore:
    """The store for code on the running event loop (the HTTP edge). Its first use on a loop
    builds the sync store off the loop (it makes sure the container exists and may fetch a
    token: network calls that would stall every request and stream on the loop)."""
    loop = asyncio.get_running_loop()
    found = _edge_stores.get(loop)
    if found is None:
        links = await asyncio.to_thread(store)
        storage = settings().storage
        credential = None if storage.connection_string else _async_credential()
        found = AzureBlobAsyncStore.from_settings(storage, links, credential=credential)
        _edge_stores.setdefault(loop, found)
    return _edge_stores[loop]


@functools.cache
def _async_credential() -> Any:
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One TLS context per worker for the route clients: building one costs ~20 ms of CPU on the
    event loop, which every attempt's new httpx client would otherwise pay."""
    return httpx.create_ssl_context()


@functools.cache
def _credential() -> Any:
    """One DefaultAzureCredential per worker: Blob and Entra route auth share its token cache."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def auth_header(route: RouteSettings) -> tuple[str, str] | None:
    """The auth header for ``route``: a key read from its app setting now, or an Entra token."""
    if route.auth == "none":
        return None
    if route.auth == "entra":
        token = _credential().get_token(route.entra_scope)
        return "authorization", f"Bearer {token.token}"
    assert route.key_setting is not None
    key = os.environ.get(route.key_setting, "")
    if not key:
        raise SettingsInvalid(route.key_setting, "the route's key setting is empty")
    if route.owner == "azure":
        return "api-key", key
    return "authorization", f"Bearer {key}"
