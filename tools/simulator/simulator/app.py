"""The aiohttp application: every route owner's image routes, the admin API, real 404s.

    app = build_app(SimState(SimulatorConfig()))

Routes (see docs/simulator.md):
- OpenAI:          POST /v1/images/generations, /v1/images/edits
- Azure:           POST /openai/deployments/{deployment}/images/generations?api-version=...
                   POST /openai/deployments/{deployment}/images/edits?api-version=...
- Azure v1:        POST /openai/v1/images/generations, /openai/v1/images/edits (model = deployment)
- Files and Batch API (``batch_routes``): /v1/files..., /v1/batches...; Azure: the same under
                   /openai/ (with api-version) and /openai/v1/
- Simulator admin: /_sim/...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from simulator import errors
from simulator.admin import add_admin_routes
from simulator.batch_routes import add_batch_routes
from simulator.errors import ApiError
from simulator.handlers import image_handler
from simulator.state import SimState

__all__ = ["build_app"]

# Prompts are at most 32,000 characters; multipart edits are read as a stream, not held.
CLIENT_MAX_SIZE = 8 * 2**20

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _not_found(request: web.Request) -> ApiError:
    """What each service answers for a path it does not have."""
    if request.path.startswith("/openai/"):
        return errors.azure_resource_not_found()
    return errors.invalid_url(request.method, request.path)


@web.middleware
async def _json_not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        if request.path.startswith("/_sim/"):
            raise
        err = _not_found(request)
        return web.json_response(err.envelope(), status=err.status)


def build_app(state: SimState) -> web.Application:
    app = web.Application(client_max_size=CLIENT_MAX_SIZE, middlewares=[_json_not_found])
    for endpoint in ("generations", "edits"):
        app.router.add_post(f"/v1/images/{endpoint}", image_handler(state, "openai", endpoint))
        app.router.add_post(
            f"/openai/deployments/{{deployment}}/images/{endpoint}",
            image_handler(state, "azure", endpoint),
        )
        app.router.add_post(
            f"/openai/v1/images/{endpoint}", image_handler(state, "azure_v1", endpoint)
        )
    add_batch_routes(app, state)
    add_admin_routes(app, state)

    async def close_state(app: web.Application) -> None:
        for task in list(state.upstream):
            task.cancel()
        state.batches.stop_all()
        state.close()

    app.on_cleanup.append(close_state)
    return app
