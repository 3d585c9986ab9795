import httpx
import pytest
from aiohttp import web

from loopserver import BackgroundServer


def make_app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    app = web.Application()
    app.router.add_get("/hello", hello)
    return app


def test_serves_on_a_free_port_and_stops_cleanly():
    server = BackgroundServer(make_app())
    with server:
        assert server.port is not None
        assert server.port > 0
        response = httpx.get(f"{server.url}/hello")
        assert response.json() == {"path": "/hello"}
        url = server.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/hello", timeout=1)
    assert server.port is None


def test_call_runs_a_coroutine_on_the_server_loop():
    async def answer() -> int:
        return 42

    with BackgroundServer(make_app()) as server:
        assert server.call(answer()) == 42
