"""The simulator's own control API under ``/_sim/``: script faults, read the ledger, reset.

Tests and load runs in other processes use it over HTTP; in-process tests can use
``Simulator.faults`` and ``Simulator.ledger()`` directly. It has no authentication: the simulator
listens on loopback only.

    POST   /_sim/faults   one fault spec or a list -> 201 {"added": [...], "pending": [...]}
    GET    /_sim/faults   -> {"pending": [...]}
    DELETE /_sim/faults   -> {"pending": []}
    GET    /_sim/ledger   [?since=<seq>] -> [entry, ...]
    GET    /_sim/batches  every batch of every route owner, newest first -> [batch, ...]
    POST   /_sim/reset    ledger, faults, rate-limit windows, files and batches cleared
                          -> {"reset": true}
    GET    /_sim/health   -> {"status": "ok", ...}
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from simulator import errors
from simulator.faults import FaultSpec, parse_fault
from simulator.state import SimState

__all__ = ["add_admin_routes"]


def _bad_request(message: str) -> web.Response:
    err = errors.admin_bad_request(message)
    return web.json_response(err.envelope(), status=err.status)


def add_admin_routes(app: web.Application, state: SimState) -> None:
    async def post_faults(request: web.Request) -> web.Response:
        try:
            body: Any = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return _bad_request("the body must be a JSON fault spec or a list of them")
        items = body if isinstance(body, list) else [body]
        specs: list[FaultSpec] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                return _bad_request(f"fault [{index}]: expected an object")
            try:
                specs.append(parse_fault(item))
            except ValueError as exc:
                return _bad_request(f"fault [{index}]: {exc}")
        for spec in specs:
            state.faults.add(spec)
        return web.json_response(
            {"added": [spec.to_dict() for spec in specs], "pending": state.faults.pending()},
            status=201,
        )

    async def get_faults(request: web.Request) -> web.Response:
        return web.json_response({"pending": state.faults.pending()})

    async def delete_faults(request: web.Request) -> web.Response:
        state.faults.clear()
        return web.json_response({"pending": []})

    async def get_ledger(request: web.Request) -> web.Response:
        since_text = request.query.get("since")
        since: int | None = None
        if since_text is not None:
            try:
                since = int(since_text)
            except ValueError:
                return _bad_request(f"since must be an integer sequence number, got {since_text!r}")
        return web.json_response([entry.to_json() for entry in state.ledger.entries(since)])

    async def get_batches(request: web.Request) -> web.Response:
        return web.json_response(state.batches.list_json())

    async def post_reset(request: web.Request) -> web.Response:
        state.reset()
        return web.json_response({"reset": True})

    async def get_health(request: web.Request) -> web.Response:
        config = state.config
        return web.json_response(
            {
                "status": "ok",
                "time_scale": config.time_scale,
                "deployments": [d.name for d in config.deployments],
                "models": list(config.models),
                "generations_running": len(state.upstream),
                "faults_pending": len(state.faults.pending()),
                "batches_running": state.batches.running(),
            }
        )

    app.router.add_post("/_sim/faults", post_faults)
    app.router.add_get("/_sim/faults", get_faults)
    app.router.add_delete("/_sim/faults", delete_faults)
    app.router.add_get("/_sim/ledger", get_ledger)
    app.router.add_get("/_sim/batches", get_batches)
    app.router.add_post("/_sim/reset", post_reset)
    app.router.add_get("/_sim/health", get_health)
