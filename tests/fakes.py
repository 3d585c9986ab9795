"""Hand-written fakes shared by the app's tests: an in-memory Blob store that can fail on cue."""

from __future__ import annotations

import hashlib
import threading

from storage.protocol import BlobData, BlobTooLarge


class InMemoryStore:
    """ImageStore in a dict. ``fail(suffix, times)`` makes the next writes of blobs whose name
    ends with ``suffix`` raise, as an outage would; ``put_calls`` counts every write."""

    def __init__(self) -> None:
        self.blobs: dict[str, tuple[bytes, str]] = {}
        # Blobs of other containers (edit inputs referenced by container/name), by container.
        self.containers: dict[str, dict[str, bytes]] = {}
        self.put_calls: list[str] = []
        self.get_calls: list[str] = []
        # Every call raises, as with the storage emulator stopped.
        self.down = False
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def fail(self, suffix: str, times: int) -> None:
        with self._lock:
            self._failures[suffix] = times

    def put(self, *, name: str, data: BlobData, content_type: str) -> None:
        stored = bytes(data)  # a view of a decoded image: kept as the bytes Blob would hold
        with self._lock:
            self._write(name)
            self.blobs[name] = (stored, content_type)

    def _write(self, name: str) -> None:
        """Count a write of ``name``, and raise where the store is down or told to fail it."""
        self.put_calls.append(name)
        if self.down:
            raise ConnectionError("storage is down")
        for suffix, left in self._failures.items():
            if left > 0 and name.endswith(suffix):
                self._failures[suffix] = left - 1
                raise ConnectionError("storage is down")

    def put_new(self, *, name: str, data: bytes, content_type: str) -> bool:
        with self._lock:
            self._write(name)
            if name in self.blobs:
                return False
            self.blobs[name] = (bytes(data), content_type)
            return True

    def get(self, *, name: str) -> bytes | None:
        with self._lock:
            self.get_calls.append(name)
            if self.down:
                raise ConnectionError("storage is down")
            item = self.blobs.get(name)
        return item[0] if item else None

    def list_page(
        self, *, prefix: str, limit: int, after: str | None
    ) -> tuple[list[str], str | None]:
        with self._lock:
            names = sorted(name for name in self.blobs if name.startswith(prefix))
        start = names.index(after) + 1 if after in names else 0
        page = names[start : start + limit]
        more = start + limit < len(names)
        return page, (page[-1] if more and page else None)

    def read_link(self, *, name: str, ttl_s: int) -> str:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a blob name is needed, got {name!r}")  # as the Blob SDK fails
        return f"memory://{name}?ttl={ttl_s}"


class AsyncInMemoryStore:
    """AsyncImageStore over an InMemoryStore (``sync``), which keeps the blobs, counts the calls
    and fails on cue for both."""

    links_are_local = True

    def __init__(self, sync: InMemoryStore | None = None) -> None:
        self.sync = sync or InMemoryStore()

    async def put(self, *, name: str, data: bytes, content_type: str) -> None:
        self.sync.put(name=name, data=data, content_type=content_type)

    async def get(self, *, name: str) -> bytes | None:
        return self.sync.get(name=name)

    async def list_page(
        self, *, prefix: str, limit: int, after: str | None
    ) -> tuple[list[str], str | None]:
        return self.sync.list_page(prefix=prefix, limit=limit, after=after)

    def read_link(self, *, name: str, ttl_s: int) -> str:
        return self.sync.read_link(name=name, ttl_s=ttl_s)

    def write_link(self, *, name: str, ttl_s: int) -> str:
        return f"memory-write://{name}?ttl={ttl_s}"

    async def get_bounded(
        self, *, name: str, max_bytes: int, container: str | None = None
    ) -> bytes | None:
        if container is not None:
            self.sync.get_calls.append(f"{container}/{name}")
            if self.sync.down:
                raise ConnectionError("storage is down")
            data = self.sync.containers.get(container, {}).get(name)
        else:
            data = self.sync.get(name=name)
        if data is not None and len(data) > max_bytes:
            raise BlobTooLarge(len(data))
        return data

    async def put_new(self, *, name: str, data: bytes, content_type: str) -> bool:
        return self.sync.put_new(name=name, data=data, content_type=content_type)

    async def get_versioned(self, *, name: str) -> tuple[bytes, str] | None:
        data = self.sync.get(name=name)
        return None if data is None else (data, _etag(data))

    async def put_if_unchanged(
        self, *, name: str, data: bytes, content_type: str, etag: str
    ) -> bool:
        current = self.sync.get(name=name)
        if current is None or _etag(current) != etag:
            return False
        self.sync.put(name=name, data=data, content_type=content_type)
        return True


def _etag(data: bytes) -> str:
    # By content: a write of the same bytes keeps the tag, which is all a fake needs.
    return '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
