"""The timeout budget: a chain of limits, each layer waiting on the one inside it.

Field report A (docs/reference/field-reports.md): "A safe timeout budget is not one large number
pasted everywhere. It is a chain of limits where the outer product experience, backend worker,
proxy, gateway, and API client all know whether they are waiting". Each pair below is (inner,
outer): the outer layer waits on the inner one, so the inner limit must not exceed it, or the outer
layer gives up first and the failure is blamed on the wrong layer. ``check`` runs when settings are
built, at start-up, and names the pair that is wrong.

    client poll (how long a client keeps polling a job)
      └ activity (functionTimeout: one attempt, send to stored image)
          └ whole request (one upstream attempt, headers to last byte) + upload
              ├ upstream read idle (no byte for this long)
              │   └ gateway idle (the route's gateway in front of the model, when declared)
              └ upstream connect
    client HTTP (a client's timeout for one call) └ HTTP starter (answers 202 at once)
                                                     └ Azure front end (230 s, fixed)
"""

from __future__ import annotations

from dataclasses import dataclass

from rules.errors import SettingsInvalid

AZURE_FRONT_END_S = 230.0


@dataclass(frozen=True)
class Limit:
    """One layer's limit in the chain: the setting that holds it, and its seconds."""

    setting: str
    seconds: float


@dataclass(frozen=True)
class TimeoutBudget:
    client_poll: Limit
    client_http: Limit
    http_starter: Limit
    activity: Limit
    request: Limit
    upload: Limit
    read_idle: Limit
    connect: Limit

    def pairs(self, gateway_idle: list[Limit]) -> list[tuple[Limit, Limit]]:
        """(inner, outer) pairs; an attempt's request and upload together sit in the activity."""
        attempt = Limit(
            f"{self.request.setting} + {self.upload.setting}",
            self.request.seconds + self.upload.seconds,
        )
        front_end = Limit("the Azure front end's fixed limit", AZURE_FRONT_END_S)
        pairs = [
            (self.activity, self.client_poll),
            (attempt, self.activity),
            (self.read_idle, self.request),
            (self.connect, self.request),
            (self.http_starter, self.client_http),
            (self.http_starter, front_end),
        ]
        pairs += [(gateway, self.read_idle) for gateway in gateway_idle]
        return pairs

    def check(self, gateway_idle: list[Limit]) -> None:
        for inner, outer in self.pairs(gateway_idle):
            if inner.seconds > outer.seconds:
                raise SettingsInvalid(
                    inner.setting.split(" ")[0],
                    f"{inner.setting} ({inner.seconds:g}s) exceeds {outer.setting} "
                    f"({outer.seconds:g}s), which waits on it: the outer layer would give up "
                    "first and the failure would be blamed on the wrong layer",
                )
