"""ImageStore on Azure Blob Storage (or Azurite): the one module that imports azure.storage.blob.

Two ways in, one per environment:
- a connection string (Azurite locally: ``UseDevelopmentStorage=true``): links are SAS signed with
  the account key;
- an account URL with DefaultAzureCredential (managed identity in Azure, shared keys off): links
  are user-delegation SAS, signed with a key the identity obtains (cached until near expiry).
"""

from __future__ import annotations

import contextlib
import threading
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import (
    BlobBlock,
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    ExponentialRetry,
    UserDelegationKey,
    generate_blob_sas,
)
from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient
from azure.storage.blob.aio import ExponentialRetry as AsyncExponentialRetry

from rules.settings import StorageSettings
from storage.protocol import BlobData, BlobTooLarge, PageTokenInvalid

# The error code of a missing blob (a missing container has its own, and is an error).
BLOB_NOT_FOUND = "BlobNotFound"
# Blobs larger than this go up as staged blocks of this size, one at a time: a 16 MB image is
# written from the buffer it was decoded into, holding one block's copy at a time instead of
# the whole image again (the SDK takes bytes, not a view).
BLOCK_BYTES = 4 * 1024 * 1024


class AzureBlobImageStore:
    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._service = service
        self._container = service.get_container_client(container)
        self._container_name = container
        self._delegation_key: UserDelegationKey | None = None
        self._delegation_expiry = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: StorageSettings, *, credential: Any | None = None
    ) -> AzureBlobImageStore:
        """A store for ``settings``: by connection string, or by account URL with
        ``credential`` (a TokenCredential; a new DefaultAzureCredential when None)."""
        # Short SDK retries: the SDK's default (15 s, then 18 s, 42 s...) would hold a call for a
        # minute, past the callers' own budgets; the image upload has its own retry loop with a
        # deadline, and progress and previews are best effort.
        options: dict[str, Any] = {
            "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2),
            "connection_timeout": 5,
            "read_timeout": 60,
        }
        if settings.connection_string:
            service = BlobServiceClient.from_connection_string(
                settings.connection_string, **options
            )
        else:
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            assert settings.account_url  # AppSettings.from_env guarantees one of the two
            service = BlobServiceClient(settings.account_url, credential=credential, **options)
        return cls(service, settings.container)

    @property
    def links_are_local(self) -> bool:
        return bool(getattr(self._service.credential, "account_key", None))

    def ensure_container(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._container.create_container()

    def put(self, *, name: str, data: BlobData, content_type: str) -> None:
        settings = ContentSettings(content_type=content_type)
        if isinstance(data, bytes) or len(data) <= BLOCK_BYTES:
            # One request, as before (a view is copied here, but at most a block of it).
            self._container.upload_blob(
                name, bytes(data), overwrite=True, content_settings=settings
            )
            return
        blob = self._container.get_blob_client(name)
        # Block ids of this write alone: another write of the same name at the same time (a
        # re-run of the activity) stages blocks of its own, and each commit names only its own.
        write = uuid.uuid4().hex
        blocks = []
        for index, start in enumerate(range(0, len(data), BLOCK_BYTES)):
            block = BlobBlock(f"{write}-{index:06d}")
            blob.stage_block(block.id, bytes(data[start : start + BLOCK_BYTES]))
            blocks.append(block)
        # Committing replaces whatever the blob held (overwrite, as the single put does).
        blob.commit_block_list(blocks, content_settings=settings)

    def put_new(self, *, name: str, data: bytes, content_type: str) -> bool:
        # overwrite=False sends If-None-Match: * (learn.microsoft.com/rest/api/storageservices/
        # specifying-conditional-headers-for-blob-service-operations): the service creates the
        # blob for one caller and answers 409 BlobAlreadyExists to every other.
        try:
            self._container.upload_blob(
                name,
                data,
                overwrite=False,
                content_settings=ContentSettings(content_type=content_type),
            )
        except ResourceExistsError:
            return False
        return True

    def get(self, *, name: str) -> bytes | None:
        try:
            return self._container.download_blob(name).readall()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) != BLOB_NOT_FOUND:  # a container: an error
                raise
            return None

    def read_link(self, *, name: str, ttl_s: int) -> str:
        return self._link(name, ttl_s, BlobSasPermissions(read=True))

    def write_link(self, *, name: str, ttl_s: int) -> str:
        """Create and write on this one blob only: no read, list or delete."""
        return self._link(name, ttl_s, BlobSasPermissions(create=True, write=True))

    def _link(self, name: str, ttl_s: int, permission: BlobSasPermissions) -> str:
        return self._link_in(self._container_name, name, ttl_s, permission)

    def _link_in(
        self, container: str, name: str, ttl_s: int, permission: BlobSasPermissions
    ) -> str:
        """A SAS link to ``container/name`` of this account (the images container's, or the
        batches container's for a batch report)."""
        now = datetime.now(UTC)
        expiry = now + timedelta(seconds=ttl_s)
        account = self._service.account_name
        assert account is not None
        credential = self._service.credential
        account_key = getattr(credential, "account_key", None)
        if account_key:
            sas = generate_blob_sas(
                account_name=account,
                container_name=container,
                blob_name=name,
                account_key=account_key,
                permission=permission,
                expiry=expiry,
                start=now - timedelta(minutes=5),
            )
        else:
            sas = generate_blob_sas(
                account_name=account,
                container_name=container,
                blob_name=name,
                user_delegation_key=self._user_delegation_key(now, expiry),
                permission=permission,
                expiry=expiry,
                start=now - timedelta(minutes=5),
            )
        url = self._service.get_container_client(container).url
        return f"{url}/{name}?{sas}"

    def _user_delegation_key(self, now: datetime, expiry: datetime) -> UserDelegationKey:
        with self._lock:
            if self._delegation_key is None or self._delegation_expiry < expiry:
                # One key serves every link for a day, so a status poll costs no extra call.
                key_expiry = max(expiry, now + timedelta(days=1))
                self._delegation_key = self._service.get_user_delegation_key(
                    now - timedelta(minutes=5), key_expiry
                )
                self._delegation_expiry = key_expiry
            return self._delegation_key


class AzureBlobAsyncStore:
    """AsyncImageStore on the SDK's asyncio client: the HTTP edge's reads and writes without a
    thread hop each (the sync client costs about twice the CPU per call, plus a pool thread).
    Bound to the event loop it was made on; links come from the sync store, which signs them.
    """

    def __init__(self, service: AsyncBlobServiceClient, container: str, links: AzureBlobImageStore):
        self._service = service
        self._container = service.get_container_client(container)
        self._links = links

    @classmethod
    def from_settings(
        cls, settings: StorageSettings, links: AzureBlobImageStore, *, credential: Any | None = None
    ) -> AzureBlobAsyncStore:
        """``credential``: an async TokenCredential (azure.identity.aio), for an account URL."""
        options: dict[str, Any] = {
            "retry_policy": AsyncExponentialRetry(
                initial_backoff=1, increment_base=2, retry_total=2
            ),
            "connection_timeout": 5,
            "read_timeout": 60,
            # aiohttp looks up the environment's proxy settings on a pool thread for every
            # request when asked to honour them (azure-core's default): a thread hop per Blob
            # call, which under load queues behind every other to_thread user of the worker.
            # The environment does not change while the worker runs, so it is read once here.
            "use_env_settings": bool(urllib.request.getproxies()),
        }
        if settings.connection_string:
            service = AsyncBlobServiceClient.from_connection_string(
                settings.connection_string, **options
            )
        else:
            assert settings.account_url  # AppSettings.from_env guarantees one of the two
            assert credential is not None
            service = AsyncBlobServiceClient(settings.account_url, credential=credential, **options)
        return cls(service, settings.container, links)

    @property
    def links_are_local(self) -> bool:
        return self._links.links_are_local

    async def put(self, *, name: str, data: bytes, content_type: str) -> None:
        await self._container.upload_blob(
            name, data, overwrite=True, content_settings=ContentSettings(content_type=content_type)
        )

    async def get(self, *, name: str) -> bytes | None:
        try:
            downloader = await self._container.download_blob(name)
            data: bytes = await downloader.readall()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) != BLOB_NOT_FOUND:  # a container: an error
                raise
            return None
        return data

    async def list_page(
        self, *, prefix: str, limit: int, after: str | None
    ) -> tuple[list[str], str | None]:
        blobs = self._container.list_blobs(name_starts_with=prefix, results_per_page=limit)
        pager = blobs.by_page(continuation_token=after)
        names: list[str] = []
        try:
            async for page in pager:
                names = [blob.name async for blob in page]
                break
        except HttpResponseError as exc:
            if after is not None and exc.status_code == 400:
                raise PageTokenInvalid(after) from None  # the service refused the marker
            raise
        token: str | None = getattr(pager, "continuation_token", None)
        return names, token or None

    def read_link(self, *, name: str, ttl_s: int) -> str:
        return self._links.read_link(name=name, ttl_s=ttl_s)

    def write_link(self, *, name: str, ttl_s: int) -> str:
        return self._links.write_link(name=name, ttl_s=ttl_s)

    async def get_bounded(
        self, *, name: str, max_bytes: int, container: str | None = None
    ) -> bytes | None:
        client = self._service.get_container_client(container) if container else self._container
        try:
            # The first response carries the blob's size: a blob past the bound is refused
            # before the rest of it is read.
            downloader = await client.download_blob(name)
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) != BLOB_NOT_FOUND:  # a container: an error
                raise
            return None
        if downloader.size > max_bytes:
            raise BlobTooLarge(downloader.size)
        data: bytes = await downloader.readall()
        return data

    async def put_new(self, *, name: str, data: bytes, content_type: str) -> bool:
        try:
            await self._container.upload_blob(
                name,
                data,
                overwrite=False,
                content_settings=ContentSettings(content_type=content_type),
            )
        except ResourceExistsError:
            return False
        return True

    async def get_versioned(self, *, name: str) -> tuple[bytes, str] | None:
        try:
            downloader = await self._container.download_blob(name)
            data: bytes = await downloader.readall()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) != BLOB_NOT_FOUND:  # a container: an error
                raise
            return None
        return data, str(downloader.properties.etag)

    async def put_if_unchanged(
        self, *, name: str, data: bytes, content_type: str, etag: str
    ) -> bool:
        try:
            await self._container.upload_blob(
                name,
                data,
                overwrite=True,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
                content_settings=ContentSettings(content_type=content_type),
            )
        except ResourceModifiedError:  # 412: written (or deleted) by someone else since
            return False
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return False
            raise
        return True


def blob_link_origin(settings: StorageSettings) -> str:
    """``scheme://host[:port]`` of the links the store hands out (its account's blob
    endpoint), without a network call: what a web page must allow images from."""
    if settings.connection_string:
        url = BlobServiceClient.from_connection_string(settings.connection_string).url
    else:
        assert settings.account_url  # AppSettings.from_env guarantees one of the two
        url = settings.account_url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class AzureBlobBatchStore:
    """The batches container: manifests dropped under ``incoming/``, claimed ones, each batch's
    waves, results and report (names: storage.protocol). Sync: activities and the batch timer
    call it (the HTTP edge through a thread)."""

    def __init__(self, images: AzureBlobImageStore, container: str) -> None:
        self._images = images
        self._container = images._service.get_container_client(container)
        self._name = container

    def ensure_container(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._container.create_container()

    def put(self, *, name: str, data: bytes, content_type: str) -> None:
        self._container.upload_blob(
            name,
            data,
            overwrite=True,
            content_settings=ContentSettings(content_type=content_type),
        )

    def get(self, *, name: str) -> bytes | None:
        try:
            return self._container.download_blob(name).readall()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) != BLOB_NOT_FOUND:
                raise
            return None

    def get_if_unchanged(self, *, name: str, etag: str) -> bytes | None:
        """The blob's bytes only while its ETag is ``etag`` (If-Match); None when it is gone or
        was written again since it was listed (the next run lists the new upload)."""
        quoted = etag if etag.startswith('"') else f'"{etag}"'
        try:
            return self._container.download_blob(
                name, etag=quoted, match_condition=MatchConditions.IfNotModified
            ).readall()
        except (ResourceNotFoundError, ResourceModifiedError):
            return None

    def list_names(self, *, prefix: str, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` blobs under ``prefix``, oldest name first: (name, etag)."""
        found: list[tuple[str, str]] = []
        for blob in self._container.list_blobs(name_starts_with=prefix):
            found.append((blob.name, str(blob.etag).strip('"')))
            if len(found) >= limit:
                break
        return found

    def delete(self, *, name: str) -> None:
        """Delete the blob; one that is already gone is no error."""
        with contextlib.suppress(ResourceNotFoundError):
            self._container.delete_blob(name)

    def delete_if_unchanged(self, *, name: str, etag: str) -> bool:
        """Delete the blob only while its ETag is ``etag`` (as ``list_names`` gave it, quotes
        or none): True when deleted or already gone, False when written again since (412)."""
        quoted = etag if etag.startswith('"') else f'"{etag}"'
        try:
            self._container.delete_blob(
                name, etag=quoted, match_condition=MatchConditions.IfNotModified
            )
        except ResourceNotFoundError:
            return True
        except ResourceModifiedError:
            # 412: written again since, or gone (If-Match on a missing blob fails the same way).
            return not self._container.get_blob_client(name).exists()
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return not self._container.get_blob_client(name).exists()
            raise
        return True

    def read_link(self, *, name: str, ttl_s: int) -> str:
        return self._images._link_in(self._name, name, ttl_s, BlobSasPermissions(read=True))
