"""A webhook receiver for tests: a loopback server that checks each delivery's signature with
the standardwebhooks library, as a real receiver would, and answers as scripted.

    with Receiver() as receiver:             # http://127.0.0.1:<port>/hook
        receiver.secret = "whsec_..."        # GET /api/webhook-secret's answer
        receiver.answers = [500]             # the first delivery gets a 500, the rest 200
        ...
        receiver.deliveries                  # every request, in arrival order
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from loopserver import BackgroundServer


@dataclass(frozen=True)
class Delivery:
    """One request as the receiver saw it: its signature headers, body, the query it came
    with, whether the signature verified, and the status it was answered with."""

    webhook_id: str
    timestamp: int
    signature: str
    body: str
    query: str
    verified: bool
    answered: int
    headers: dict[str, str]

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class Receiver:
    def __init__(self) -> None:
        self.secret: str | None = None
        self.answers: list[int] = []
        self._deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._server = BackgroundServer(app, host="127.0.0.1", port=0)

    @property
    def url(self) -> str:
        return f"{self._server.url}/hook"

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def of(self, job_id: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.verified and d.payload["data"]["id"] == job_id]

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.text()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = False
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        with self._lock:
            status = self.answers.pop(0) if self.answers else 200
            self._deliveries.append(
                Delivery(
                    webhook_id=headers.get("webhook-id", ""),
                    timestamp=int(headers.get("webhook-timestamp", "0")),
                    signature=headers.get("webhook-signature", ""),
                    body=body,
                    query=request.query_string,
                    verified=verified,
                    answered=status,
                    headers=headers,
                )
            )
        return web.Response(status=status, text="ok" if status < 300 else "not now")

    def __enter__(self) -> Receiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
