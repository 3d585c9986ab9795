"""Run an aiohttp application on loopback in a background thread, for the local stand-ins.

simulator/ and devhost/ are servers that tests, benchmarks and the CLI start in-process; each needs
the same thing: its own event loop in its own thread, a free port chosen by the OS, a clean stop
that leaves no task or socket behind. This module is that one piece, so neither stand-in carries
its own copy. The product code never imports it.

    server = BackgroundServer(app, host="127.0.0.1", port=0)
    with server:
        httpx.get(f"{server.url}/health")

A stand-in started as a subprocess needs its port chosen beforehand and a wait until it listens:

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "simulator", "--port", str(port)])
    wait_for_port(port, alive=lambda: process.poll() is None)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

__all__ = ["BackgroundServer", "free_port", "serve_forever", "wait_for_port"]

T = TypeVar("T")


class BackgroundServer:
    """One aiohttp application served from a daemon thread with its own event loop."""

    def __init__(
        self,
        app: web.Application,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 2.0,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._shutdown_timeout = shutdown_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """Base URL such as ``http://127.0.0.1:54321`` (no trailing slash)."""
        if self.port is None:
            raise RuntimeError("the server is not started")
        return f"http://{self._host}:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the server is not started")
        return self._loop

    def start(self) -> BackgroundServer:
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[int] = concurrent.futures.Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                port = loop.run_until_complete(self._serve())
            except BaseException as exc:  # surface start-up failures to the caller's thread
                started.set_exception(exc)
                loop.close()
                return
            started.set_result(port)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"loopserver:{self._port}", daemon=True)
        self._thread.start()
        self.port = started.result(timeout=30)
        return self

    async def _serve(self) -> int:
        self._runner = web.AppRunner(
            self._app, shutdown_timeout=self._shutdown_timeout, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30) -> T:
        """Run a coroutine on the server's loop from another thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        if self._runner is not None:
            self.call(self._runner.cleanup(), timeout=self._shutdown_timeout + 30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None
        self._loop = None
        self._runner = None
        self.port = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_forever(app: web.Application, *, host: str, port: int) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (the ``python -m`` entry points)."""
    web.run_app(app, host=host, port=port, access_log=None, print=None, handle_signals=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (another process could still take it before it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(
    port: int,
    *,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Return once ``host:port`` accepts a TCP connection.

    ``alive``: polled between attempts; when it returns False (the server process exited) the
    wait ends at once with a RuntimeError instead of running out the timeout.
    Raises TimeoutError when nothing listens within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            pass
        if alive is not None and not alive():
            raise RuntimeError(f"the server for {host}:{port} stopped before it listened")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing listened on {host}:{port} within {timeout} s")
        time.sleep(0.05)  # a poll interval between connection attempts, not a wait for an event
