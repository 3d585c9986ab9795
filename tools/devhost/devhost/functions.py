"""Load a Python v2 function app and sort its functions into what devhost can host.

The Python worker imports `function_app.py`, finds the `FunctionApp`/`DFApp` object and indexes
`get_functions()`; devhost does the same, once per app object (a second `get_functions()` on the
same object raises "does not have a unique function name"). Each function lands in one bucket:

- HTTP functions: route template, methods, auth level, the trigger's argument name and the
  `durableClient` binding if any;
- orchestrators: name -> the SDK's `Orchestrator.create(fn)` handle (the engine replays it);
- activities: name -> an `ActivityInvoker` that decodes the input and encodes the result with the
  SDK's own `ActivityTriggerConverter`, running sync code in a thread pool as the worker does,
  with the `durableClient` binding if any (the host supplies the client JSON: `client_json`);
- entities: lowercased entity name -> the SDK's `Entity.create(fn)` handle (entities.py runs it);
- timer functions: schedule, run_on_startup, use_monitor;
- everything else (queue/blob/event triggers, functions with bindings devhost cannot
  supply) is listed as unsupported, with the reason. Calls to them are refused, never faked.

Names follow the extension: an orchestrator, activity or entity is called by the name given to its
trigger (`orchestration=`/`activity=`/`entity_name=`) or else by its function name; entity names
are case-insensitive (the SDK's EntityId lowercases them).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import inspect
import logging
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from devhost.keys import AuthLevel

__all__ = [
    "ActivityInvoker",
    "AppLoadError",
    "FunctionIndex",
    "HttpFunction",
    "InvocationContext",
    "TimerFunction",
    "UnsupportedFunction",
    "call_user_function",
    "index_functions",
    "load_app",
    "log_invocation",
]

OrchestratorHandle = Callable[[str], str]

# Bindings a function may carry besides its trigger, per trigger type, for devhost to host it.
_HTTP_EXTRAS = {"http", "durableClient"}
_TIMER_EXTRAS = {"durableClient"}
# An activity may start or signal other instances through a client binding (the extension
# binds `durableClient` in any function); orchestrators and entities take none.
_ACTIVITY_EXTRAS = {"durableClient"}
_DURABLE_EXTRAS: set[str] = set()


class AppLoadError(Exception):
    """The app module cannot be imported or holds no function app; carries the module name."""

    def __init__(self, module: str, reason: str) -> None:
        super().__init__(f"cannot load the function app from module {module!r}: {reason}")
        self.module = module


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: str
    methods: tuple[str, ...] | None
    auth_level: AuthLevel
    trigger_arg: str
    client_arg: str | None
    user_function: Callable[..., Any] = field(repr=False)
    wants_context: bool = False


@dataclass(frozen=True)
class TimerFunction:
    name: str
    schedule: str
    run_on_startup: bool
    use_monitor: bool | None
    trigger_arg: str
    client_arg: str | None
    user_function: Callable[..., Any] = field(repr=False)
    wants_context: bool = False


@dataclass(frozen=True)
class UnsupportedFunction:
    name: str
    trigger: str
    reason: str
    # Set for an HTTP function devhost refuses: its route still answers, with 501 and the reason.
    route: str | None = None
    methods: tuple[str, ...] | None = None


class InvocationContext(func.Context):
    """The `context` argument the worker passes when a function declares one."""

    def __init__(self, function_name: str, invocation_id: str, directory: str) -> None:
        self._function_name = function_name
        self._invocation_id = invocation_id
        self._directory = directory

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._directory

    @property
    def trace_context(self) -> Any:  # not provided by devhost
        return None

    @property
    def retry_context(self) -> Any:  # not provided by devhost
        return None

    @property
    def thread_local_storage(self) -> Any:  # not provided by devhost
        return None


async def call_user_function(
    fn: Callable[..., Any], kwargs: Mapping[str, Any], executor: Executor | None
) -> Any:
    """Await an async function on this loop; run a sync one in the worker's thread pool."""
    if inspect.iscoroutinefunction(fn):
        return await fn(**kwargs)
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(executor, functools.partial(fn, **kwargs))
    if inspect.isawaitable(result):
        return await result
    return result


def log_invocation(
    log: logging.Logger,
    *,
    function: str,
    invocation_id: str,
    instance_id: str | None,
    duration_s: float,
    outcome: str,
) -> None:
    """The one log line per function execution: HTTP and timer functions, activities, episodes."""
    log.info(
        "function=%s invocationId=%s instanceId=%s durationMs=%.1f outcome=%s",
        function,
        invocation_id,
        instance_id or "-",
        duration_s * 1000,
        outcome,
    )


class ActivityInvoker:
    """Runs one activity function: input JSON text -> output JSON text (raises on failure).

    The converter calls are the worker's own: `ActivityTriggerConverter.decode` (a JSON payload
    that is not JSON falls back to the raw string) and `.encode(result).value`. An activity with
    a `durableClient` binding gets the binding's JSON from `client_json`, which the host sets
    once its listeners are known (as the HTTP and timer functions get it).
    """

    def __init__(
        self,
        name: str,
        user_function: Callable[..., Any],
        input_arg: str,
        *,
        executor: Executor | None = None,
        log: logging.Logger | None = None,
        directory: str = "",
        client_arg: str | None = None,
    ) -> None:
        self.name = name
        self.client_arg = client_arg
        self.client_json: Callable[[], str] | None = None
        self._fn = user_function
        self._input_arg = input_arg
        self._executor = executor
        self._log = log or logging.getLogger("devhost.activities")
        self._wants_context = "context" in _parameters(user_function)
        self._directory = directory

    async def __call__(self, input_json: str | None) -> str | None:
        payload = "null" if input_json is None else input_json
        value = ActivityTriggerConverter.decode(
            meta.Datum(type="json", value=payload), trigger_metadata=None
        )
        kwargs: dict[str, Any] = {self._input_arg: value}
        if self.client_arg:
            if self.client_json is None:
                raise RuntimeError(f"activity {self.name}: no durable client (the host is not up)")
            kwargs[self.client_arg] = self.client_json()
        if self._wants_context:
            kwargs["context"] = InvocationContext(self.name, str(uuid.uuid4()), self._directory)
        result = await call_user_function(self._fn, kwargs, self._executor)
        encoded: str | None = ActivityTriggerConverter.encode(result, expected_type=None).value
        return encoded


@dataclass
class FunctionIndex:
    http: list[HttpFunction] = field(default_factory=list)
    orchestrators: dict[str, OrchestratorHandle] = field(default_factory=dict)
    activities: dict[str, ActivityInvoker] = field(default_factory=dict)
    timers: list[TimerFunction] = field(default_factory=list)
    unsupported: list[UnsupportedFunction] = field(default_factory=list)
    # Lowercased entity name -> (entity name as declared, the SDK's entity handle).
    entities: dict[str, tuple[str, Callable[[Any], Any]]] = field(default_factory=dict)

    def function_names(self) -> set[str]:
        return (
            {f.name for f in self.http}
            | set(self.orchestrators)
            | set(self.activities)
            | {name for name, _ in self.entities.values()}
            | {t.name for t in self.timers}
            | {u.name for u in self.unsupported}
        )

    def describe(self, route_prefix: str) -> list[str]:
        """Lines for the start-up log, like Core Tools' function list."""
        prefix = f"/{route_prefix}" if route_prefix else ""
        lines: list[str] = []
        for h in self.http:
            methods = ",".join(h.methods) if h.methods else "ALL"
            lines.append(f"{h.name}: [{methods}] {prefix}/{h.route} (auth {h.auth_level.value})")
        lines.extend(f"{n}: orchestrationTrigger" for n in self.orchestrators)
        lines.extend(f"{n}: activityTrigger" for n in self.activities)
        lines.extend(f"{name}: entityTrigger" for name, _ in self.entities.values())
        lines.extend(f"{t.name}: timerTrigger ({t.schedule})" for t in self.timers)
        return lines


def _parameters(fn: Callable[..., Any]) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def load_app(module: str, app_dir: str | Path) -> tuple[ModuleType, Any]:
    """Import `{app_dir}/{module}.py` afresh and return it with its function app object.

    A fresh module object each time, so two DevHosts in one process each index their own app
    (get_functions() may be called once per app object). The app directory goes first on
    sys.path so the app's own packages (blueprints) import as they do under the worker.
    """
    directory = Path(app_dir).resolve()
    path = directory / f"{module.replace('.', '/')}.py"
    if not path.exists():
        raise AppLoadError(module, f"{path} does not exist")
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    spec = importlib.util.spec_from_file_location(module, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(module, f"{path} is not importable")
    mod = importlib.util.module_from_spec(spec)
    # Registered under its own name: the SDK's JSON codec finds custom classes in sys.modules.
    sys.modules[module] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:
        del sys.modules[module]
        raise AppLoadError(module, f"importing it raised {type(exc).__name__}: {exc}") from exc
    apps = [v for v in vars(mod).values() if isinstance(v, func.FunctionRegister)]
    if not apps:
        raise AppLoadError(module, "it defines no FunctionApp or DFApp object")
    if len(apps) > 1:
        raise AppLoadError(module, "it defines more than one FunctionApp/DFApp object")
    return mod, apps[0]


def _binding_types(f: Any) -> list[tuple[str, str]]:
    trigger = f.get_trigger()
    return [(b.type, b.name) for b in f.get_bindings() if b is not trigger]


def _client_arg(extras: list[tuple[str, str]]) -> str | None:
    names = [name for kind, name in extras if kind == "durableClient"]
    return names[0] if names else None


def _methods(trigger: Any) -> tuple[str, ...] | None:
    methods = getattr(trigger, "methods", None)
    if not methods:
        return None
    return tuple(str(getattr(m, "value", m)).upper() for m in methods)


def index_functions(
    app: Any,
    *,
    executor: Executor | None = None,
    log: logging.Logger | None = None,
    directory: str = "",
) -> FunctionIndex:
    """Call `app.get_functions()` once and sort every function into its bucket."""
    logger = log or logging.getLogger("devhost")
    index = FunctionIndex()
    for f in app.get_functions():
        name: str = f.get_function_name()
        trigger = f.get_trigger()
        kind: str = trigger.get_binding_name()
        extras = _binding_types(f)
        unknown = sorted(
            {
                k
                for k, _ in extras
                if k
                not in {
                    "httpTrigger": _HTTP_EXTRAS,
                    "timerTrigger": _TIMER_EXTRAS,
                    "activityTrigger": _ACTIVITY_EXTRAS,
                }.get(kind, _DURABLE_EXTRAS)
            }
        )
        user = f.get_user_function()
        if kind == "httpTrigger":
            route = str(trigger.route)
            methods = _methods(trigger)
            if unknown:
                index.unsupported.append(
                    UnsupportedFunction(
                        name,
                        kind,
                        f"bindings devhost cannot supply: {', '.join(unknown)}",
                        route=route,
                        methods=methods,
                    )
                )
                continue
            level = AuthLevel.parse(trigger.auth_level or app.auth_level)
            index.http.append(
                HttpFunction(
                    name=name,
                    route=route,
                    methods=methods,
                    auth_level=level,
                    trigger_arg=trigger.name,
                    client_arg=_client_arg(extras),
                    user_function=user,
                    wants_context="context" in _parameters(user),
                )
            )
        elif unknown:
            index.unsupported.append(
                UnsupportedFunction(name, kind, f"bindings devhost cannot supply: {unknown}")
            )
        elif kind == "orchestrationTrigger":
            index.orchestrators[getattr(trigger, "orchestration", None) or name] = user
        elif kind == "activityTrigger":
            activity = getattr(trigger, "activity", None) or name
            index.activities[activity] = ActivityInvoker(
                activity,
                user,
                trigger.name,
                executor=executor,
                log=logger,
                directory=directory,
                client_arg=_client_arg(extras),
            )
        elif kind == "timerTrigger":
            index.timers.append(
                TimerFunction(
                    name=name,
                    schedule=str(trigger.schedule),
                    run_on_startup=bool(getattr(trigger, "run_on_startup", False)),
                    use_monitor=getattr(trigger, "use_monitor", None),
                    trigger_arg=trigger.name,
                    client_arg=_client_arg(extras),
                    user_function=user,
                    wants_context="context" in _parameters(user),
                )
            )
        elif kind == "entityTrigger":
            entity = getattr(trigger, "entity_name", None) or name
            index.entities[entity.lower()] = (entity, user)
        else:
            index.unsupported.append(
                UnsupportedFunction(name, kind, f"{kind} functions are not hosted by devhost")
            )
    return index


def timed() -> Callable[[], float]:
    """A stopwatch: call the result to get the seconds since `timed()` was called."""
    start = time.perf_counter()
    return lambda: time.perf_counter() - start
