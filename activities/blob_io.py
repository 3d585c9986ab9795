"""Blob access from the event loop: every call runs in a thread, so a slow store never blocks
the stream being read on the same loop; and storage calls that must outlast an outage, retried
until a time budget is spent (not for a number of tries: an outage lasts what it lasts)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from storage.protocol import BlobData, ImageStore

T = TypeVar("T")

# Waits between tries, in seconds; the last one repeats until the budget is spent.
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


class AsyncBlobs:
    """The ImageStore, called from the event loop without blocking it."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store

    async def put(self, name: str, data: BlobData, content_type: str) -> None:
        await asyncio.to_thread(self.store.put, name=name, data=data, content_type=content_type)

    async def put_new(self, name: str, data: bytes, content_type: str) -> bool:
        return await asyncio.to_thread(
            self.store.put_new, name=name, data=data, content_type=content_type
        )

    async def get(self, name: str) -> bytes | None:
        return await asyncio.to_thread(self.store.get, name=name)


async def within_budget(
    call: Callable[[], Awaitable[T]],
    *,
    budget_s: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> T:
    """``call()``'s result, retrying every error with backoff while the next try can still
    start within ``budget_s`` seconds; the last error once the budget is spent. The waits are
    capped so that the last try starts at the deadline, not past it."""
    deadline = monotonic() + budget_s
    waits = itertools.chain(BACKOFF_S, itertools.repeat(BACKOFF_S[-1]))
    while True:
        try:
            return await call()
        except Exception:  # every storage error is retried the same way
            left = deadline - monotonic()
            if left <= 0:
                raise
            await sleep(min(next(waits), left))


async def upload_within_budget(
    blobs: AsyncBlobs,
    name: str,
    data: BlobData,
    content_type: str,
    *,
    budget_s: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> str | None:
    """Store ``data`` under ``name`` within ``budget_s`` seconds (an image that arrived was paid
    for: storage gets the whole budget to come back). None once stored; else the last error's
    type name."""
    try:
        await within_budget(
            lambda: blobs.put(name, data, content_type),
            budget_s=budget_s,
            sleep=sleep,
            monotonic=monotonic,
        )
    except Exception as exc:
        return type(exc).__name__
    return None
