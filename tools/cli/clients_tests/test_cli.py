"""The CLI's polling: state changes shown once each, failed polls retried, never a restart."""

from __future__ import annotations

import json

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


def test_an_edit_uploads_each_image_to_its_link_then_names_it(tmp_path, monkeypatch):
    from clients import cli

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/uploads":
            number = sum(1 for r in seen if r.url.path == "/api/uploads")
            link = {"upload": f"upl-{number}", "url": f"http://blob/u{number}", "headers": {}}
            return httpx.Response(201, json=link)
        if request.method == "PUT":
            return httpx.Response(201)
        return httpx.Response(202, json={"id": "j1", "statusUrl": "http://service/j1"})

    transport = httpx.MockTransport(handler)
    monkeypatch.setattr(
        cli, "JobClient", lambda url, key: JobClient(url, key, httpx.Client(transport=transport))
    )
    (tmp_path / "a.png").write_bytes(b"image-a")
    (tmp_path / "m.png").write_bytes(b"mask")
    argv = ["generate", "--prompt", "x", "--image", str(tmp_path / "a.png")]
    assert cli.main([*argv, "--mask", str(tmp_path / "m.png")]) == 0
    puts = [r for r in seen if r.method == "PUT"]
    assert [r.content for r in puts] == [b"image-a", b"mask"]
    started = json.loads(seen[-1].content)
    assert started["images"] == [{"upload": "upl-1"}]
    assert started["mask"] == {"upload": "upl-2"}
