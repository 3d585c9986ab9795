"""The activity functions: thin wrappers that hand the work its outside worlds from ``wiring``."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

import wiring
from activities.finish import finish_job as finish
from activities.generate import AttemptInput, Seams, run_attempt
from orchestrators.image_job import FINISH, GENERATE

bp = df.Blueprint()


@bp.activity_trigger(input_name="job", activity=GENERATE)
def generate_image(job: dict[str, Any]) -> dict[str, Any]:
    attempt = AttemptInput.from_json(job)
    route = wiring.settings().route(attempt.request.route)
    seams = Seams(
        client=wiring.http_client(), store=wiring.store(), auth=lambda: wiring.auth_header(route)
    )
    return run_attempt(attempt, wiring.settings(), seams).to_json()


@bp.activity_trigger(input_name="job", activity=FINISH)
def finish_job(job: dict[str, Any]) -> dict[str, Any]:
    return finish(job, wiring.settings(), wiring.store())
