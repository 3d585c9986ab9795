"""App settings (local.settings.json `Values`) and host.json, read as Core Tools and the host do.

Precedence, as Core Tools' `func start` applies it (StartHostAction.UpdateEnvironmentVariables):
a variable that is already set to a non-empty value in the environment WINS, and the local setting
is skipped with the message "Skipping 'NAME' from local settings as it's already defined in current
environment variables."; a variable that is unset or empty takes the local value. So
`FOO=x python -m devhost` overrides local.settings.json, exactly as `FOO=x func start` does.

Unlike Core Tools, devhost shares its process with whatever started it (tests start one DevHost
after another). So it remembers every name it wrote and the value it replaced, and DevHost puts them
back on stop (`restore_local_settings`); a name devhost itself wrote is never taken for "already
defined in the environment", or a second app would silently keep the first app's values.

When local.settings.json is missing (it is git-ignored: it may hold secrets), devhost falls back to
the committed local.settings.sample.json and says so in the log; Core Tools has no such fallback,
it is a convenience for a fresh clone and for CI.

host.json: `extensions.http.routePrefix` (default "api"), `extensions.durableTask.hubName`,
`extensions.durableTask.maxConcurrentActivityFunctions`, `functionTimeout` (logged only).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "HostConfig",
    "LocalSettings",
    "SettingsError",
    "apply_local_settings",
    "read_host_json",
    "resolve_setting",
    "restore_local_settings",
]

LOCAL_SETTINGS = "local.settings.json"
LOCAL_SETTINGS_SAMPLE = "local.settings.sample.json"
DEFAULT_HUB_NAME = "TestHubName"


class SettingsError(Exception):
    """A settings file that cannot be used; carries the path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


@dataclass(frozen=True)
class LocalSettings:
    """What was read and what was applied (names only in logs: values may be secrets).

    `previous` holds, for each applied name, the value it replaced (None: it was unset), so that
    `restore_local_settings` can undo exactly what was applied.
    """

    path: Path | None
    applied: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    used_sample: bool = False
    previous: Mapping[str, str | None] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class _Written:
    value: str
    replaced: str | None


# Names devhost wrote into os.environ and has not restored yet: the value written and the one it
# replaced. Only os.environ is tracked: it is the one mapping that outlives a DevHost.
_written_to_environ: dict[str, _Written] = {}


def _written_by_devhost(env: Mapping[str, str], name: str) -> _Written | None:
    """The record of devhost's own write, if `name` still holds the value devhost wrote."""
    written = _written_to_environ.get(name) if env is os.environ else None
    if written is None or env.get(name) != written.value:
        return None
    return written


def _read_json(path: Path) -> dict[str, Any]:
    try:
        # Written by hand, sometimes by editors that add a BOM: utf-8-sig reads both.
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise SettingsError(path, f"not readable as JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise SettingsError(path, "the top level is not a JSON object")
    return data


def apply_local_settings(
    app_dir: str | Path,
    environ: MutableMapping[str, str] | None = None,
    log: logging.Logger | None = None,
) -> LocalSettings:
    """Copy `Values` into the environment (environment wins; see the module docstring)."""
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    logger = log or logging.getLogger("devhost")
    app = Path(app_dir)
    path = app / LOCAL_SETTINGS
    used_sample = False
    if not path.exists():
        sample = app / LOCAL_SETTINGS_SAMPLE
        if not sample.exists():
            logger.info(
                "no %s or %s in %s: no app settings applied",
                LOCAL_SETTINGS,
                LOCAL_SETTINGS_SAMPLE,
                app,
            )
            return LocalSettings(path=None)
        logger.warning("%s not found: using %s instead", LOCAL_SETTINGS, sample)
        path = sample
        used_sample = True
    data = _read_json(path)
    if data.get("IsEncrypted") is True:
        raise SettingsError(
            path, "IsEncrypted is true: devhost reads plain values only (`func settings decrypt`)"
        )
    values = data.get("Values", {})
    if not isinstance(values, dict):
        raise SettingsError(path, "'Values' is not a JSON object")
    applied: list[str] = []
    skipped: list[str] = []
    previous: dict[str, str | None] = {}
    for name, value in values.items():
        if not name:
            logger.warning("%s: a setting with an empty name is ignored", path)
            continue
        earlier = _written_by_devhost(env, name)
        if env.get(name) and earlier is None:
            logger.info(
                "Skipping '%s' from local settings as it's already defined in current "
                "environment variables.",
                name,
            )
            skipped.append(name)
            continue
        text = "" if value is None else str(value)
        # A name devhost wrote earlier and never restored: what it replaced then is the real
        # previous value, not devhost's own leftover.
        previous[name] = earlier.replaced if earlier is not None else env.get(name)
        env[name] = text
        if env is os.environ:
            _written_to_environ[name] = _Written(value=text, replaced=previous[name])
        applied.append(name)
    return LocalSettings(
        path=path,
        applied=tuple(applied),
        skipped=tuple(skipped),
        used_sample=used_sample,
        previous=previous,
    )


def restore_local_settings(
    settings: LocalSettings, environ: MutableMapping[str, str] | None = None
) -> None:
    """Undo `apply_local_settings`: each applied name gets back the value it replaced."""
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    for name in settings.applied:
        old = settings.previous.get(name)
        if old is None:
            env.pop(name, None)
        else:
            env[name] = old
        if env is os.environ:
            _written_to_environ.pop(name, None)


_SETTING_REF = re.compile(r"%([^%]+)%")


def resolve_setting(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace every `%Name%` with the app setting `Name`, as binding expressions do.

    A missing setting is an error naming it (the host refuses to index such a function).
    """
    env = os.environ if environ is None else environ

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in env:
            raise KeyError(f"app setting {name!r} (referenced as %{name}%) is not defined")
        return env[name]

    return _SETTING_REF.sub(sub, value)


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json devhost honours."""

    route_prefix: str = "api"
    hub_name: str = DEFAULT_HUB_NAME
    max_concurrent_activities: int = field(default_factory=lambda: 10 * (os.cpu_count() or 1))
    function_timeout: str | None = None
    path: Path | None = None


def read_host_json(app_dir: str | Path, environ: Mapping[str, str] | None = None) -> HostConfig:
    """Read host.json (optional). The hub name defaults as the extension does: from
    WEBSITE_SITE_NAME (non-alphanumerics dropped), else "TestHubName"."""
    env = os.environ if environ is None else environ
    path = Path(app_dir) / "host.json"
    data = _read_json(path) if path.exists() else {}
    extensions = data.get("extensions") or {}
    http = extensions.get("http") or {}
    durable = extensions.get("durableTask") or {}
    prefix = http.get("routePrefix", "api")
    if not isinstance(prefix, str):
        raise SettingsError(path, "extensions.http.routePrefix is not a string")
    site = re.sub(r"[^A-Za-z0-9]", "", env.get("WEBSITE_SITE_NAME", ""))
    hub = durable.get("hubName") or site or DEFAULT_HUB_NAME
    hub = resolve_setting(str(hub), env)
    max_activities = durable.get("maxConcurrentActivityFunctions")
    config = HostConfig(
        route_prefix=prefix.strip("/"),
        hub_name=hub,
        function_timeout=data.get("functionTimeout"),
        path=path if path.exists() else None,
    )
    if max_activities is not None:
        if not isinstance(max_activities, int) or max_activities < 1:
            raise SettingsError(
                path, "extensions.durableTask.maxConcurrentActivityFunctions must be >= 1"
            )
        config = HostConfig(
            route_prefix=config.route_prefix,
            hub_name=config.hub_name,
            max_concurrent_activities=max_activities,
            function_timeout=config.function_timeout,
            path=config.path,
        )
    return config
