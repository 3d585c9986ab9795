"""The activity functions: thin wrappers that hand the work its outside worlds from ``wiring``."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df
import httpx

import wiring
from activities.attempt import Seams, run_attempt
from activities.finish import finish_job as finish
from orchestrators.image_job import FINISH, GENERATE
from rules.job_records import AttemptInput, FinishInput

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
