"""Everything one running simulator holds between requests, in one object the handlers share.

Config, time scale, ledger, fault queue, rate limiters (one per route owner and model or Azure
deployment), the image renderer with its cache, the latency model with its seeded random source,
the render thread pool, the upstream generations still running after their client left, and the
Files and Batch APIs' files and batches. The admin API and ``Simulator.reset()`` clear the
ledger, the faults, the limiter windows, the files and the batches (stopping those running).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import threading
import time

from simulator.batch_runner import BatchStore
from simulator.config import SimulatorConfig
from simulator.faults import FaultQueue
from simulator.files import FileStore
from simulator.images import ImageRenderer
from simulator.latency import LatencyModel, TimeScale
from simulator.ledger import Ledger
from simulator.ratelimit import RateLimiter, RateLimitRule

__all__ = ["SimState"]


class SimState:
    """Shared state of one simulator instance (thread-safe where tests touch it)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.scale = TimeScale(config.time_scale)
        self.ledger = Ledger()
        self.faults = FaultQueue()
        for spec in config.faults:
            self.faults.add(spec)
        self.renderer = ImageRenderer(
            max_cache_bytes=int(config.render_cache_mb * 2**20), seed=config.seed
        )
        self.latency = LatencyModel(config.latency)
        self.rng = random.Random(config.seed)
        # Rendering is CPU work: keep it off the event loop and off asyncio's default pool.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(2, min(8, (os.cpu_count() or 2) * 2)),
            thread_name_prefix="simulator-render",
        )
        self.upstream: set[asyncio.Task[None]] = set()
        self.files = FileStore()
        self.batches = BatchStore()
        self._limiters: dict[str, RateLimiter] = {}
        self._lock = threading.Lock()

    def service_clock(self) -> float:
        """Monotonic seconds of service time: a 60 s window lasts 60 / time_scale real seconds."""
        return time.monotonic() * self.scale.factor

    def limiter(self, key: str, rule: RateLimitRule) -> RateLimiter:
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = RateLimiter(rule, self.service_clock, report=self.scale.report)
                self._limiters[key] = limiter
            return limiter

    def reset(self) -> None:
        """Clear the ledger, the queued faults, every rate-limit window, the files and the
        batches (a running batch stops)."""
        self.batches.clear()
        self.files.clear()
        self.ledger.clear()
        self.faults.clear()
        with self._lock:
            self._limiters.clear()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
