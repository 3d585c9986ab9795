"""Run an Engine on a fresh event loop inside a plain sync test.

`run(scenario)` builds the Engine from orchestrator functions (turned into the SDK's handles by
`df.Orchestrator.create`) and async activity callables, starts it, awaits the scenario, and
stops it. `eventually` polls a condition while letting the loop run: no sleeps as waits.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import azure.durable_functions as df

from devhost.clock import Clock, VirtualClock
from devhost.engine import ActivityInvoker, Engine
from devhost.store import Store

T = TypeVar("T")


def handles(orchestrators: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[[str], str]]:
    return {name: df.Orchestrator.create(fn) for name, fn in orchestrators.items()}


def json_activity(fn: Callable[[Any], Awaitable[Any]]) -> ActivityInvoker:
    """Wrap `async def fn(value) -> value` as the engine's JSON-text-in, JSON-text-out invoker."""

    async def invoke(input_json: str | None) -> str | None:
        value = None if input_json is None else json.loads(input_json)
        return json.dumps(await fn(value))

    return invoke


def make_engine(
    *,
    orchestrators: Mapping[str, Callable[..., Any]],
    activities: Mapping[str, ActivityInvoker] | None = None,
    store: Store | None = None,
    db: str | Path = ":memory:",
    clock: Clock | None = None,
    max_concurrent_activities: int = 10,
    log: logging.Logger | None = None,
) -> Engine:
    return Engine(
        store=store or Store(db),
        orchestrators=handles(orchestrators),
        activities=dict(activities or {}),
        clock=clock or VirtualClock(),
        task_hub="testhub",
        max_concurrent_activities=max_concurrent_activities,
        log=log,
    )


def run(engine: Engine, scenario: Callable[[Engine], Awaitable[T]], *, stop: bool = True) -> T:
    async def main() -> T:
        await engine.start()
        try:
            return await scenario(engine)
        finally:
            if stop:
                await engine.stop()
            # else: a simulated crash; asyncio.run cancels whatever is still running.

    return asyncio.run(main())


async def eventually(
    condition: Callable[[], Awaitable[T | bool | None]], *, limit_s: float = 10.0, what: str = "it"
) -> T:
    """Await `condition()` until truthy, yielding to the loop between tries; fail after timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    last: object = None
    while loop.time() < deadline:
        last = await condition()
        if last:
            return last  # type: ignore[return-value]
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out after {limit_s}s waiting for {what} (last: {last!r})")


async def finished(engine: Engine, instance_id: str, limit_s: float = 10.0) -> dict[str, Any]:
    status = await engine.wait_for_completion(instance_id, limit_s)
    assert status is not None, f"instance {instance_id} vanished"
    assert status["runtimeStatus"] in {"Completed", "Failed", "Terminated"}, status
    return status
