"""The retry policy: from one attempt's failure to "retry after X" or "give up because Y".

Pure, so the orchestrator stays deterministic: randomness for jitter comes in as a number in
[0, 1) that the orchestrator draws from its context (``new_uuid``), and waits are returned in
seconds for a durable timer. The rules are field report A's retry table and the Azure answer in
field report B (docs/reference/field-reports.md):
- 429 rate_limit_exceeded: wait what the server asked (retry-after-ms, retry-after, the reset
  header, "try again in Ns"), else exponential backoff; always with jitter added on top, never
  below the server's ask, never a fixed short interval.
- insufficient_quota, validation, moderation, content filter (any error of the user's family),
  401, 403, 404: never retried.
- 5xx, an error event mid-stream, a stream without its completed event: bounded, 5 s, 15 s, 30 s.
- A local timeout, a gateway 408/504, a connection lost after the request was sent: the upstream
  may still be generating (and billing). Resending is a policy setting (``post_send``), recorded
  as a post-send resend; the default waits long enough for the first generation to finish.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rules.outcome import Failure, FailureKind, Layer

NEVER_RETRIED = frozenset(
    {
        FailureKind.QUOTA_EXHAUSTED,
        FailureKind.REJECTED,
        FailureKind.AUTH_FAILED,
        FailureKind.PERMISSION_DENIED,
        FailureKind.NOT_FOUND,
        FailureKind.CANCELLED,
    }
)
TRANSIENT = frozenset(
    {
        FailureKind.STORAGE_FAILED,  # only before the send (the attempt could not be recorded)
        FailureKind.SERVER_ERROR,
        FailureKind.STREAM_INCOMPLETE,
        FailureKind.PROTOCOL_ERROR,
        FailureKind.IMAGE_INVALID,
    }
)
POST_SEND = frozenset(
    {
        FailureKind.LOCAL_TIMEOUT,
        FailureKind.GATEWAY_TIMEOUT,
        FailureKind.CONNECTION_LOST,
        FailureKind.INTERNAL_ERROR,
    }
)
# Layers that are this service's own: a failure there is not an error the route returned.
OWN_LAYERS = frozenset({Layer.STORAGE, Layer.IMAGE_CHECK, Layer.WORKER})


@dataclass(frozen=True)
class RetryPolicy:
    """Settings of the policy; the defaults follow the field reports."""

    max_attempts: int = 4
    transient_waits_s: tuple[float, ...] = (5.0, 15.0, 30.0)
    rate_limit_max_attempts: int = 6
    rate_limit_base_s: float = 10.0
    rate_limit_cap_s: float = 300.0
    # A floor under every 429 wait: "retry-after: 0" must not become a tight loop.
    rate_limit_min_s: float = 1.0
    # The longest wait a server may ask for; asked for more, the job ends (and says why)
    # rather than sit for hours.
    max_server_wait_s: float = 900.0
    jitter_fraction: float = 0.2
    # "never": give up at once; "after_wait": resend once after post_send_wait_s.
    post_send: str = "after_wait"
    post_send_wait_s: float = 120.0
    post_send_max_resends: int = 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RetryPolicy:
        values = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        if "transient_waits_s" in values:
            values["transient_waits_s"] = tuple(values["transient_waits_s"])
        return cls(**values)


@dataclass(frozen=True)
class Decision:
    retry: bool
    wait_s: float
    reason: str
    # Whether this retry resends after the request was already sent (a possible duplicate).
    post_send_resend: bool = False
    # How the job ends when ``retry`` is False: returned_error or local_timeout.
    failure: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "retry": self.retry,
            "wait_s": round(self.wait_s, 3),
            "reason": self.reason,
            "post_send_resend": self.post_send_resend,
            "failure": self.failure,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Decision:
        return cls(
            retry=data["retry"],
            wait_s=data["wait_s"],
            reason=data["reason"],
            post_send_resend=data.get("post_send_resend", False),
            failure=data.get("failure"),
        )


def failure_category(failure: Failure) -> str:
    """How a job that ends on ``failure`` failed: ``local_timeout`` (one of our limits fired),
    ``internal_error`` (this service's own part: storage, image check, worker), or
    ``returned_error`` (the route, its gateway or the network answered with the failure)."""
    if failure.kind is FailureKind.LOCAL_TIMEOUT:
        return "local_timeout"
    if failure.layer in OWN_LAYERS:
        return "internal_error"
    return "returned_error"


def decide(
    failure: Failure,
    *,
    attempt: int,
    previous: list[Failure],
    policy: RetryPolicy,
    jitter: float,
) -> Decision:
    """What to do after attempt number ``attempt`` (1-based) failed with ``failure``.

    ``previous`` holds the failures of the attempts before this one; ``jitter`` is in [0, 1).
    """
    ends_as = failure_category(failure)
    if failure.kind in NEVER_RETRIED:
        return Decision(False, 0.0, f"{failure.kind.value} is never retried", failure=ends_as)
    if failure.should_retry is False:
        return Decision(False, 0.0, "the server said x-should-retry: false", failure=ends_as)
    if failure.kind is FailureKind.STORAGE_FAILED and failure.sent:
        return Decision(False, 0.0, "storing failed after its own retries", failure=ends_as)

    if failure.kind is FailureKind.RATE_LIMITED:
        limited = 1 + sum(1 for f in previous if f.kind is FailureKind.RATE_LIMITED)
        if limited >= policy.rate_limit_max_attempts:
            return Decision(False, 0.0, f"rate limited {limited} times; giving up", failure=ends_as)
        backoff = min(policy.rate_limit_cap_s, policy.rate_limit_base_s * 2 ** (limited - 1))
        asked = failure.retry_after_s
        if asked is not None and asked > policy.max_server_wait_s:
            return Decision(
                False,
                0.0,
                f"the server asked to wait {asked:g}s, more than the "
                f"{policy.max_server_wait_s:g}s this service waits",
                failure=ends_as,
            )
        base = max(asked, policy.rate_limit_min_s) if asked is not None else backoff
        reason = (
            f"rate limited; the server asked {asked:g}s ({failure.retry_after_source})"
            if asked is not None
            else f"rate limited with no wait given; backoff {backoff:g}s"
        )
        # Jitter only ever adds, so the wait is never below what the server asked.
        return Decision(True, base * (1 + policy.jitter_fraction * jitter), reason)

    if attempt >= policy.max_attempts:
        return Decision(False, 0.0, f"{attempt} attempts made; giving up", failure=ends_as)

    if failure.kind in POST_SEND and failure.sent:
        resends = sum(1 for f in previous if f.kind in POST_SEND and f.sent)
        if policy.post_send == "never" or resends >= policy.post_send_max_resends:
            return Decision(
                False,
                0.0,
                f"{failure.kind.value} after the request was sent; the route may still be "
                "generating, so no (further) resend",
                failure=ends_as,
            )
        wait = policy.post_send_wait_s * (1 + policy.jitter_fraction * jitter)
        return Decision(
            True,
            wait,
            f"{failure.kind.value} at the {failure.layer.value} layer after the request was "
            f"sent; resending once after {policy.post_send_wait_s:g}s",
            post_send_resend=True,
        )

    if failure.kind in TRANSIENT or failure.kind in POST_SEND:
        transient = sum(1 for f in previous if f.kind in TRANSIENT or f.kind in POST_SEND)
        waits = policy.transient_waits_s
        base = waits[min(transient, len(waits) - 1)]
        return Decision(
            True,
            base * (1 + policy.jitter_fraction * jitter),
            f"{failure.kind.value}: bounded retry {transient + 1} after {base:g}s",
        )
    return Decision(False, 0.0, f"{failure.kind.value} has no retry rule", failure=ends_as)
