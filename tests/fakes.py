"""Hand-written fakes shared by the app's tests: an in-memory Blob store that can fail on cue."""

from __future__ import annotations

import threading


class InMemoryStore:
    """ImageStore in a dict. ``fail(suffix, times)`` makes the next writes of blobs whose name
    ends with ``suffix`` raise, as an outage would; ``put_calls`` counts every write."""

    def __init__(self) -> None:
        self.blobs: dict[str, tuple[bytes, str]] = {}
        self.put_calls: list[str] = []
        self.get_calls: list[str] = []
        # Every call raises, as with the storage emulator stopped.
        self.down = False
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def fail(self, suffix: str, times: int) -> None:
        with self._lock:
            self._failures[suffix] = times

    def put(self, *, name: str, data: bytes, content_type: str) -> None:
        with self._lock:
            self.put_calls.append(name)
            if self.down:
                raise ConnectionError("storage is down")
            for suffix, left in self._failures.items():
                if left > 0 and name.endswith(suffix):
                    self._failures[suffix] = left - 1
                    raise ConnectionError("storage is down")
            self.blobs[name] = (data, content_type)

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
