"""The CLI's polling: state changes shown once each, failed polls retried, never a restart."""

from __future__ import annotations

import httpx

from clients.cli import JobClient, follow


def answers(*items: tuple[int, dict[str, object]]) -> httpx.MockTransport:
    queue = list(items)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = queue.pop(0) if len(queue) > 1 else queue[0]
        return httpx.Response(status, json=body, headers={"retry-after": "1"})

    transport = httpx.MockTransport(handler)
    transport.seen = seen  # type: ignore[attr-defined]
    return transport


def test_follow_reports_each_change_retries_failed_polls_and_never_starts_again():
    job = {"id": "j1", "stateText": "", "previews": []}
    transport = answers(
        (202, {**job, "state": "queued", "attempt": 0}),
        (202, {**job, "state": "generating", "attempt": 1}),
        (503, {"error": "busy"}),
        (202, {**job, "state": "generating", "attempt": 1}),
        (202, {**job, "state": "preview_available", "attempt": 1, "previews": [{"index": 0}]}),
        (200, {**job, "state": "saved", "attempt": 1}),
    )
    client = JobClient("http://service", "key-1", httpx.Client(transport=transport))
    changes: list[str] = []
    waits: list[float] = []
    final = follow(client, "j1", on_change=lambda s: changes.append(s["state"]), sleep=waits.append)
    assert final["state"] == "saved"
    assert changes == ["queued", "generating", "preview_available", "saved"]
    requests = transport.seen  # type: ignore[attr-defined]
    assert {r.method for r in requests} == {"GET"}
    assert all(r.headers["x-functions-key"] == "key-1" for r in requests)
    assert waits == [1.0] * 5  # the pace the service asked for, the failed poll included
