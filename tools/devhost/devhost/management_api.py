"""The Durable extension's management HTTP API and the durableClient binding, as the host has them.

Served twice by the same event loop: on the public webhook routes
`/runtime/webhooks/durabletask/...` (master key or the `durabletask_extension` system key) and on
the RPC base the client binding names, `http://127.0.0.1:{rpc port}/durabletask/` (no key,
loopback callers only; a listener of its own, see devhost.http_host), which the SDK's
`DurableOrchestrationClient` uses. The behaviour is the extension's HttpApiHandler (v2.13): the
same routes, case-insensitive literals and query names, `bool.TryParse` booleans, status codes,
error bodies and check-status responses. Facts: docs/reference/functions-host-http.md.

Where a later extension changed the behaviour (PR #3316: 409 for a running duplicate, 412 for
purging a running instance or rewinding a non-failed one), `NEW_EXTENSION_BEHAVIOUR` switches
between the two; the default is the old (v2.13) behaviour that apps in Azure run today.

Payload rules (what the engine receives):
- start: `input_json` is the text the orchestrator's context carries as `input`. The extension
  stores the body's JSON value serialized (for the SDK's double-encoded `"{\\"a\\": 1}"` that is a
  JSON string) and hands the orchestrator that value parsed once, so the SDK sees the inner text
  `{"a": 1}` and `get_input()` returns the dict; a raw JSON object posted by hand arrives compact.
  The status API shows the stored value itself, so the body text goes along as `status_input`:
  the SDK's input shows as the string `{"a": 1}`, an object posted by hand as that object.
- entity signal: `input_token` is the body's JSON value (the SDK posts `json.dumps(value)`, so a
  JSON string), the raw text for a body that is not `application/json`, None for no body; the
  engine serializes it once more into the operation's input (entity_protocol.operation_input).
- entity state: the body of a read is the stored state's JSON as it is.
- raiseEvent: `data_json` is the EventRaised `Input` exactly as the extension stores it (the body's
  JSON written back compactly), so the SDK's double encoding shows through as it does in Azure
  (azure-functions-durable-python issue #295).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote_plus, unquote

from aiohttp import web
from multidict import MultiMapping

from devhost.engine import (
    InstanceAlreadyExists,
    InstanceNotActive,
    InstanceNotFound,
    UnknownEntity,
    UnknownOrchestrator,
)

__all__ = [
    "CONNECTION_NAME",
    "NEW_EXTENSION_BEHAVIOUR",
    "RPC_PATH",
    "WEBHOOK_PATH",
    "DurableEngine",
    "ManagementApi",
    "Query",
    "check_status_payload",
    "client_binding",
    "parse_bool",
]

# The one switch between extension v2.13 (False) and the behaviour after PR #3316 (True).
NEW_EXTENSION_BEHAVIOUR = False

WEBHOOK_PATH = "/runtime/webhooks/durabletask"
RPC_PATH = "/durabletask"
CONNECTION_NAME = "Storage"  # the connection the extension names in its URLs by default
DEFAULT_PAGE_SIZE = 100
MAX_INSTANCE_ID_LENGTH = 256

RUNNING_STATES = frozenset({"Running", "Pending", "ContinuedAsNew", "Suspended"})
TERMINAL_STATES = frozenset({"Completed", "Failed", "Terminated", "Canceled"})
ALL_STATES = RUNNING_STATES | TERMINAL_STATES

_GENERIC_400 = "One or more of the arguments submitted is incorrect"
_GENERIC_500 = "Something went wrong while processing your request"


class DurableEngine(Protocol):
    """The part of devhost.engine.Engine this API calls (a fake in tests keeps to it).

    Errors: InstanceNotFound (404), InstanceNotActive (410), UnknownOrchestrator and ValueError
    (400, a refused argument), InstanceAlreadyExists, NotImplementedError (501).
    """

    async def start_new(
        self,
        name: str,
        instance_id: str | None,
        input_json: str | None,
        *,
        status_input: str | None = None,
    ) -> str: ...

    async def get_status(
        self,
        instance_id: str,
        *,
        show_history: bool = False,
        show_history_output: bool = False,
        show_input: bool = True,
    ) -> dict[str, Any] | None: ...

    async def list_instances(
        self,
        *,
        created_from: datetime | None,
        created_to: datetime | None,
        statuses: Collection[str],
        prefix: str | None,
        top: int,
        continuation: str | None,
        show_input: bool,
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    async def raise_event(self, instance_id: str, name: str, data_json: str | None) -> None: ...

    async def terminate(self, instance_id: str, reason: str | None) -> None: ...

    async def suspend(self, instance_id: str, reason: str | None) -> None: ...

    async def resume(self, instance_id: str, reason: str | None) -> None: ...

    async def rewind(self, instance_id: str, reason: str | None) -> None: ...

    async def restart(self, instance_id: str, *, new_instance_id: bool) -> str: ...

    async def purge(self, instance_id: str) -> int: ...

    async def purge_many(
        self, *, created_from: datetime, created_to: datetime | None, statuses: Collection[str]
    ) -> int: ...

    async def wait_for_completion(
        self, instance_id: str, timeout_s: float
    ) -> dict[str, Any] | None: ...

    async def signal_entity(self, name: str, key: str, operation: str, input_token: Any) -> None:
        """Raises UnknownEntity (400) for a name that is not an entity function."""

    async def read_entity_state(self, name: str, key: str) -> str | None: ...


# --- the client binding and check-status URLs ------------------------------------------------


def _query_suffix(task_hub: str, connection: str, system_key: str | None) -> str:
    suffix = f"taskHub={quote_plus(task_hub)}&connection={quote_plus(connection)}"
    if system_key:
        suffix += f"&code={system_key}"
    return suffix


def check_status_payload(
    origin: str,
    instance_id: str,
    *,
    task_hub: str,
    system_key: str | None,
    connection: str = CONNECTION_NAME,
    return_internal_server_error_on_failure: bool = False,
) -> dict[str, str]:
    """The check-status body (keys in the extension's order) for an instance.

    `origin` is the request's scheme://host:port; the path is always the public webhook path.
    """
    base = origin.rstrip("/") + WEBHOOK_PATH + "/instances/" + quote_plus(instance_id)
    q = _query_suffix(task_hub, connection, system_key)
    status = f"{base}?{q}"
    if return_internal_server_error_on_failure:
        status += "&returnInternalServerErrorOnFailure=true"
    return {
        "id": instance_id,
        "statusQueryGetUri": status,
        "sendEventPostUri": f"{base}/raiseEvent/{{eventName}}?{q}",
        "terminatePostUri": f"{base}/terminate?reason={{text}}&{q}",
        "purgeHistoryDeleteUri": f"{base}?{q}",
        "restartPostUri": f"{base}/restart?{q}",
        "suspendPostUri": f"{base}/suspend?reason={{text}}&{q}",
        "resumePostUri": f"{base}/resume?reason={{text}}&{q}",
    }


def client_binding(
    *,
    origin: str,
    rpc_base_url: str,
    task_hub: str,
    system_key: str,
    connection: str = CONNECTION_NAME,
) -> dict[str, Any]:
    """The durableClient binding value the host hands a client function (as a JSON string).

    managementUrls use the placeholder id `INSTANCEID`; the SDK swaps in the real id and the
    incoming request's origin.
    """
    base = origin.rstrip("/") + WEBHOOK_PATH
    creation = base + "/orchestrators/{functionName}[/{instanceId}]"
    code = f"code={system_key}"
    return {
        "taskHubName": task_hub,
        "creationUrls": {
            "createNewInstancePostUri": f"{creation}?{code}",
            "createAndWaitOnNewInstancePostUri": (
                f"{creation}?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}"
                f"&{code}"
            ),
        },
        "managementUrls": check_status_payload(
            origin, "INSTANCEID", task_hub=task_hub, system_key=system_key, connection=connection
        ),
        "baseUrl": base,
        "requiredQueryStringParameters": code,
        "rpcBaseUrl": rpc_base_url,
    }


# --- query parsing, .NET style ----------------------------------------------------------------


class Query:
    """Query parameters with case-insensitive names, read like .NET's NameValueCollection:
    `get` joins repeated values with commas, `get_all` returns each."""

    def __init__(self, pairs: MultiMapping[str] | Mapping[str, str]) -> None:
        self._pairs: list[tuple[str, str]] = [(k.lower(), v) for k, v in pairs.items()]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return ",".join(values) if values else None

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for k, v in self._pairs if k == key]


def parse_bool(text: str | None) -> bool | None:
    """`bool.TryParse`: "true"/"false" in any case, surrounding whitespace allowed; else None."""
    if text is None:
        return None
    value = text.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def parse_int(text: str | None) -> int | None:
    """`int.TryParse` (Int32, optional sign, surrounding whitespace)."""
    if text is None or not re.fullmatch(r"\s*[+-]?\d+\s*", text):
        return None
    value = int(text)
    return value if -(2**31) <= value < 2**31 else None


def parse_seconds(text: str | None) -> float | None:
    """`double.TryParse` for the `timeout`/`pollingInterval` seconds."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value == value else None  # NaN is not a usable TimeSpan


def parse_datetime(text: str | None) -> datetime | None:
    """`DateTime.TryParse` for ISO 8601 text; a time without an offset is taken as UTC."""
    if text is None or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace(" ", "+"))
    except ValueError:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_statuses(values: list[str]) -> list[str]:
    """`runtimeStatus`: comma-separated and/or repeated; case-sensitive names; bad ones dropped."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip()
            if name in ALL_STATES and name not in out:
                out.append(name)
    return out


def instance_id_problem(instance_id: str) -> str | None:
    """Why the extension would refuse this instance id (its ArgumentException text), or None.

    The extension passes its arguments to ArgumentException in swapped order, so .NET renders
    the message as "instanceId (Parameter '...')"; kept as the caller would see it.
    """
    if instance_id.startswith("@"):
        return "instanceId (Parameter 'Orchestration instance ids must not start with @.')"
    if any(c in "/\\?#" or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in instance_id):
        return (
            "instanceId (Parameter 'Orchestration instance ids must not contain /, \\, #, ?, "
            "or control characters.')"
        )
    if len(instance_id) > MAX_INSTANCE_ID_LENGTH:
        return f"Instance ID lengths must not exceed {MAX_INSTANCE_ID_LENGTH} characters."
    return None


def orchestration_input_json(text: str) -> str | None:
    """The start body as the orchestrator's context `input` (see the module docstring).

    Raises ValueError for text that is not JSON.
    """
    value = json.loads(text)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def compact_json(text: str) -> str | None:
    """Parse a body as JSON and write it back compactly (None for a JSON null).

    Raises ValueError for text that is not JSON.
    """
    value = json.loads(text)
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- responses ------------------------------------------------------------------------------


def _json_response(
    status: int, body: Any, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )


def _empty(status: int) -> web.Response:
    return web.Response(status=status)


def error_response(
    status: int,
    message: str,
    *,
    exception_message: str | None = None,
    exception_type: str | None = None,
) -> web.Response:
    """The extension's error body: `{"Message"}` or with the exception's message and type."""
    body: dict[str, Any] = {"Message": message}
    if exception_message is not None:
        body["ExceptionMessage"] = exception_message
        body["ExceptionType"] = exception_type or "System.Exception"
        # The real host sends the .NET stack trace; devhost keeps Python tracebacks in its log.
        body["StackTrace"] = None
    return _json_response(status, body)


def _argument_error(exception_message: str) -> web.Response:
    return error_response(
        400,
        _GENERIC_400,
        exception_message=exception_message,
        exception_type="System.ArgumentException",
    )


# --- the API ---------------------------------------------------------------------------------


class ManagementApi:
    """Maps management requests onto the engine. One instance serves both bases."""

    def __init__(
        self,
        engine: DurableEngine,
        *,
        task_hub: str,
        system_key: str,
        orchestrators: Collection[str],
        log: logging.Logger | None = None,
    ) -> None:
        self._engine = engine
        self._task_hub = task_hub
        self._system_key = system_key
        self._orchestrators = list(orchestrators)
        self._log = log or logging.getLogger("devhost.management")

    def unknown_orchestrator_message(self, name: str) -> str:
        message = (
            f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator "
            "function. Additional info: "
        )
        if self._orchestrators:
            known = "', '".join(self._orchestrators)
            return message + f"The following are the known orchestrator functions: '{known}'."
        return message + "No orchestrator functions are currently registered!"

    async def handle(self, request: web.Request, sub_path: str) -> web.StreamResponse:
        """Answer one request; `sub_path` is the raw (still percent-encoded) path after the base."""
        segments = (
            [unquote(s) for s in sub_path.strip("/").split("/")] if sub_path.strip("/") else []
        )
        method = request.method.upper()
        try:
            return await self._route(request, method, segments)
        except web.HTTPException:
            raise  # aiohttp's own answers, e.g. 413 for a body over the limit
        except InstanceNotFound:
            return _empty(404)
        except InstanceNotActive:
            return _empty(410)
        except UnknownOrchestrator as exc:
            return _argument_error(self.unknown_orchestrator_message(exc.name))
        except InstanceAlreadyExists as exc:
            return self._duplicate(exc)
        except NotImplementedError as exc:
            return error_response(501, f"devhost does not implement this operation: {exc}")
        except ValueError as exc:
            # The engine's ValueError is a refused argument (a continuation token that is not
            # one, ...): 400, as the extension answers an ArgumentException. This API's own
            # parsing catches its ValueErrors where it can name the problem.
            return _argument_error(str(exc))
        except Exception as exc:
            self._log.exception("management API request %s %s failed", method, request.path)
            return error_response(
                500,
                _GENERIC_500,
                exception_message=str(exc),
                exception_type=type(exc).__qualname__,
            )

    def _duplicate(self, exc: InstanceAlreadyExists) -> web.Response:
        message = f"An Orchestration instance with the status {exc.runtime_status} already exists."
        if NEW_EXTENSION_BEHAVIOUR:
            return error_response(409, message)
        return error_response(
            500,
            _GENERIC_500,
            exception_message=message,
            exception_type="DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException",
        )

    async def _route(self, request: web.Request, method: str, seg: list[str]) -> web.StreamResponse:
        if not seg:
            return _empty(404)
        head = seg[0].lower()
        if head == "orchestrators" and len(seg) in (2, 3):
            if method != "POST":
                return _empty(404)
            return await self._start(request, seg[1], seg[2] if len(seg) == 3 else None)
        if head == "entities":
            return await self._entity(request, method, seg)
        if head != "instances" or len(seg) > 4:
            return _empty(404)
        if len(seg) == 4:
            if seg[2].lower() != "raiseevent" or method != "POST":
                return _empty(404)
            return await self._raise_event(request, seg[1], seg[3])
        if len(seg) == 1:
            if method == "GET":
                return await self._list(request)
            if method == "DELETE":
                return await self._purge_many(request)
            return _empty(404)
        instance_id = seg[1]
        if len(seg) == 2:
            if method == "GET":
                return await self._status(request, instance_id)
            if method == "DELETE":
                return await self._purge(instance_id)
            return _empty(404)
        if method != "POST":
            return _empty(404)
        operation = seg[2].lower()
        if operation == "restart":
            return await self._restart(request, instance_id)
        if operation in {"terminate", "suspend", "resume", "rewind"}:
            return await self._operation(request, instance_id, operation)
        return _empty(404)

    async def _entity(
        self, request: web.Request, method: str, seg: list[str]
    ) -> web.StreamResponse:
        """`entities/{name}/{key}`: GET reads the state (404 if the entity does not exist),
        POST `?op=` signals an operation (202). Listing (`entities/{name}`) is not hosted."""
        if len(seg) == 2 and method == "GET":
            return error_response(501, "devhost does not implement listing entities")
        if len(seg) != 3 or not seg[1] or not seg[2]:
            return _empty(404)
        name, key = seg[1], seg[2]
        if method == "GET":
            state = await self._engine.read_entity_state(name, key)
            if state is None:
                return _empty(404)
            return web.Response(
                status=200,
                body=state.encode(),
                headers={"Content-Type": "application/json; charset=utf-8"},
            )
        if method != "POST":
            return _empty(404)
        operation = Query(request.query).get("op") or ""
        body = await request.read()
        token: Any = None
        if body:
            text = body.decode("utf-8-sig")
            media = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if media == "application/json":
                try:
                    token = json.loads(text)
                except ValueError as exc:
                    return error_response(
                        400,
                        "Invalid JSON content",
                        exception_message=str(exc),
                        exception_type="Newtonsoft.Json.JsonReaderException",
                    )
            else:
                token = text
        try:
            await self._engine.signal_entity(name, key, operation, token)
        except UnknownEntity as exc:
            return _argument_error(str(exc))
        return _empty(202)

    def _origin(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    def _check_status(self, request: web.Request, instance_id: str) -> web.Response:
        payload = check_status_payload(
            self._origin(request), instance_id, task_hub=self._task_hub, system_key=self._system_key
        )
        return _json_response(
            202,
            payload,
            headers={"Location": payload["statusQueryGetUri"], "Retry-After": "10"},
        )

    async def _start(
        self, request: web.Request, name: str, instance_id: str | None
    ) -> web.StreamResponse:
        # The extension's order: the body is parsed first, then StartNewAsync checks the
        # function name, then the instance id.
        text = (await request.read()).decode("utf-8-sig")
        input_json: str | None = None
        if text.strip():
            try:
                input_json = orchestration_input_json(text)
            except ValueError as exc:
                return error_response(
                    400,
                    "Invalid JSON content",
                    exception_message=str(exc),
                    exception_type="Newtonsoft.Json.JsonReaderException",
                )
        if name not in self._orchestrators:
            return _argument_error(self.unknown_orchestrator_message(name))
        if instance_id:
            problem = instance_id_problem(instance_id)
            if problem is not None:
                return _argument_error(problem)
        # The body text itself is what the status API shows as `input` (Azure keeps the body's
        # JSON token: the SDK's double-encoded input stays a JSON string there).
        new_id = await self._engine.start_new(
            name, instance_id or None, input_json, status_input=text if text.strip() else None
        )
        return await self._respond_started(request, new_id)

    async def _respond_started(self, request: web.Request, instance_id: str) -> web.StreamResponse:
        query = Query(request.query)
        timeout = parse_seconds(query.get("timeout"))
        polling = parse_seconds(query.get("pollingInterval"))
        if timeout is None or polling is None:
            return self._check_status(request, instance_id)
        if polling > timeout:
            return _argument_error(
                f"Total timeout {timeout:g} should be bigger than retry timeout {polling:g}"
            )
        status = await self._engine.wait_for_completion(instance_id, max(timeout, 0.0))
        runtime = status.get("runtimeStatus") if status else None
        if status is not None and runtime == "Completed":
            return _json_response(200, status.get("output"))
        if status is not None and runtime in TERMINAL_STATES:
            return await self._status(request, instance_id)
        return self._check_status(request, instance_id)

    async def _status(self, request: web.Request, instance_id: str) -> web.StreamResponse:
        query = Query(request.query)
        show_history = parse_bool(query.get("showHistory"))
        show_history_output = parse_bool(query.get("showHistoryOutput"))
        show_input = parse_bool(query.get("showInput"))
        fail_500 = parse_bool(query.get("returnInternalServerErrorOnFailure"))
        status = await self._engine.get_status(
            instance_id,
            show_history=bool(show_history),
            show_history_output=bool(show_history_output),
            show_input=True if show_input is None else show_input,
        )
        if status is None:
            return _empty(404)
        runtime = status.get("runtimeStatus")
        if runtime in RUNNING_STATES:
            return _json_response(
                202, status, headers={"Location": str(request.url), "Retry-After": "5"}
            )
        if runtime == "Failed":
            return _json_response(500 if fail_500 else 200, status)
        if runtime in TERMINAL_STATES:
            return _json_response(200, status)
        self._log.error("unknown runtime status %r for instance %s", runtime, instance_id)
        return _json_response(500, status)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        query = Query(request.query)
        show_input = parse_bool(query.get("showInput"))
        top = parse_int(query.get("top"))
        statuses = parse_statuses(query.get_all("runtimeStatus"))
        items, token = await self._engine.list_instances(
            created_from=parse_datetime(query.get("createdTimeFrom")),
            created_to=parse_datetime(query.get("createdTimeTo")),
            statuses=statuses,
            prefix=query.get("instanceIdPrefix"),
            top=top if top is not None and top > 0 else DEFAULT_PAGE_SIZE,
            continuation=request.headers.get("x-ms-continuation-token") or None,
            show_input=True if show_input is None else show_input,
        )
        return _json_response(200, items, headers={"x-ms-continuation-token": token or ""})

    async def _purge(self, instance_id: str) -> web.StreamResponse:
        status = await self._engine.get_status(instance_id, show_input=False)
        if status is None:
            return _empty(404)
        if NEW_EXTENSION_BEHAVIOUR and status.get("runtimeStatus") not in TERMINAL_STATES:
            return error_response(
                412, f"The orchestration instance '{instance_id}' is not in a terminal state."
            )
        deleted = await self._engine.purge(instance_id)
        return _json_response(200, {"instancesDeleted": deleted})

    async def _purge_many(self, request: web.Request) -> web.StreamResponse:
        query = Query(request.query)
        created_from = parse_datetime(query.get("createdTimeFrom"))
        if created_from is None:
            return _json_response(400, "Please provide value for 'createdTimeFrom' parameter.")
        # Left out, createdTimeTo is "now": the engine's now, which --virtual-time moves ahead.
        created_to = parse_datetime(query.get("createdTimeTo"))
        deleted = await self._engine.purge_many(
            created_from=created_from,
            created_to=created_to,
            statuses=parse_statuses(query.get_all("runtimeStatus")),
        )
        if deleted == 0:
            return _empty(404)
        return _json_response(200, {"instancesDeleted": deleted})

    async def _raise_event(
        self, request: web.Request, instance_id: str, event: str
    ) -> web.StreamResponse:
        status = await self._engine.get_status(instance_id, show_input=False)
        if status is None:
            return _empty(404)
        if status.get("runtimeStatus") in TERMINAL_STATES:
            return _empty(410)
        media = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media != "application/json":
            return error_response(400, "Only application/json request content is supported")
        text = (await request.read()).decode("utf-8-sig")
        try:
            data_json = compact_json(text)
        except ValueError as exc:
            return error_response(
                400,
                "Invalid JSON content",
                exception_message=str(exc),
                exception_type="Newtonsoft.Json.JsonReaderException",
            )
        await self._engine.raise_event(instance_id, event, data_json)
        return _empty(202)

    async def _operation(
        self, request: web.Request, instance_id: str, operation: str
    ) -> web.StreamResponse:
        status = await self._engine.get_status(instance_id, show_input=False)
        if status is None:
            return _empty(404)
        runtime = status.get("runtimeStatus")
        if operation == "rewind":
            if NEW_EXTENSION_BEHAVIOUR and runtime != "Failed":
                return error_response(
                    412, f"The orchestration instance '{instance_id}' is not in a Failed state."
                )
            if runtime in {"Canceled", "Terminated", "Completed"}:
                return _empty(410)
        elif runtime in TERMINAL_STATES:
            return _empty(410)
        reason = Query(request.query).get("reason")
        if operation == "terminate":
            await self._engine.terminate(instance_id, reason)
        elif operation == "suspend":
            await self._engine.suspend(instance_id, reason)
        elif operation == "resume":
            await self._engine.resume(instance_id, reason)
        else:
            await self._engine.rewind(instance_id, reason)
        return _empty(202)

    async def _restart(self, request: web.Request, instance_id: str) -> web.StreamResponse:
        flag = parse_bool(Query(request.query).get("restartWithNewInstanceId"))
        try:
            new_id = await self._engine.restart(
                instance_id, new_instance_id=True if flag is None else flag
            )
        except (InstanceNotFound, ValueError) as exc:
            return error_response(
                400,
                "InstanceId does not match a valid orchestration instance.",
                exception_message=str(exc),
                exception_type="System.ArgumentException",
            )
        return await self._respond_started(request, new_id)
