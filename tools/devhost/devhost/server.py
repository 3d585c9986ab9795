"""DevHost: the whole local host in one object, in-process (tests) or behind `python -m devhost`.

    with DevHost("function_app", app_dir="path/to/app", virtual_time=True) as host:
        key = {"x-functions-key": host.function_key}
        httpx.post(f"{host.url}/api/orchestrators/hello", headers=key)

Start-up order, as the host: app settings into the environment (local.settings.json), host.json,
the app imported and indexed once, keys loaded or created under the state directory, the engine
resumes every unfinished orchestration, the HTTP listener opens, then timers start (so a
`run_on_startup` timer that calls the durable client finds the listener up). On stop the app
settings are put back as they were: tests run one DevHost after another in one process.
Without a state directory everything lives in memory and the keys are new on every start.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType, TracebackType

from aiohttp import web
from azure.durable_functions.models.utils import http_utils

from devhost.clock import Clock, SystemClock, VirtualClock
from devhost.engine import Engine
from devhost.entities import EntityFunction
from devhost.functions import FunctionIndex, index_functions, load_app
from devhost.http_host import HttpHost, body_limit_from_env
from devhost.keys import HostKeys, load_or_create_keys
from devhost.management_api import ManagementApi
from devhost.private import private_dir
from devhost.settings import (
    HostConfig,
    LocalSettings,
    apply_local_settings,
    read_host_json,
    resolve_setting,
    restore_local_settings,
)
from devhost.store import Store
from devhost.timers import TimerScheduler
from loopserver import BackgroundServer

__all__ = ["DevHost"]

STORE_FILE = "durable.sqlite"

# One DevHost per process at a time: the SDK's DurableOrchestrationClient keeps one process-wide
# aiohttp session bound to the event loop that first used it, and each DevHost has its own loop.
_running_lock = threading.Lock()
_running: DevHost | None = None


def _worker_threads() -> int:
    # The Python worker's pool: PYTHON_THREADPOOL_THREAD_COUNT, default min(32, cpus + 4).
    text = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "")
    if text.isdigit() and int(text) > 0:
        return int(text)
    return min(32, (os.cpu_count() or 1) + 4)


class DevHost:
    """A running devhost: `.url`, `.master_key`, `.function_key`, `.system_key`."""

    def __init__(
        self,
        app: str = "function_app",
        *,
        app_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: str | Path | None = None,
        virtual_time: bool = False,
        log: logging.Logger | None = None,
    ) -> None:
        self.app = app
        self.app_dir = Path(app_dir) if app_dir is not None else Path.cwd()
        self.host = host
        self.requested_port = port
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.virtual_time = virtual_time
        self.log = log or logging.getLogger("devhost")
        self.config: HostConfig | None = None
        self.index: FunctionIndex | None = None
        self._keys: HostKeys | None = None
        self._server: BackgroundServer | None = None
        self._http_host: HttpHost | None = None
        self._engine: Engine | None = None
        self._store: Store | None = None
        self._timers: TimerScheduler | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._sys_path_entry: str | None = None
        self._previous_module: ModuleType | None = None
        self._module_swapped = False
        self._settings: LocalSettings | None = None

    # --- public state ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("devhost is not started")
        return self._server.url

    @property
    def rpc_url(self) -> str:
        """The loopback listener the durable client binding's `rpcBaseUrl` points at."""
        if self._server is None or self._http_host is None:
            raise RuntimeError("devhost is not started")
        return self._http_host.rpc_origin()

    @property
    def port(self) -> int:
        if self._server is None or self._server.port is None:
            raise RuntimeError("devhost is not started")
        return self._server.port

    @property
    def keys(self) -> HostKeys:
        if self._keys is None:
            raise RuntimeError("devhost is not started")
        return self._keys

    @property
    def master_key(self) -> str:
        return self.keys.master_key

    @property
    def function_key(self) -> str:
        return self.keys.default_function_key

    @property
    def system_key(self) -> str:
        return self.keys.durable_system_key

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("devhost is not started")
        return self._engine

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> DevHost:
        global _running
        if self._server is not None:
            raise RuntimeError("devhost is already started")
        with _running_lock:
            if _running is not None:
                raise RuntimeError(
                    f"another DevHost ({_running.app} from {_running.app_dir}) is running in this "
                    "process; stop it first (the SDK's durable client shares one HTTP session "
                    "per process)"
                )
            _running = self
        try:
            return self._start()
        except BaseException:
            self._close_resources()
            with _running_lock:
                _running = None
            raise

    def _start(self) -> DevHost:
        log = self.log
        settings = apply_local_settings(self.app_dir, log=log)
        self._settings = settings
        if settings.path is not None:
            log.info(
                "app settings from %s: %d applied, %d skipped",
                settings.path,
                len(settings.applied),
                len(settings.skipped),
            )
        config = read_host_json(self.app_dir)
        self.config = config
        if config.function_timeout:
            log.info(
                "host.json functionTimeout %s (not enforced by devhost)", config.function_timeout
            )
        if self.state_dir is not None:
            # Keys and every instance's input live here: the owner's alone (devhost.private).
            private_dir(self.state_dir)
            self._keys, created = load_or_create_keys(self.state_dir)
            if created:
                log.info("created host keys under %s", self.state_dir)
        else:
            self._keys = HostKeys.generate()
        self._executor = ThreadPoolExecutor(
            max_workers=_worker_threads(), thread_name_prefix="devhost-worker"
        )
        # The app module and its directory go into sys.modules/sys.path while the host runs and
        # come out on stop, so an in-process host never shadows another app's function_app.
        app_path = str(self.app_dir.resolve())
        self._sys_path_entry = None if app_path in sys.path else app_path
        self._previous_module = sys.modules.get(self.app)
        self._module_swapped = True
        _module, function_app = load_app(self.app, self.app_dir)
        index = index_functions(
            function_app, executor=self._executor, log=log, directory=str(self.app_dir)
        )
        self.index = index
        for line in index.describe(config.route_prefix):
            log.info("function %s", line)
        for u in index.unsupported:
            log.warning("NOT HOSTED: function %s (%s): %s", u.name, u.trigger, u.reason)

        self._store = Store(self.state_dir / STORE_FILE if self.state_dir else ":memory:")
        clock: Clock = VirtualClock() if self.virtual_time else SystemClock()
        engine = Engine(
            store=self._store,
            orchestrators=index.orchestrators,
            activities=index.activities,
            clock=clock,
            task_hub=config.hub_name,
            max_concurrent_activities=config.max_concurrent_activities,
            log=logging.getLogger("devhost.engine"),
            entities={
                key: EntityFunction(name, handle) for key, (name, handle) in index.entities.items()
            },
            executor=self._executor,
        )
        self._engine = engine
        management = ManagementApi(
            engine,
            task_hub=config.hub_name,
            system_key=self._keys.durable_system_key,
            orchestrators=list(index.orchestrators),
            log=logging.getLogger("devhost.management"),
        )
        http_host = HttpHost(
            index=index,
            keys=self._keys,
            management=management,
            task_hub=config.hub_name,
            route_prefix=config.route_prefix,
            bind_host=self.host,
            executor=self._executor,
            body_limit=body_limit_from_env(),
            app_dir=str(self.app_dir),
            log=log,
        )
        for invoker in index.activities.values():
            if invoker.client_arg:
                invoker.client_json = http_host.client_binding_json
        timers = TimerScheduler(
            http_host.run_timer,
            status_dir=self.state_dir / "timers" if self.state_dir else None,
            log=logging.getLogger("devhost.timers"),
        )
        for t in index.timers:
            timers.add(
                t.name,
                resolve_setting(t.schedule),
                run_on_startup=t.run_on_startup,
                use_monitor=t.use_monitor,
            )
        self._timers = timers

        web_app = http_host.build_app()

        async def start_engine(_app: web.Application) -> None:
            await engine.start()

        async def stop_engine(_app: web.Application) -> None:
            await timers.stop()
            await engine.stop()
            # The SDK's client keeps one module-global aiohttp session bound to this loop.
            await http_utils._close_session()

        web_app.on_startup.append(start_engine)
        web_app.on_cleanup.append(stop_engine)
        server = BackgroundServer(web_app, host=self.host, port=self.requested_port)
        server.start()
        self._server = server
        http_host.port = server.port
        self._http_host = http_host
        server.call(timers.start())
        log.info(
            "devhost listening on %s, durable RPC on %s (task hub %s, state %s, %s time)",
            server.url,
            http_host.rpc_origin(),
            config.hub_name,
            self.state_dir or "in memory",
            "virtual" if self.virtual_time else "wall-clock",
        )
        return self

    def stop(self) -> None:
        global _running
        server, self._server = self._server, None
        self._http_host = None
        try:
            if server is not None:
                if self._timers is not None:
                    server.call(self._timers.stop())
                server.stop()
        finally:
            self._close_resources()
            with _running_lock:
                if _running is self:
                    _running = None

    def _close_resources(self) -> None:
        if self._sys_path_entry is not None and self._sys_path_entry in sys.path:
            sys.path.remove(self._sys_path_entry)
        self._sys_path_entry = None
        if self._module_swapped:
            if self._previous_module is not None:
                sys.modules[self.app] = self._previous_module
            else:
                sys.modules.pop(self.app, None)
        self._module_swapped = False
        self._previous_module = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._store is not None:
            self._store.close()
            self._store = None
        # Last, once nothing of this app runs any more: the environment gets back what
        # local.settings.json replaced, so the next DevHost in this process reads its own app's.
        if self._settings is not None:
            restore_local_settings(self._settings)
            self._settings = None

    def __enter__(self) -> DevHost:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
