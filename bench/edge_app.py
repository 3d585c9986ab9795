"""The app bench.edge_latency runs: this service's DFApp plus Microsoft's Python quickstart.

devhost loads it with `--app bench.edge_app`: the product's `function_app.app` (imported, not
copied) with one more blueprint registered, the Durable Functions Python quickstart as Microsoft
publishes it: an HTTP starter (`client.start_new` + `client.create_check_status_response`) on
`orchestrators/{functionName}`, the `hello_orchestrator` calling the `hello` activity three times.
So both starters run in the same host, process and event loop, behind the same keys, and the
benchmark compares this app's edge with the smallest durable app there is.

Also a slot holder for the benchmark's default mode: `bench_hold_slot`, an orchestration whose one
activity waits for an hour without doing anything. Started maxConcurrentActivityFunctions times,
holders take every activity slot, so every job started afterwards (this app's and the
quickstart's alike) stays queued after its first episode: nothing but the HTTP edge runs.

With BENCH_EDGE_TRACE=1 in the environment it also times, from inside the host process, each
round trip this app's HTTP functions make (the durable client's calls, the Blob reads and how
long they waited for a thread) and serves the samples on `GET /api/bench/trace` (`?reset=true`
empties them). The product code is not changed: the wrappers are put around the SDK's and the
store's methods from here, in this bench-only module.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import azure.durable_functions as df
import azure.functions as func

from function_app import app

__all__ = ["app"]

TRACE_ENV = "BENCH_EDGE_TRACE"
T = TypeVar("T")

quickstart = df.Blueprint()


# --- Microsoft's quickstart, as published (function names kept) ----------------------------


@quickstart.route(route="orchestrators/{functionName}")
@quickstart.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> Any:
    function_name = req.route_params.get("functionName")
    instance_id = await client.start_new(function_name)
    response = client.create_check_status_response(req, instance_id)
    return response  # noqa: RET504 - the quickstart's code as published


@quickstart.orchestration_trigger(context_name="context")
def hello_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, list[str]]:
    result1 = yield context.call_activity("hello", "Seattle")
    result2 = yield context.call_activity("hello", "Tokyo")
    result3 = yield context.call_activity("hello", "London")
    return [result1, result2, result3]


@quickstart.activity_trigger(input_name="city")
def hello(city: str) -> str:
    return "Hello " + city


@quickstart.orchestration_trigger(context_name="context")
def bench_hold_slot(context: df.DurableOrchestrationContext) -> Generator[Any, Any, None]:
    yield context.call_activity("bench_hold", None)


@quickstart.activity_trigger(input_name="ignored")
async def bench_hold(ignored: Any) -> None:
    await asyncio.sleep(3600)  # holds one activity slot, idle, until the host stops


# --- optional timing of this app's round trips ----------------------------------------------

_samples: dict[str, list[float]] = defaultdict(list)
_samples_lock = threading.Lock()


def _record(name: str, seconds: float) -> None:
    with _samples_lock:
        _samples[name].append(seconds * 1000)


class _NewConnections(logging.Handler):
    """Counts the new TCP connections urllib3 opens (the Blob client's transport)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Starting new HTTP"):
            _record("blob: new TCP connection (count)", 0.0)


def _install_trace() -> None:
    from http_api import handlers, job_ids, status_view
    from storage.azure_blob import AzureBlobImageStore

    client_cls = df.DurableOrchestrationClient
    get_status = client_cls.get_status
    start_new = client_cls.start_new

    @functools.wraps(get_status)
    async def timed_get_status(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await get_status(self, *args, **kwargs)
        finally:
            _record("durable client: get_status", time.perf_counter() - t0)

    @functools.wraps(start_new)
    async def timed_start_new(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await start_new(self, name, *args, **kwargs)
        finally:
            _record(f"durable client: start_new({name})", time.perf_counter() - t0)

    client_cls.get_status = timed_get_status
    client_cls.start_new = timed_start_new

    blob_get = AzureBlobImageStore.get

    @functools.wraps(blob_get)
    def timed_blob_get(self: AzureBlobImageStore, *, name: str) -> bytes | None:
        t0 = time.perf_counter()
        try:
            return blob_get(self, name=name)
        finally:
            found = name.rsplit("/", 1)[-1].split("-", 1)[0].split(".", 1)[0]
            _record(f"blob: get {found}", time.perf_counter() - t0)

    AzureBlobImageStore.get = timed_blob_get  # type: ignore[method-assign]

    async def timed_to_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        submitted = time.perf_counter()
        started: list[float] = []
        label = getattr(fn, "__name__", "call")

        def run() -> T:
            started.append(time.perf_counter())
            return fn(*args, **kwargs)

        try:
            return await asyncio.to_thread(run)
        finally:
            done = time.perf_counter()
            if started:
                _record(f"to_thread {label}: wait for a thread", started[0] - submitted)
                _record(f"to_thread {label}: run in the thread", done - started[0])
            _record(f"to_thread {label}: total", done - submitted)

    class _Asyncio:
        """The HTTP edge modules' view of asyncio: the module, with to_thread timed."""

        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        to_thread = staticmethod(timed_to_thread)

    for module in (handlers, job_ids, status_view):
        setattr(module, "asyncio", _Asyncio())  # noqa: B010 - replacing a module global on purpose

    urllib3_log = logging.getLogger("urllib3.connectionpool")
    urllib3_log.setLevel(logging.DEBUG)
    urllib3_log.addHandler(_NewConnections())
    urllib3_log.propagate = False

    @quickstart.route(route="bench/trace", methods=["GET"])
    async def bench_trace(req: func.HttpRequest) -> func.HttpResponse:
        _LoopLag.ensure_started()
        with _samples_lock:
            body = json.dumps({"samples": dict(_samples), "cpu_s": time.process_time()})
            if req.params.get("reset") == "true":
                _samples.clear()
        return func.HttpResponse(body, mimetype="application/json")


class _LoopLag:
    """How late the host's event loop runs a callback due every 5 ms: how long other work held
    the loop (HTTP functions, episodes, the durable API, all share that one loop)."""

    PERIOD_S = 0.005
    _task: asyncio.Task[None] | None = None

    @classmethod
    def ensure_started(cls) -> None:
        if cls._task is None:
            cls._task = asyncio.get_running_loop().create_task(cls._run())

    @classmethod
    async def _run(cls) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + cls.PERIOD_S
            await asyncio.sleep(cls.PERIOD_S)
            _record("event loop: lag behind a 5 ms tick", loop.time() - due)


if os.environ.get(TRACE_ENV) == "1":
    _install_trace()

app.register_functions(quickstart)
