"""Blob access from the event loop: every call runs in a thread, so a slow store never blocks
the stream being read on the same loop; and the one upload that must not give up early."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from storage.protocol import ImageStore

# Waits between upload tries, in seconds.
UPLOAD_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


class AsyncBlobs:
    """The ImageStore, called from the event loop without blocking it."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store

    async def put(self, name: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self.store.put, name=name, data=data, content_type=content_type)

    async def get(self, name: str) -> bytes | None:
        return await asyncio.to_thread(self.store.get, name=name)


async def upload_within_budget(
    blobs: AsyncBlobs,
    name: str,
    data: bytes,
    content_type: str,
    *,
    budget_s: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> str | None:
    """Store ``data`` under ``name``, retrying every error with the backoff above while the
    next try still fits in ``budget_s`` seconds: an image that arrived was paid for. None once
    stored; else the last error's type name."""
    deadline = monotonic() + budget_s
    last = ""
    for wait in (0.0, *UPLOAD_BACKOFF_S):
        if wait:
            if monotonic() + wait > deadline:
                break
            await sleep(wait)
        try:
            await blobs.put(name, data, content_type)
        except Exception as exc:  # every storage error is retried the same way
            last = type(exc).__name__
            continue
        return None
    return last or "upload budget spent"
