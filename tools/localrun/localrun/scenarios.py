"""What the simulator plays, and the app settings that agree with it.

A scenario is a simulator config (None: the simulator's defaults). Whatever the config says about
the model service (its Azure deployment names, the keys it accepts, the API versions, the idle
limit of the gateway in front of it), the stack gives the app matching settings, so that
`make run SCENARIO=azure-gateway` works with nothing else to edit: the same rule for every
scenario, derived from the config the simulator itself loads (`matching_settings`).

    make run SCENARIO=azure-gateway          # python -m localrun run --scenario azure-gateway
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import simulator
from simulator.config import ANY, RouteSettings, SimulatorConfig, load_config

__all__ = ["SCENARIOS", "Scenario", "matching_settings"]

EXAMPLES = Path(simulator.__file__).resolve().parent / "examples"
# The key the app sends where the simulator takes any non-empty key and the app has none.
LOCAL_KEY = "local-simulator-key"


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    simulator_config: Path | None = None

    def config(self) -> SimulatorConfig:
        """The simulator's config, parsed by the simulator's own loader."""
        if self.simulator_config is None:
            return SimulatorConfig()
        return load_config(self.simulator_config)


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "default",
            "the simulator's defaults: any key, Azure deployment gpt-image-2 behind a 60 s "
            "gateway idle limit, no rate limit, no faults",
        ),
        Scenario(
            "azure-gateway",
            "field report B's Azure deployment (seed-004-azure.json): deployment "
            "gpt-image-2-1, key local-azure-key, APIM's 60 s idle limit, 10 requests a minute, "
            "two mid-stream server errors on streamed 2048x2048 requests",
            EXAMPLES / "seed-004-azure.json",
        ),
    )
}

_OWNERS = ("openai", "azure", "gateway")


def matching_settings(config: SimulatorConfig, app: Mapping[str, str]) -> dict[str, str]:
    """The app settings to change so that every route of ``app`` (its effective settings:
    environment over local.settings.json) is one that the simulator under ``config`` accepts.

    For each route owned by `azure` or `openai`: the deployment (a configured deployment of the
    route's model; the app's own if the simulator has it), the API version (if the simulator
    lists them), the key (in the setting the route names, if the simulator accepts only some)
    and the gateway's idle limit (the simulator's, in service seconds: both sides divide it by
    the same time scale). Routes owned by `gateway` and Entra ID auth are left as they are.
    """
    changes: dict[str, str] = {}
    names = [n.strip() for n in app.get("IMAGE_ROUTES", "").split(",") if n.strip()]
    for name in names:
        prefix = f"IMAGE_ROUTE_{name.upper()}_"
        owner = app.get(prefix + "OWNER") or (name if name in _OWNERS else "")
        if owner not in ("azure", "openai"):
            continue
        route: RouteSettings = config.azure if owner == "azure" else config.openai
        if owner == "azure":
            model = app.get(prefix + "MODEL") or "gpt-image-2"
            served = [d.name for d in config.deployments if d.model == model]
            if served and app.get(prefix + "DEPLOYMENT") not in served:
                changes[prefix + "DEPLOYMENT"] = served[0]
            versions = config.api_versions
            if versions != ANY and app.get(prefix + "API_VERSION") not in versions:
                changes[prefix + "API_VERSION"] = versions[0]
        if (app.get(prefix + "AUTH") or "key") == "key":
            key_setting = app.get(prefix + "KEY_SETTING") or prefix + "KEY"
            key = app.get(key_setting, "")
            if route.keys == ANY:
                if not key:
                    changes[key_setting] = LOCAL_KEY
            elif key not in route.keys:
                changes[key_setting] = route.keys[0]
        idle = route.gateway.idle_timeout_s
        if idle is not None:
            changes[prefix + "GATEWAY_IDLE_TIMEOUT_S"] = f"{idle:g}"
    return changes
