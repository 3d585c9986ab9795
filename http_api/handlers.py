"""The three handlers of the image job API, as plain async functions of their outside worlds
(the request, the durable job store, settings, Blob), so tests call them with hand-written fakes.

They raise; http_api.errors.answer_for turns every failure into an answer (http_api.blueprint
wires both). Validation comes first and costs nothing: a request the model would refuse is a
400 naming the field before any look at the store, and a path id that is not a job id is a 404
before any look.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from urllib.parse import urlencode

import azure.functions as func

from http_api.answers import json_answer, status_url
from http_api.caller import caller_of, has_own_identity
from http_api.durable_jobs import DurableJobs, JobInstance
from http_api.errors import (
    IdentityRequired,
    JobNotFound,
    MethodNotAllowed,
    NoSuchRoute,
    StoreUnavailable,
    blob_call,
    blob_failure,
)
from http_api.inputs import MULTIPART, Parts, is_multipart, multipart_body, with_inputs
from http_api.job_ids import JobIds
from http_api.request_reading import (
    Clock,
    bool_param,
    check_json_type,
    check_query,
    json_body,
    path_job_id,
    utc_now,
)
from http_api.status_view import (
    MAX_RETRY_AFTER_S,
    JobView,
    changed,
    current_state,
    ended_answer,
    may_end_now,
    read_ended,
    read_job,
    read_progress,
    retry_after_s,
    status_answer,
)
from http_api.webhooks import deliveries, purged_deliveries
from orchestrators.image_job import CANCEL_EVENT, ORCHESTRATOR
from rules import route_model
from rules.dedup import caller_digest, check_key, fingerprint, job_id_for
from rules.errors import RequestInvalid
from rules.failover import decided_for
from rules.job_records import TERMINAL_STATES, CancelMarker, JobInput, JobState
from rules.models import rules_for
from rules.records import RecordUnreadable
from rules.request import parse_failover, parse_job_request, parse_priority
from rules.route_stats import attempt_shape
from rules.send_plan import FIRST_PARTIAL_FRACTION, plans, too_slow
from rules.settings import AppSettings
from rules.status import RUNNING_STATUSES
from rules.timing import epoch_iso, epoch_ms, iso_utc
from rules.webhooks import WebhookTarget, parse_webhook_url
from storage.protocol import (
    JSON,
    AsyncImageStore,
    PageTokenInvalid,
    caller_index_prefix,
    cancel_name,
    index_created_ms,
    job_of_index_name,
)

log = logging.getLogger("imagejobs.http")

# How long a status poll waits for the job store and Blob before answering 503 (seconds).
STATUS_READ_S = 5.0
# How often a held poll re-reads the job (seconds).
HOLD_POLL_S = 0.1


async def start_job(
    req: func.HttpRequest,
    jobs: DurableJobs,
    settings: AppSettings,
    store: AsyncImageStore,
    now: Clock = utc_now,
) -> func.HttpResponse:
    """POST /api/images: 202 with the job's id, Location and Retry-After; a duplicate submit
    gets the existing job (``Idempotent-Replayed: true``)."""
    check_query(req)
    body: object
    parts: Parts | None = None
    if is_multipart(req):  # an edit's input images as file parts (http_api.inputs)
        body, parts = multipart_body(req)
    else:
        check_json_type(
            req,
            accepts=(JSON, MULTIPART),
            note="multipart/form-data for an edit's input images",
        )
        body = json_body(req)
    request = parse_job_request(body, settings)
    webhook_url = parse_webhook_url(body, settings.webhooks)
    raw_key = req.headers.get("idempotency-key")
    key = check_key(raw_key) if raw_key is not None else None
    caller = caller_of(req, settings)
    if isinstance(body, dict):  # an edit: its inputs checked and stored, the request by hash
        digest = caller_digest(settings.job_id_secret, caller)
        request = await with_inputs(request, body, parts, settings, store, digest)
    # Refused before anything is stored or started: it would be cut off every time, billed.
    if (slow := too_slow(request, settings)) is not None:
        raise slow
    request_fingerprint = fingerprint(request, webhook_url)
    planned = plans(request, settings)
    job = JobInput(
        request=request,
        send=planned.first,
        send_after_gateway_kill=planned.after_gateway_kill,
        send_after_read_idle=planned.after_read_idle,
        policy=settings.retry,
        caller=caller_digest(settings.job_id_secret, caller),
        fingerprint=request_fingerprint,
        created_at=iso_utc(now()),
        priority=parse_priority(body),
        failover=parse_failover(body),
        webhook=_webhook_target(req, webhook_url, settings),
        decided=decided_for(request, parse_failover(body), settings),
    )
    ids = JobIds(
        jobs,
        store,
        lambda generation: job_id_for(
            settings.job_id_secret, caller, key, request_fingerprint, generation
        ),
        idempotency_window_s=settings.idempotency_window_s if key is not None else None,
        now=now,
    )
    async with asyncio.timeout(settings.timeouts.http_starter_s):
        allocation = await ids.allocate(ORCHESTRATOR, job)
    if allocation.replayed:
        log.info("image job %s returned again for a duplicate submit", allocation.job_id)
    else:
        log.info("image job %s started on route %s", allocation.job_id, request.route)
    url = status_url(req, allocation.job_id, settings.public_base_url)
    wait = settings.status_retry_after_s
    if not allocation.replayed:  # a new job: the earliest its image may be there, by calibration
        shape = attempt_shape(
            request,
            stream=job.send.stream,
            partial_images=job.send.partial_images,
            settings=settings,
            first_partial_share=FIRST_PARTIAL_FRACTION,
        )
        wait = int(min(MAX_RETRY_AFTER_S, max(1, shape.calibrated.early_s)))
    headers = {"Location": url, "Retry-After": str(wait)}
    if allocation.replayed:
        headers["Idempotent-Replayed"] = "true"
    answer: dict[str, object] = {
        "id": allocation.job_id,
        "state": allocation.state.value,
        "statusUrl": url,
    }
    if job.send.notes:
        answer["notes"] = list(job.send.notes)
    return json_answer(answer, 202, headers=headers)


def _webhook_target(
    req: func.HttpRequest, url: str | None, settings: AppSettings
) -> WebhookTarget | None:
    """The job's webhook, with the base of the status URL the event carries: built as
    ``statusUrl`` is, but never with ``?code=`` (a function key does not travel to a webhook)."""
    if url is None:
        return None
    keyless = func.HttpRequest(method=req.method, url=str(req.url), body=b"", params={})
    images = status_url(keyless, "x", settings.public_base_url).removesuffix("/x")
    return WebhookTarget(url=url, status_base=images)


async def get_job(
    req: func.HttpRequest,
    jobs: DurableJobs,
    settings: AppSettings,
    store: AsyncImageStore,
    now: Clock = utc_now,
) -> func.HttpResponse:
    """GET /api/images/{id}: 202 with Retry-After while the job runs, 200 once it has ended."""
    check_query(req, "includePrompt")
    include_prompt = bool_param(req, "includePrompt")
    job_id = path_job_id(req)
    caller = caller_digest(settings.job_id_secret, caller_of(req, settings))
    # A poll answers promptly: storage that does not answer within this is a 503, not a hang.
    # The hold ends a second before the read limit, and answers with what it last read if
    # storage slows down meanwhile: a held poll never becomes a 503 of its own.
    hold_until = asyncio.get_running_loop().time() + STATUS_READ_S - 1
    async with asyncio.timeout(STATUS_READ_S):
        try:
            view = await read_job(jobs, store, job_id, caller)
            view = await _held(view, jobs, store, caller, settings, now, hold_until)
        except JobNotFound:
            # Its durable history may be purged while its record stays (a key's record still
            # names it): the finished job answers its caller from metadata.json.
            ended = await read_ended(store, job_id, caller)
            link = _linker(store, settings)
            if store.links_are_local:
                purged = ended_answer(ended, link)
            else:
                purged = await asyncio.to_thread(ended_answer, ended, link)
            # The same fields as a live answer: the deliveries, where a record of them is left.
            purged["webhooks"] = await purged_deliveries(store, job_id)
            return json_answer(purged, 200)
    link = _linker(store, settings)
    if store.links_are_local:
        answer = status_answer(view, link, include_prompt=include_prompt)
    else:  # a user-delegation key may need fetching (a network call): off the event loop
        answer = await asyncio.to_thread(status_answer, view, link, include_prompt=include_prompt)
    running = JobState(answer["state"]) not in TERMINAL_STATES
    job = view.instance.job
    answer["webhooks"] = None  # no webhook; else its deliveries, once the job has ended
    if job.webhook is not None:
        async with asyncio.timeout(STATUS_READ_S):
            over = view.instance.output is not None
            answer["webhooks"] = await deliveries(store, job_id, job.created_at) if over else []
    wait = retry_after_s(view, now(), default_s=settings.status_retry_after_s)
    headers = {"Retry-After": str(wait)} if running else {}
    return json_answer(answer, 202 if running else 200, headers=headers)


async def list_routes(
    req: func.HttpRequest,
    jobs: DurableJobs,
    settings: AppSettings,
    store: AsyncImageStore,
    now: Clock = utc_now,
) -> func.HttpResponse:
    """GET /api/routes: each route's health as its shared model knows it (success rate, latency
    percentiles per shape class, errors by kind, pace, cool-down, queued and running)."""
    check_query(req)
    names = sorted(settings.routes)
    async with asyncio.timeout(STATUS_READ_S):
        states = await asyncio.gather(*(jobs.route_state(name) for name in names))
    moment = now()
    stamp = moment.timestamp()
    routes = []
    for name, state in zip(names, states, strict=True):
        route = settings.route(name)
        answer = route_model.health(name, state, settings.pace(name), stamp).to_json(epoch_iso)
        answer.update(
            owner=route.owner,
            model=route.model,
            failoverTo=route.failover_to,
            default=name == settings.default_route,
            # What the route takes as output_format (the web page offers only these).
            outputFormats=sorted(rules_for(route.model).formats_for(route.owner)),
        )
        routes.append(answer)
    return json_answer({"asOf": iso_utc(moment), "routes": routes}, 200)


async def _held(
    view: JobView,
    jobs: DurableJobs,
    store: AsyncImageStore,
    caller: str,
    settings: AppSettings,
    now: Clock,
    until: float,
) -> JobView:
    """A poll that comes when the image may be stored any moment is held (up to
    IMAGE_STATUS_HOLD_S, and never past ``until`` on the loop's clock; re-read every
    HOLD_POLL_S) until the job shows something new: a client that honours Retry-After, whose
    whole seconds bring it back at most a second apart, then learns of the image within a
    re-read of its storing. A re-read that cannot finish by ``until`` answers with the view
    before it."""
    hold_s = settings.status_hold_s
    if hold_s <= 0 or not may_end_now(view, now()):
        return view
    loop = asyncio.get_running_loop()
    deadline = min(loop.time() + hold_s, until)
    while loop.time() + HOLD_POLL_S < deadline:
        await asyncio.sleep(HOLD_POLL_S)
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                latest = await read_job(jobs, store, view.instance.instance_id, caller)
        except TimeoutError:
            return view
        if changed(view, latest):
            return latest
        view = latest
    return view


MAX_PAGE = 100
MAX_PAGE_TOKEN_CHARS = 1024


async def list_jobs(
    req: func.HttpRequest, jobs: DurableJobs, settings: AppSettings, store: AsyncImageStore
) -> func.HttpResponse:
    """GET /api/images?limit=N&after=TOKEN: the caller's jobs, newest first, a page at a time
    (``limit`` 1-100, default 20), each with its state; ``next`` is the next page's URL."""
    check_query(req, "limit", "after")
    caller = caller_digest(settings.job_id_secret, caller_of(req, settings))
    if not (has_own_identity(req, settings) or settings.shared_caller_may_list):
        raise IdentityRequired
    limit = _limit(req.params.get("limit"))
    given = req.params.get("after")
    after = None if given is None else _page_marker(settings.job_id_secret, caller, given)
    async with asyncio.timeout(STATUS_READ_S):
        names, marker = await _list_page(store, caller_index_prefix(caller), limit, after)
        instances = await asyncio.gather(*(jobs.look(job_of_index_name(n)) for n in names))
        listed = [
            instance
            for name, instance in zip(names, instances, strict=True)
            # Purged or never started; or left by a start that lost a race to this job's own.
            if instance is not None
            and instance.job.caller == caller
            and index_created_ms(name) == epoch_ms(instance.job.created_at)
        ]
        states = await asyncio.gather(*(current_state(store, i) for i in listed))
    items = []
    for instance, state in zip(listed, states, strict=True):
        items.append(
            {
                "id": instance.instance_id,
                "state": state.value,
                "createdAt": instance.created_iso,
                "statusUrl": status_url(req, instance.instance_id, settings.public_base_url),
            }
        )
    answer: dict[str, object] = {"items": items, "next": None}
    if marker:
        token = _page_token(settings.job_id_secret, caller, marker)
        answer["next"] = _page_url(req, settings, limit, token)
    return json_answer(answer, 200)


# A page token is the store's continuation marker (Azure Blob's is opaque, Azurite's a blob
# name) sealed with an HMAC of the caller's digest and the marker: so a token this list never
# handed out, or another caller's, is a 400 here before any Blob call, whatever the store would
# make of it (Azurite lists from any text as a name, and answers an empty page for garbage).
_TOKEN_PREFIX = "p1."  # noqa: S105 - a format's version, not a secret
_TOKEN_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _page_mac(secret: bytes, caller: str, marker: str) -> bytes:
    message = f"page\n{caller}\n{marker}".encode()
    return hmac.new(secret, message, hashlib.sha256).digest()[:_TOKEN_MAC_BYTES]


def _page_token(secret: bytes, caller: str, marker: str) -> str:
    """The ``after`` token of the page that starts at the store's ``marker``, for ``caller``."""
    return f"{_TOKEN_PREFIX}{_b64(_page_mac(secret, caller, marker))}.{_b64(marker.encode())}"


def _page_marker(secret: bytes, caller: str, token: str) -> str:
    """The store's marker inside a token this list handed ``caller``; RequestInvalid for any
    other text (garbage, too long, changed, another caller's)."""
    refused = RequestInvalid("after", "invalid_value", "not a page token of this list")
    if len(token) > MAX_PAGE_TOKEN_CHARS or not token.startswith(_TOKEN_PREFIX):
        raise refused
    mac_part, _, marker_part = token.removeprefix(_TOKEN_PREFIX).partition(".")
    try:
        mac = base64.urlsafe_b64decode(mac_part + "=" * (-len(mac_part) % 4))
        marker = base64.urlsafe_b64decode(marker_part + "=" * (-len(marker_part) % 4)).decode()
    except (binascii.Error, ValueError):
        raise refused from None
    if not marker or not hmac.compare_digest(mac, _page_mac(secret, caller, marker)):
        raise refused
    return marker


async def _list_page(
    store: AsyncImageStore, prefix: str, limit: int, after: str | None
) -> tuple[list[str], str | None]:
    try:
        return await store.list_page(prefix=prefix, limit=limit, after=after)
    except PageTokenInvalid:
        raise RequestInvalid("after", "invalid_value", "not a page token of this list") from None
    except Exception as exc:
        raise blob_failure(exc) from exc


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return 20
    if not (raw.isascii() and raw.isdecimal()) or not 1 <= int(raw) <= MAX_PAGE:
        raise RequestInvalid("limit", "invalid_value", f"limit must be 1 to {MAX_PAGE}")
    return int(raw)


def _page_url(req: func.HttpRequest, settings: AppSettings, limit: int, token: str) -> str:
    base = status_url(req, "x", settings.public_base_url).split("?", 1)[0].rsplit("/", 1)[0]
    query = {"limit": str(limit), "after": token}
    if req.params.get("code"):
        query["code"] = req.params["code"]
    return f"{base}?{urlencode(query)}"


async def cancel_job(
    req: func.HttpRequest,
    jobs: DurableJobs,
    settings: AppSettings,
    store: AsyncImageStore,
    now: Clock = utc_now,
) -> func.HttpResponse:
    """POST /api/images/{id}/cancel: 202 (``cancelling``) or 200 with the job's final state."""
    check_query(req)
    job_id = path_job_id(req)
    caller = caller_digest(settings.job_id_secret, caller_of(req, settings))
    async with asyncio.timeout(settings.timeouts.http_starter_s):
        instance = await jobs.look(job_id)
        if instance is None or instance.job.caller != caller:
            raise JobNotFound(job_id)
        before_send: bool | None = None
        if instance.runtime_status in RUNNING_STATUSES:
            instance, before_send = await _request_cancel(jobs, store, instance, now)
    state = await current_state(store, instance)
    if instance.runtime_status in RUNNING_STATUSES and state not in (
        *TERMINAL_STATES,
        JobState.FINALIZING,
    ):
        state = JobState.CANCELLING
    url = status_url(req, job_id, settings.public_base_url)
    answer: dict[str, object] = {"id": job_id, "state": state.value, "statusUrl": url}
    if state in TERMINAL_STATES:
        return json_answer(answer, 200)
    if before_send is not None:
        answer["beforeSend"] = before_send
    return json_answer(answer, 202, headers={"Location": url})


async def _request_cancel(
    jobs: DurableJobs, store: AsyncImageStore, instance: JobInstance, now: Clock
) -> tuple[JobInstance, bool | None]:
    """The marker first: the running attempt watches it and closes its stream; then the event,
    which wakes the orchestrator wherever it waits (queued, generating, waiting to retry).

    Returns the instance as it is after the event, and whether the cancel came before the
    current attempt's send (None: cannot tell). The attempt writes its sent mark, then reads the
    marker, then sends; here the marker is written, then the sent mark read. So when no sent
    mark is seen, the attempt will see the marker and never reach the route.
    """
    job_id = instance.instance_id
    marker = CancelMarker(requested_at=iso_utc(now()), job_created_at=instance.job.created_at)
    data = json.dumps(marker.to_json()).encode()
    with blob_call(job_id=job_id):
        await store.put(name=cancel_name(job_id), data=data, content_type=JSON)
    before_send = await _before_send(jobs, store, instance)
    if await jobs.raise_event(job_id, CANCEL_EVENT):
        return instance, before_send
    # Fine only if it ended between our look and the event: its own end stands.
    after = await jobs.look(job_id)
    if after is None or after.runtime_status in RUNNING_STATUSES:
        raise StoreUnavailable("the cancel event was refused", job_id=job_id)
    return after, None


async def _before_send(
    jobs: DurableJobs, store: AsyncImageStore, instance: JobInstance
) -> bool | None:
    """Whether no attempt of the job had written its sent mark when the marker was in place.

    Read after the marker write, from a fresh look: the attempt the job is at now, and the next
    one (a retry's timer may have just fired). Any attempt with its mark, or a record that cannot
    be read, means a request may be at the route (False); None when the store cannot tell.
    """
    try:
        now = await jobs.look(instance.instance_id) or instance
    except StoreUnavailable:
        return None
    custom = now.custom_status
    current = custom.attempt if custom is not None else 1
    for attempt in {current, current + 1}:
        try:
            progress = await read_progress(store, instance.instance_id, attempt)
        except StoreUnavailable:
            return None
        except RecordUnreadable:
            return False
        mine = progress is not None and progress.job_created_at == instance.job.created_at
        if mine and progress is not None and progress.sent and not progress.done:
            return False  # this attempt's request has left, and the attempt has not ended
    return True


def _linker(store: AsyncImageStore, settings: AppSettings) -> Callable[[str], str]:
    def link(blob: str) -> str:
        return store.read_link(name=blob, ttl_s=settings.storage.link_ttl_s)

    return link


# The API's routes (under the host's /api prefix) and their methods, for unmatched requests.
ROUTES: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"images/?"), ("GET", "POST")),
    (re.compile(r"images/[^/]+/?"), ("GET",)),
    (re.compile(r"images/[^/]+/cancel/?"), ("POST",)),
    (re.compile(r"images/[^/]+/client-timings/?"), ("POST",)),
    (re.compile(r"ui(/[^/]*)?"), ("GET",)),
    (re.compile(r"images/[^/]+/evidence/?"), ("GET",)),
    (re.compile(r"uploads/?"), ("POST",)),
    (re.compile(r"routes/?"), ("GET",)),
    (re.compile(r"batches/?"), ("POST",)),
    (re.compile(r"batches/[^/]+/?"), ("GET",)),
    (re.compile(r"batches/[^/]+/cancel/?"), ("POST",)),
    (re.compile(r"webhook-secret/?"), ("GET",)),
    (re.compile(r"openapi\.json/?"), ("GET",)),
)


async def unmatched(req: func.HttpRequest) -> func.HttpResponse:
    """Any request no route of the API took: 405 (with Allow) for a path of the API asked with
    another method, else 404; both with the JSON envelope, as every other answer."""
    path = str(req.route_params.get("path") or "")
    for pattern, methods in ROUTES:
        if pattern.fullmatch(path):
            raise MethodNotAllowed(str(req.method), methods)
    raise NoSuchRoute(path)
