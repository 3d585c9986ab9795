"""The aiohttp application that plays the Functions host's HTTP front door.

One catch-all handler dispatches every request, because the host's own literals are matched
case-insensitively and aiohttp's router is not:
- `/runtime/webhooks/durabletask/...`: the Durable management API (master or system key);
- `/durabletask/...`: the same API on the RPC base the client binding names (no key, loopback
  callers only). Like the extension's local RPC listener (127.0.0.1:17071 in the real host), the
  RPC base has a listener of its own on 127.0.0.1 (a port the OS picks), opened and closed with
  the app: the public listener may be bound to any address (`--host 192.168.1.5`, `127.0.0.2`),
  and the client binding must name an address that answers from this machine and only from it.
  The public listener still serves `/durabletask/` to loopback callers;
- `POST /admin/functions/{name}`: run a timer function now (master key), as the host offers;
- `GET /admin/host/status` (master key) and `GET /` (anonymous): is the host up;
- `/{routePrefix}/...`: the app's HTTP functions, with their route templates, methods and auth.

Host behaviour kept: failed auth is 401 with an empty body; no matching route (or method) is 404;
a body over the limit (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, 100 MB) is 413; an unhandled exception
in a function is 500 with an empty body and the traceback in the log. Functions get an
`azure.functions.HttpRequest` and may return `HttpResponse`, `str` or `bytes` as with the worker.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import uuid
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import Any, cast

import azure.functions as func
from aiohttp import web
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter
from multidict import CIMultiDictProxy, MultiDictProxy

from devhost.functions import (
    FunctionIndex,
    HttpFunction,
    InvocationContext,
    TimerFunction,
    UnsupportedFunction,
    call_user_function,
    log_invocation,
    timed,
)
from devhost.keys import HostKeys, presented_key
from devhost.management_api import RPC_PATH, WEBHOOK_PATH, ManagementApi, client_binding
from devhost.routing import RouteTable, RouteTemplate

__all__ = ["DEFAULT_BODY_LIMIT", "HttpHost", "body_limit_from_env", "to_web_response"]

DEFAULT_BODY_LIMIT = 104_857_600
RPC_HOST = "127.0.0.1"
_HOP_HEADERS = {"content-length", "transfer-encoding", "connection"}


def body_limit_from_env(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    text = env.get("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", "")
    if text.strip().isdigit() and int(text) > 0:
        return int(text)
    return DEFAULT_BODY_LIMIT


def _is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped 127.x: every address only this machine can come from."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _joined(headers: CIMultiDictProxy[str] | MultiDictProxy[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in headers:
        if name not in out:
            out[name] = ", ".join(headers.getall(name))
    return out


def to_web_response(result: Any) -> web.Response:
    """Turn what a function returned into the HTTP response the host would send."""
    if isinstance(result, func.HttpResponse):
        headers = {k: v for k, v in result.headers.items() if k.lower() not in _HOP_HEADERS}
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = f"{result.mimetype}; charset={result.charset}"
        return web.Response(status=result.status_code, body=result.get_body(), headers=headers)
    if isinstance(result, str):
        return web.Response(status=200, text=result, content_type="text/plain")
    if isinstance(result, bytes):
        return web.Response(status=200, body=result, content_type="application/octet-stream")
    if result is None:
        return web.Response(status=204)
    raise TypeError(
        f"an HTTP function returned {type(result).__name__}; return HttpResponse, str or bytes"
    )


class HttpHost:
    """Builds the aiohttp app around one indexed function app and its engine's API."""

    def __init__(
        self,
        *,
        index: FunctionIndex,
        keys: HostKeys,
        management: ManagementApi,
        task_hub: str,
        route_prefix: str = "api",
        bind_host: str = "127.0.0.1",
        executor: Executor | None = None,
        body_limit: int = DEFAULT_BODY_LIMIT,
        app_dir: str = "",
        log: logging.Logger | None = None,
    ) -> None:
        self._index = index
        self._keys = keys
        self._management = management
        self._task_hub = task_hub
        self._prefix = route_prefix.strip("/")
        self._bind_host = "127.0.0.1" if bind_host in {"0.0.0.0", "::", ""} else bind_host  # noqa: S104
        self._executor = executor
        self._body_limit = body_limit
        self._app_dir = app_dir
        self._log = log or logging.getLogger("devhost")
        self._background: set[asyncio.Task[None]] = set()
        self.port: int | None = None
        self.rpc_port: int | None = None
        self._rpc_runner: web.AppRunner | None = None
        self._routes: RouteTable[HttpFunction | UnsupportedFunction] = RouteTable()
        for f in index.http:
            self._routes.add(RouteTemplate.parse(f.route), f.methods, f)
        for u in index.unsupported:
            if u.route is not None:
                self._routes.add(RouteTemplate.parse(u.route), u.methods, u)
        self._timers = {t.name.lower(): t for t in index.timers}
        self._all_functions = {n.lower(): n for n in index.function_names()}

    # --- application ----------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self._body_limit)
        # [\s\S], not ".": a decoded path may hold a newline, and the host routes it as well.
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._dispatch)
        app.on_startup.append(self._start_rpc_listener)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._stop_rpc_listener)
        return app

    async def _start_rpc_listener(self, _app: web.Application) -> None:
        # Same event loop as the public listener: the engine and its API live on that loop.
        rpc_app = web.Application(client_max_size=self._body_limit)
        rpc_app.router.add_route("*", "/{tail:.*}", self._dispatch_rpc)
        runner = web.AppRunner(rpc_app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, RPC_HOST, 0)
        await site.start()
        self._rpc_runner = runner
        self.rpc_port = int(runner.addresses[0][1])

    async def _stop_rpc_listener(self, _app: web.Application) -> None:
        runner, self._rpc_runner = self._rpc_runner, None
        self.rpc_port = None
        if runner is not None:
            await runner.cleanup()

    async def _on_shutdown(self, _app: web.Application) -> None:
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def origin(self, port: int | None = None) -> str:
        return f"http://{self._bind_host}:{port or self.port}"

    def rpc_origin(self) -> str:
        if self.rpc_port is None:
            raise RuntimeError("the RPC listener is not open (the app is not started)")
        return f"http://{RPC_HOST}:{self.rpc_port}"

    def client_binding_json(self, port: int | None = None) -> str:
        """The durableClient binding value for a function run by this host."""
        p = port or self.port
        return json.dumps(
            client_binding(
                origin=self.origin(p),
                rpc_base_url=f"{self.rpc_origin()}{RPC_PATH}/",
                task_hub=self._task_hub,
                system_key=self._keys.durable_system_key,
            )
        )

    def _local_port(self, request: web.Request) -> int | None:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        if sockname:
            port = int(sockname[1])
            self.port = self.port or port
            return port
        return self.port

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > self._body_limit:
            return web.Response(status=413)
        raw = request.rel_url.raw_path
        lower = raw.lower()
        for base, public in ((WEBHOOK_PATH, True), (RPC_PATH, False)):
            if lower == base or lower.startswith(base + "/"):
                return await self._management_request(request, raw[len(base) :], public)
        if lower.startswith("/admin/"):
            return await self._admin(request, raw)
        if raw == "/" and request.method in {"GET", "HEAD"}:
            return web.Response(text="devhost: the function app is up and running.")
        return await self._http_function(request)

    async def _dispatch_rpc(self, request: web.Request) -> web.StreamResponse:
        """The RPC listener: the management API under `/durabletask/`, nothing else."""
        if request.content_length is not None and request.content_length > self._body_limit:
            return web.Response(status=413)
        raw = request.rel_url.raw_path
        lower = raw.lower()
        if lower == RPC_PATH or lower.startswith(RPC_PATH + "/"):
            return await self._management_request(request, raw[len(RPC_PATH) :], public=False)
        return web.Response(status=404)

    # --- durable management ---------------------------------------------------------------

    async def _management_request(
        self, request: web.Request, sub_path: str, public: bool
    ) -> web.StreamResponse:
        if public:
            key = presented_key(request.headers, request.query)
            if not self._keys.allows_extension("durabletask", key):
                return web.Response(status=401)
        else:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            if not peer or not _is_loopback(str(peer[0])):
                return web.Response(status=404)
        return await self._management.handle(request, sub_path)

    # --- admin ----------------------------------------------------------------------------

    async def _admin(self, request: web.Request, raw: str) -> web.StreamResponse:
        parts = [p for p in raw.split("/") if p]
        key = presented_key(request.headers, request.query)
        if [p.lower() for p in parts] == ["admin", "host", "status"] and request.method == "GET":
            if not self._keys.is_master(key):
                return web.Response(status=401)
            return web.json_response({"state": "Running", "version": "devhost"})
        if len(parts) != 3 or parts[1].lower() != "functions" or request.method != "POST":
            return web.Response(status=404)
        if not self._keys.is_master(key):
            return web.Response(status=401)
        try:
            body = json.loads((await request.read()) or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.Response(status=400)
        name = parts[2].lower()
        if name not in self._all_functions:
            return web.Response(status=404)
        timer = self._timers.get(name)
        if timer is None:
            return web.Response(
                status=501,
                text=(
                    f"devhost runs only timer functions through /admin/functions; "
                    f"'{self._all_functions[name]}' is not one"
                ),
            )
        payload = json.dumps(
            {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": False}
        )
        self._local_port(request)
        task = asyncio.create_task(self._run_timer_safely(timer, payload))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return web.Response(status=202)

    # --- timer functions ------------------------------------------------------------------

    async def run_timer(self, name: str, payload: str) -> None:
        """Run timer function `name` with a TimerRequest JSON payload (the scheduler's runner)."""
        timer = self._timers[name.lower()]
        await self._run_timer_safely(timer, payload)

    async def _run_timer_safely(self, timer: TimerFunction, payload: str) -> None:
        invocation_id = str(uuid.uuid4())
        elapsed = timed()
        kwargs: dict[str, Any] = {
            timer.trigger_arg: TimerRequestConverter.decode(
                meta.Datum(type="json", value=payload), trigger_metadata=None
            )
        }
        if timer.client_arg:
            kwargs[timer.client_arg] = self.client_binding_json()
        if timer.wants_context:
            kwargs["context"] = InvocationContext(timer.name, invocation_id, self._app_dir)
        outcome = "Succeeded"
        try:
            await call_user_function(timer.user_function, kwargs, self._executor)
        except asyncio.CancelledError:
            raise
        except Exception:
            outcome = "Failed"
            self._log.exception(
                "timer function %s failed (invocation %s)", timer.name, invocation_id
            )
        log_invocation(
            self._log,
            function=timer.name,
            invocation_id=invocation_id,
            instance_id=None,
            duration_s=elapsed(),
            outcome=outcome,
        )

    # --- HTTP functions -------------------------------------------------------------------

    def _function_path(self, request: web.Request) -> str | None:
        path = request.path
        if not self._prefix:
            return path
        head = "/" + self._prefix
        if path.lower() == head.lower():
            return ""
        if path.lower().startswith(head.lower() + "/"):
            return path[len(head) + 1 :]
        return None

    async def _http_function(self, request: web.Request) -> web.StreamResponse:
        path = self._function_path(request)
        if path is None:
            return web.Response(status=404)
        match = self._routes.match(request.method, path)
        if match is None:
            return web.Response(status=404)
        target = match.target
        if isinstance(target, UnsupportedFunction):
            return web.Response(
                status=501,
                text=f"devhost cannot run function '{target.name}': {target.reason}",
            )
        key = presented_key(request.headers, request.query)
        if not self._keys.allows(target.auth_level, key):
            return web.Response(status=401)
        port = self._local_port(request)
        body = await request.read()
        req = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=_joined(request.headers),
            params={k: ",".join(request.query.getall(k)) for k in request.query},
            # Unused optional parameters arrive as None, as the host sends null for them.
            route_params=cast(dict[str, str], dict(match.values)),
            body=body,
        )
        invocation_id = str(uuid.uuid4())
        kwargs: dict[str, Any] = {target.trigger_arg: req}
        if target.client_arg:
            kwargs[target.client_arg] = self.client_binding_json(port)
        if target.wants_context:
            kwargs["context"] = InvocationContext(target.name, invocation_id, self._app_dir)
        elapsed = timed()
        try:
            result = await call_user_function(target.user_function, kwargs, self._executor)
            response = to_web_response(result)
        except Exception:
            self._log.exception(
                "function %s failed (invocation %s): 500 to the caller",
                target.name,
                invocation_id,
            )
            log_invocation(
                self._log,
                function=target.name,
                invocation_id=invocation_id,
                instance_id=None,
                duration_s=elapsed(),
                outcome="Failed",
            )
            return web.Response(status=500)
        log_invocation(
            self._log,
            function=target.name,
            invocation_id=invocation_id,
            instance_id=None,
            duration_s=elapsed(),
            outcome=f"Succeeded ({response.status})",
        )
        return response
