"""The HTTP routes of the image job API: each hands its request to a handler with the app's
outside worlds and answers every failure through the one mapping (http_api.errors)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import azure.durable_functions as df
import azure.functions as func

import wiring
from http_api import (
    batches,
    client_timings,
    evidence,
    handlers,
    openapi,
    uploads,
    web_page,
    webhooks,
)
from http_api.durable_jobs import DurableJobs
from http_api.errors import answer_for, blob_timed, blob_wait
from rules.settings import AppSettings
from storage.protocol import AsyncImageStore

bp = df.Blueprint()
CATCH_ALL = "zz_unmatched_request"

Handler = Callable[
    [func.HttpRequest, DurableJobs, AppSettings, AsyncImageStore], Awaitable[func.HttpResponse]
]
# How long a request waits for the worker's Blob client (seconds): its first use on a worker
# makes sure the container exists, a network call that would otherwise hang while Blob does.
EDGE_STORE_S = 10.0


async def edge_store() -> AsyncImageStore:
    """The worker's Blob store for the edge, its calls known as Blob's (``blob_timed``); a
    first use that does not finish within ``EDGE_STORE_S`` is a ``blob_timeout`` (a 503)."""
    async with asyncio.timeout(EDGE_STORE_S):
        with blob_wait():
            found = await wiring.edge_store()
    return blob_timed(found)


async def answer(
    handler: Handler, req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    try:
        store = await edge_store()
        return await handler(req, DurableJobs(client), wiring.settings(), store)
    except Exception as exc:
        return answer_for(exc)


@bp.route(route="images", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def start_image_job(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await answer(handlers.start_job, req, client)


@bp.route(route="images", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def list_image_jobs(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await answer(handlers.list_jobs, req, client)


@bp.route(route="images/{id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_image_job(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await answer(handlers.get_job, req, client)


@bp.route(route="images/{id}/evidence", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_image_job_evidence(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await answer(evidence.get_evidence, req, client)


@bp.route(route="images/{id}/cancel", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def cancel_image_job(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await answer(handlers.cancel_job, req, client)


@bp.route(route="images/{id}/client-timings", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def report_client_timings(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await answer(client_timings.report, req, client)


@bp.route(route="routes", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def list_routes(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await answer(handlers.list_routes, req, client)


@bp.route(route="batches", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def start_batch(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await answer(batches.start_batch, req, client)


@bp.route(route="batches/{id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_batch(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await answer(batches.get_batch, req, client)


@bp.route(route="batches/{id}/cancel", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def cancel_batch(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await answer(batches.cancel_batch, req, client)


@bp.route(route="uploads", methods=["POST"])
async def create_upload(req: func.HttpRequest) -> func.HttpResponse:
    try:
        store = await edge_store()
        return await uploads.create_upload(req, wiring.settings(), store)
    except Exception as exc:
        return answer_for(exc)


# The web page and its files: anonymous, since it holds nothing secret and a key in the page's
# URL would end up in history and logs; it asks for the key and sends it with each API call.
@bp.route(route="ui/{file?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def serve_web_page(req: func.HttpRequest) -> func.HttpResponse:
    try:
        return web_page.serve(req, wiring.link_origin())
    except Exception as exc:
        return answer_for(exc)


@bp.route(route="webhook-secret", methods=["GET"])
async def get_webhook_secret(req: func.HttpRequest) -> func.HttpResponse:
    try:
        return await webhooks.webhook_secret(req, wiring.settings())
    except Exception as exc:
        return answer_for(exc)


# Anonymous: the document names nothing of a deployment or a caller, and clients and tools
# read it before they hold a key (http_api.openapi).
@bp.route(route=openapi.ROUTE, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    try:
        return await openapi.serve(req)
    except Exception as exc:
        return answer_for(exc)


# A catch-all: what no route above takes gets a JSON 404 or 405 instead of the host's empty
# answer. Anonymous, so an unknown path says "no such route" to anyone alike. The host orders
# routes of equal standing by function name (azure-functions-host #9876), so this one's name
# sorts after every other function's: tests/app/test_http_routes.py keeps it so.
@bp.function_name(CATCH_ALL)
@bp.route(
    route="{*path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
    auth_level=func.AuthLevel.ANONYMOUS,
)
async def unmatched_request(req: func.HttpRequest) -> func.HttpResponse:
    try:
        return await handlers.unmatched(req)
    except Exception as exc:
        return answer_for(exc)
