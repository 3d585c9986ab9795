"""The image job API over HTTP, and every way a call to it can go wrong, as one class each.

    client = JobClient("http://127.0.0.1:7071", key)
    answer = client.start({"prompt": "a red apple"})      # Answer(status_code=202, body={...})
    client.status(job_id), client.cancel(job_id), client.download(url)
    client.list_jobs(limit=20), client.evidence(job_id)

A call either returns an ``Answer`` (an HTTP status the call expects, with a JSON object) or
raises a ``Problem``: one line that says what went wrong and what to do, and the exit code of its
class (``ExitCode``). Nothing here retries a start: a slow or lost answer to ``POST /api/images``
is reported, never sent again, so a slow job never becomes two jobs.
"""

from __future__ import annotations

import email.utils
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

import httpx

DEFAULT_URL = "http://127.0.0.1:7071"


def python_command() -> str:
    """How this interpreter is named where the user stands (``.venv/bin/python`` in a checkout),
    so that the commands the CLI suggests run as printed."""
    interpreter = Path(sys.executable)
    try:
        return str(interpreter.relative_to(Path.cwd()))
    except ValueError:
        return str(interpreter)


KEY_HINT = (
    "give the function key with --key or the IMAGEJOBS_KEY environment variable "
    f"(locally: `{python_command()} -m devhost keys` prints it)"
)


class ExitCode(IntEnum):
    """The CLI's exit codes, one per class of outcome (also in ``--help`` and the README)."""

    OK = 0
    JOB_FAILED = 1  # the job ended failed
    NOT_VERIFIED = 1  # verify-webhook: the signature does not verify
    USAGE = 2  # click's own: an unknown option, a missing argument
    JOB_CANCELLED = 3  # the job ended cancelled
    AUTH = 4  # 401/403: the function key is missing or wrong
    UNREACHABLE = 5  # no connection (the stack is not running, a wrong --url) or it broke
    TIMEOUT = 6  # no answer within --http-timeout, or the job still running at --timeout
    BAD_ANSWER = 7  # an answer that is not the service's JSON
    REFUSED = 8  # a 4xx error answer: the request, the id or the key was refused
    SERVICE_ERROR = 9  # a 5xx error answer: the service failed; try again later
    SAVE_FAILED = 10  # the job saved its images, but one could not be fetched or written here
    INTERRUPTED = 130  # Ctrl-C: stopped following (the job goes on)


class Problem(Exception):
    """A failed call, as one line for a person; ``exit_code`` names its class."""

    exit_code: ClassVar[ExitCode]
    # Whether a poll may succeed later (a follower keeps polling through these for a while).
    transient_by_default: ClassVar[bool] = False

    def __init__(
        self, message: str, *, retry_after_s: float | None = None, transient: bool | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.transient = self.transient_by_default if transient is None else transient


class AuthRefused(Problem):
    exit_code = ExitCode.AUTH


class Unreachable(Problem):
    exit_code = ExitCode.UNREACHABLE
    transient_by_default = True


class NoAnswer(Problem):
    exit_code = ExitCode.TIMEOUT
    transient_by_default = True


class BadAnswer(Problem):
    exit_code = ExitCode.BAD_ANSWER


class Refused(Problem):
    exit_code = ExitCode.REFUSED


class ServiceFailed(Problem):
    exit_code = ExitCode.SERVICE_ERROR
    transient_by_default = True


class SaveFailed(Problem):
    exit_code = ExitCode.SAVE_FAILED


class WaitTimedOut(Problem):
    exit_code = ExitCode.TIMEOUT


@dataclass(frozen=True)
class Answer:
    """A successful answer: its HTTP status, its JSON object, its Retry-After (seconds)."""

    status_code: int
    body: dict[str, Any]
    retry_after_s: float | None
    headers: httpx.Headers


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """A Retry-After header in seconds: delta-seconds or an HTTP date; None when absent or bad."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


class JobClient:
    """The service's HTTP API; the function key goes as ``x-functions-key``, never elsewhere
    (not on a URL, not to the image links, not in any message)."""

    def __init__(
        self,
        base_url: str,
        key: str | None,
        *,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._has_key = bool(key)
        self._api = httpx.Client(
            timeout=timeout_s,
            transport=transport,
            headers={"x-functions-key": key} if key else {},
        )
        # The image and preview links carry their own read-only token: no key goes to them.
        self._links = httpx.Client(timeout=timeout_s, transport=transport, follow_redirects=True)

    def close(self) -> None:
        self._api.close()
        self._links.close()

    def __enter__(self) -> JobClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def job_url(self, job_id: str) -> str:
        return f"{self.base_url}/api/images/{quote(job_id, safe='')}"

    def start(self, request: dict[str, Any], *, idempotency_key: str | None = None) -> Answer:
        """POST /api/images: 202 with the job's id. Sent once, never again by this client."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        url = f"{self.base_url}/api/images"
        answer = self._call(
            "POST",
            url,
            expect=(202,),
            json_body=request,
            headers=headers,
            if_unsure="; a job may have started: the same command again returns that job while "
            "it runs, never a second one",
        )
        if not isinstance(answer.body.get("id"), str):
            raise BadAnswer(
                f"HTTP 202 to POST /api/images has no job id: is --url ({self.base_url}) the "
                "image job service?"
            )
        return answer

    def status(self, job_id: str) -> Answer:
        """GET /api/images/{id}: 202 while the job runs, 200 once it has ended."""
        return self._call("GET", self.job_url(job_id), expect=(200, 202))

    def cancel(self, job_id: str) -> Answer:
        """POST /api/images/{id}/cancel: 202 (cancelling) or 200 (it had ended)."""
        return self._call("POST", f"{self.job_url(job_id)}/cancel", expect=(200, 202))

    def list_jobs(self, *, limit: int = 20, after: str | None = None) -> Answer:
        """GET /api/images?limit=&after=: a page of the caller's jobs, newest first."""
        params = {"limit": str(limit), **({"after": after} if after else {})}
        url = str(httpx.URL(f"{self.base_url}/api/images", params=params))
        return self._call("GET", url, expect=(200,))

    def routes(self) -> Answer:
        """GET /api/routes: each route's health (and so, which routes the service has)."""
        return self._call("GET", f"{self.base_url}/api/routes", expect=(200,))

    def evidence(self, job_id: str) -> Answer:
        """GET /api/images/{id}/evidence: the job's escalation packet."""
        return self._call("GET", f"{self.job_url(job_id)}/evidence", expect=(200,))

    def download(self, url: str, *, what: str) -> bytes:
        """The bytes behind an image or preview link; SaveFailed on any failure."""
        try:
            response = self._links.get(url)
        except httpx.TimeoutException:
            raise SaveFailed(
                f"{what}: no answer from its link within {self.timeout_s:g}s; "
                "try again, or give it longer with --http-timeout"
            ) from None
        except httpx.TransportError as exc:
            raise SaveFailed(
                f"{what}: cannot fetch its link ({_reason(exc)}): is the storage "
                "(Azurite, `make run`) still running?"
            ) from None
        if response.status_code != 200:
            hint = (
                "the link may have expired: `status ID` gives fresh links"
                if response.status_code in (401, 403)
                else "`status ID` gives fresh links"
            )
            raise SaveFailed(f"{what}: its link answered HTTP {response.status_code}; {hint}")
        return response.content

    def _call(
        self,
        method: str,
        url: str,
        *,
        expect: tuple[int, ...],
        json_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        if_unsure: str = "",
    ) -> Answer:
        """One call; ``if_unsure`` is added to the message when the request may have arrived
        although no answer came (a timeout or a broken connection after connecting)."""
        try:
            response = self._api.request(method, url, json=json_body, headers=headers)
        except httpx.ConnectTimeout:
            raise NoAnswer(
                f"cannot connect to {self.base_url} within {self.timeout_s:g}s: is the stack "
                "running? `make run` starts it; or point --url / IMAGEJOBS_URL at the service"
            ) from None
        except httpx.TimeoutException:
            raise NoAnswer(
                f"no answer from {self.base_url} within {self.timeout_s:g}s "
                f"({method} {_path(url)}){if_unsure}; try again, or give it longer with "
                "--http-timeout"
            ) from None
        except httpx.ConnectError as exc:
            raise Unreachable(
                f"cannot connect to {self.base_url} ({_reason(exc)}): is the stack running? "
                "`make run` starts it; or point --url / IMAGEJOBS_URL at the service"
            ) from None
        except httpx.TransportError as exc:
            raise Unreachable(
                f"the connection to {self.base_url} broke ({_reason(exc)}) during {method} "
                f"{_path(url)}{if_unsure}; is the service still running? try again"
            ) from None
        return self._answer(method, url, response, expect)

    def _answer(
        self, method: str, url: str, response: httpx.Response, expect: tuple[int, ...]
    ) -> Answer:
        code = response.status_code
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        body = _json_object(response)
        # The host refuses a key with an empty 401 (or 403); a 403 in the service's own error
        # envelope is the service refusing the request (a list without an identity), not the key.
        envelope = _service_envelope(body)
        if code == 401 or (code == 403 and not envelope):
            if not self._has_key:
                raise AuthRefused(f"HTTP {code}: no function key was sent; {KEY_HINT}")
            raise AuthRefused(f"HTTP {code}: the service refused the function key; {KEY_HINT}")
        where = f"{method} {_path(url)}"
        if body is None:
            kind = response.headers.get("content-type") or "no content type"
            size = len(response.content)
            raise BadAnswer(
                f"HTTP {code} to {where} is not the service's JSON ({kind}, {size} bytes): "
                f"is --url ({self.base_url}) the image job service?",
                retry_after_s=retry_after,
                # A gateway's HTML 502/503/504 page: the service may be back soon.
                transient=code >= 500,
            )
        if code in expect:
            return Answer(code, body, retry_after, response.headers)
        error = body.get("error")
        if code >= 400 and _service_envelope(body) and isinstance(error, dict):
            text = _envelope(code, error)
            if code >= 500:
                wait = f"try again in {retry_after:g}s" if retry_after else "try again later"
                raise ServiceFailed(f"{text}; {wait}", retry_after_s=retry_after)
            raise Refused(f"{text}{_hint_for(code)}", retry_after_s=retry_after)
        raise BadAnswer(
            f"HTTP {code} to {where} is not an answer of the image job API "
            f"(expected {' or '.join(map(str, expect))}): is --url ({self.base_url}) the service?",
            retry_after_s=retry_after,
        )


def page_token(next_url: object) -> str | None:
    """The ``after`` token of a list answer's ``next`` URL. The next page is asked of the
    service this client was pointed at, never of the URL's own host: the key goes nowhere else."""
    if not isinstance(next_url, str) or not next_url:
        return None
    tokens = parse_qs(urlsplit(next_url).query).get("after")
    return tokens[0] if tokens else None


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


# The service's error envelope, exactly: ``{"error": {"code", "message", "field"}}``. Another
# service's error JSON (OpenAI's ``{"error": {"message", "type", "param", "code"}}``, which the
# simulator answers at a path it does not have) is not the service refusing the request.
_ENVELOPE_KEYS = frozenset({"code", "message", "field"})


def _service_envelope(body: dict[str, Any] | None) -> bool:
    if body is None or set(body) != {"error"}:
        return False
    error = body["error"]
    return (
        isinstance(error, dict)
        and set(error) == _ENVELOPE_KEYS
        and isinstance(error["code"], str)
        and isinstance(error["message"], str)
    )


def _envelope(code: int, error: dict[str, Any]) -> str:
    """``HTTP 400 invalid_value (field size): size must be ...``: code, field and message."""
    name = error.get("code") or "error"
    field = error.get("field")
    message = " ".join(str(error.get("message") or "").split())
    where = f" (field {field})" if field else ""
    return f"HTTP {code} {name}{where}: {message}" if message else f"HTTP {code} {name}{where}"


def _hint_for(code: int) -> str:
    if code == 403:
        return "; the service lists jobs only for a caller with an identity of its own"
    if code == 404:
        return "; check the job id (a job is found only with the key that started it)"
    if code == 409:
        return "; use a new --idempotency-key for a different request"
    if code == 400:
        return "; fix that option and run the command again"
    return ""


def _path(url: str) -> str:
    return httpx.URL(url).path


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    return " ".join(text.split())
