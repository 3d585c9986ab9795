"""The activity functions: thin wrappers that hand the work its outside worlds from ``wiring``."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import azure.durable_functions as df
import httpx

import wiring
from activities import batch_api, batch_items, webhooks
from activities.attempt import Seams, run_attempt
from activities.finish import finish_job as finish
from orchestrators.batch_api_flow import (
    API_ABANDON,
    API_CANCEL,
    API_COLLECT_CHUNK,
    API_COLLECT_END,
    API_POLL,
    API_SUBMIT,
)
from orchestrators.image_batch import READ_WAVE, REPORT, RESULTS, SPLIT
from orchestrators.image_job import FINISH, GENERATE
from orchestrators.webhook_delivery import DELIVER as DELIVER_WEBHOOK
from orchestrators.webhook_delivery import ORCHESTRATOR as WEBHOOK_ORCHESTRATOR
from orchestrators.webhook_delivery import START as START_WEBHOOK
from orchestrators.webhook_delivery import delivery_instance_id
from rules.batch_records import BatchApiCall, BatchInput, CollectChunk, CollectEnd, WaveItem
from rules.job_records import AttemptInput, FinishInput, Outcome
from rules.webhooks import WebhookDelivery

bp = df.Blueprint()


@bp.activity_trigger(input_name="job", activity=GENERATE)
async def generate_image(job: dict[str, Any]) -> dict[str, Any]:
    attempt = AttemptInput.from_json(job)
    settings = wiring.settings()
    route = settings.route(attempt.request.route)
    # One client per attempt: an attempt lasts seconds to minutes, so pooling saves little, and
    # a client never outlives the event loop it was made on.
    async with httpx.AsyncClient(verify=wiring.ssl_context()) as client:
        seams = Seams(client=client, store=wiring.store(), auth=lambda: wiring.auth_header(route))
        result = await run_attempt(attempt, settings, seams)
    return result.to_json()


@bp.activity_trigger(input_name="job", activity=FINISH)
def finish_job(job: dict[str, Any]) -> dict[str, Any]:
    return finish(FinishInput.from_json(job), wiring.settings(), wiring.store())


@bp.activity_trigger(input_name="delivery", activity=START_WEBHOOK)
@bp.durable_client_input(client_name="client")
async def start_webhook_delivery(
    delivery: dict[str, Any], client: df.DurableOrchestrationClient
) -> dict[str, Any]:
    """Start the event's delivery orchestration once: a re-run of this activity (they run at
    least once) finds it started, and never starts it again (the host would overwrite a
    finished instance, delivering the event anew)."""
    said = WebhookDelivery.from_json(delivery)
    instance = delivery_instance_id(said.job_id)
    status = await client.get_status(instance)
    if status and status.runtime_status is not None:
        return {"instance": instance, "started": False}
    # The retry schedule is frozen into the delivery's input here (an activity may read the
    # settings; the delivery orchestration must not decide by the settings of the moment).
    hooks = wiring.settings().webhooks
    frozen = replace(said, schedule=said.schedule_by(hooks))
    await client.start_new(WEBHOOK_ORCHESTRATOR, instance, frozen.to_json())
    return {"instance": instance, "started": True}


@bp.activity_trigger(input_name="delivery", activity=DELIVER_WEBHOOK)
def deliver_webhook(delivery: dict[str, Any]) -> dict[str, Any]:
    hooks = wiring.settings().webhooks
    with webhooks.webhook_client(hooks, wiring.ssl_context()) as client:
        seams = webhooks.Seams(client=client, store=wiring.store())
        return webhooks.deliver(WebhookDelivery.from_json(delivery), hooks, seams).to_json()


@bp.activity_trigger(input_name="batch", activity=SPLIT)
def split_batch(batch: dict[str, Any]) -> dict[str, Any]:
    job = BatchInput.from_json(batch)
    return batch_items.split_manifest(
        wiring.batch_store(),
        batch_id=job.batch_id,
        manifest=job.manifest,
        caller=job.caller,
        created_at=datetime.fromisoformat(job.created_at),
        settings=wiring.settings(),
    ).to_json()


@bp.activity_trigger(input_name="wave", activity=READ_WAVE)
def read_batch_wave(wave: dict[str, Any]) -> list[dict[str, Any]]:
    items = batch_items.read_wave(wiring.batch_store(), wave["batch_id"], int(wave["wave"]))
    return [item.to_json() for item in items]


@bp.activity_trigger(input_name="results", activity=RESULTS)
def write_batch_results(results: dict[str, Any]) -> dict[str, Any]:
    store, batch_id = wiring.batch_store(), results["batch_id"]
    lines = [
        batch_items.item_result(
            WaveItem.from_json(entry["item"]),
            Outcome.from_json(entry["outcome"]) if entry["outcome"] else None,
        )
        for entry in results["results"]
    ]
    for wave in results.get("unread_waves", []):  # a cancelled batch's items never started
        lines += [
            batch_items.item_result(item, None)
            for item in batch_items.read_wave(store, batch_id, wave)
        ]
    batch_items.write_results(store, batch_id, int(results["execution"]), lines)
    return {"written": len(lines)}


@bp.activity_trigger(input_name="report", activity=REPORT)
def write_batch_report(report: dict[str, Any]) -> dict[str, Any]:
    written = batch_items.write_report(
        wiring.batch_store(), report["batch_id"], int(report["executions"])
    )
    return written.to_json()


def _batch_api(route_name: str, client: httpx.Client) -> batch_api.BatchApi:
    route = wiring.settings().route(route_name)
    return batch_api.BatchApi(route, lambda: wiring.auth_header(route), client)


@bp.activity_trigger(input_name="call", activity=API_SUBMIT)
def batch_api_submit(call: dict[str, Any]) -> dict[str, Any]:
    said = BatchApiCall.from_json(call)
    with httpx.Client(verify=wiring.ssl_context()) as client:
        upstream = batch_api.submit(
            _batch_api(said.route, client),
            wiring.batch_store(),
            batch_id=said.batch_id,
            waves=said.waves,
        )
    return upstream.to_json()


def _upstream(said: BatchApiCall) -> str:
    if said.upstream is None:
        raise ValueError(f"batch {said.batch_id}: no upstream batch named")
    return said.upstream


@bp.activity_trigger(input_name="call", activity=API_POLL)
def batch_api_poll(call: dict[str, Any]) -> dict[str, Any]:
    said = BatchApiCall.from_json(call)
    with httpx.Client(verify=wiring.ssl_context()) as client:
        return batch_api.poll(_batch_api(said.route, client), _upstream(said)).to_json()


@bp.activity_trigger(input_name="call", activity=API_CANCEL)
def batch_api_cancel(call: dict[str, Any]) -> dict[str, Any]:
    said = BatchApiCall.from_json(call)
    with httpx.Client(verify=wiring.ssl_context()) as client:
        return batch_api.cancel(_batch_api(said.route, client), _upstream(said)).to_json()


@bp.activity_trigger(input_name="call", activity=API_ABANDON)
def batch_api_abandon(call: dict[str, Any]) -> dict[str, Any]:
    said = BatchApiCall.from_json(call)
    with httpx.Client(verify=wiring.ssl_context()) as client:
        ended = batch_api.cancel_for_failure(
            _batch_api(said.route, client), wiring.batch_store(), said
        )
    return {"upstream": ended.to_json() if ended is not None else None}


@bp.activity_trigger(input_name="chunk", activity=API_COLLECT_CHUNK)
def batch_api_collect_chunk(chunk: dict[str, Any]) -> dict[str, Any]:
    said = CollectChunk.from_json(chunk)
    with httpx.Client(verify=wiring.ssl_context()) as client:
        return batch_api.collect_chunk(
            _batch_api(said.call.route, client),
            wiring.batch_store(),
            wiring.store(),
            said,
            wiring.settings(),
        ).to_json()


@bp.activity_trigger(input_name="end", activity=API_COLLECT_END)
def batch_api_collect_end(end: dict[str, Any]) -> dict[str, Any]:
    counted = batch_api.collect_end(
        wiring.batch_store(), wiring.store(), CollectEnd.from_json(end), wiring.settings()
    )
    return {"items": counted}
