"""Settings of the simulator: typed, frozen, built once from an optional JSON file.

Everything docs/reference/gpt-image-2-api.md marks UNCERTAIN, and every behaviour a test wants to
switch, is a setting here; the rest of the simulator reads these objects and never a file or the
environment. With no file the defaults are: any non-empty key is accepted, one Azure deployment
``gpt-image-2`` (model gpt-image-2), rate limits and faults off, time scale 1, no keep-alives.

    config = load_config("simulator/examples/azure-gateway.json")
    config = SimulatorConfig()                       # the defaults
    config = dataclasses.replace(config, time_scale=100)

Every key is documented in docs/simulator.md. Keys are never shown in ``repr``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from simulator.batches import BatchSettings
from simulator.faults import FaultSpec, parse_fault
from simulator.latency import LatencyParams
from simulator.ratelimit import RateLimitRule
from simulator.usage import Prices, TokenTable
from simulator.validation import ValidationSettings

__all__ = [
    "ANY",
    "ConfigError",
    "Deployment",
    "GatewaySettings",
    "RouteSettings",
    "SimulatorConfig",
    "config_from_dict",
    "load_config",
]

ANY: Literal["any"] = "any"


class ConfigError(ValueError):
    """A configuration file or mapping that cannot be used; the message names the bad key."""


@dataclasses.dataclass(frozen=True)
class GatewaySettings:
    """What sits in front of the model service on a route (Azure: APIM).

    ``idle_timeout_s``: seconds (service time, divided by the time scale) without a byte to the
    client after which the gateway answers 408 ``Timeout`` while the generation runs on. None
    switches it off. ``idle_until_first_byte``: the limit only runs until the first byte (seed
    004: one partial image in the first minute carries a 245 s stream through, so APIM's limit
    is a wait for the response to start); false applies it to every gap, after which the
    gateway cuts the connection. ``idle_timeout_non_streamed``: apply it to non-streamed
    requests too (off by default: Microsoft recommends non-streamed requests for long jobs).
    ``proxy_idle_timeout_s``: a generic reverse proxy's read timeout answering 504 before the
    first byte and cutting the connection after it, for every gap (None: off).
    """

    idle_timeout_s: float | None = None
    idle_until_first_byte: bool = True
    idle_timeout_non_streamed: bool = False
    proxy_idle_timeout_s: float | None = None


@dataclasses.dataclass(frozen=True)
class RouteSettings:
    """One route owner: "openai" (``/v1``) or "azure" (deployment path and ``/openai/v1``).

    ``keys``: accepted API keys, or "any" (any non-empty key). ``entra_tokens``: accepted Entra ID
    bearer tokens on Azure, "any" (any non-empty bearer) or an empty tuple (none). ``speed``:
    latency multiplier (2.0 = twice as fast). ``keep_alive_s``: interval of ``: keep-alive``
    comment lines in streams (None: never, as at OpenAI). ``insufficient_quota``: every request
    answers 429 insufficient_quota. ``region``: the ``x-ms-region`` header (Azure).
    ``default_model``: the model of an OpenAI-route request whose body names none (None: such a
    request gets 400 ``missing_required_parameter``, as from the real API for gpt-image models).
    ``rate_limit_error``: the shape of a rate-limit 429, "openai" (``rate_limit_exceeded``,
    "Please try again in 1.2s.") or "azure" (``{"code": "429", "message": "... Please retry
    after N seconds. ..."}``); the Azure route's default is "azure". ``sse_dialect``: how
    streams are written, "event_lines" (an ``event:`` line and a ``data:`` line per event, as
    OpenAI and Azure write them) or "data_only" (``data:`` lines alone, the JSON ``type``
    naming each event, and ``data: [DONE]`` at the end, as some compatible gateways write them).
    """

    keys: tuple[str, ...] | Literal["any"] = dataclasses.field(default=ANY, repr=False)
    entra_tokens: tuple[str, ...] | Literal["any"] = dataclasses.field(default=ANY, repr=False)
    speed: float = 1.0
    gateway: GatewaySettings = GatewaySettings()
    rate_limit: RateLimitRule | None = None
    keep_alive_s: float | None = None
    insufficient_quota: bool = False
    region: str = "Sweden Central"
    default_model: str | None = None
    rate_limit_error: Literal["openai", "azure"] = "openai"
    sse_dialect: Literal["event_lines", "data_only"] = "event_lines"


@dataclasses.dataclass(frozen=True)
class Deployment:
    """An Azure deployment: its name in URLs (and in ``model`` on the v1 path) and its model."""

    name: str
    model: str = "gpt-image-2"
    rate_limit: RateLimitRule | None = None


def _default_azure() -> RouteSettings:
    return RouteSettings(gateway=GatewaySettings(idle_timeout_s=60.0), rate_limit_error="azure")


@dataclasses.dataclass(frozen=True)
class SimulatorConfig:
    """The whole configuration. See docs/simulator.md for every key."""

    openai: RouteSettings = RouteSettings()
    azure: RouteSettings = dataclasses.field(default_factory=_default_azure)
    deployments: tuple[Deployment, ...] = (Deployment("gpt-image-2"),)
    models: tuple[str, ...] = ("gpt-image-2",)
    api_versions: tuple[str, ...] | Literal["any"] = ANY
    latency: LatencyParams = dataclasses.field(default_factory=LatencyParams)
    prices: Prices = dataclasses.field(default_factory=Prices)
    tokens: TokenTable = dataclasses.field(default_factory=TokenTable)
    validation: ValidationSettings = dataclasses.field(default_factory=ValidationSettings)
    batch: BatchSettings = dataclasses.field(default_factory=BatchSettings)
    time_scale: float = 1.0
    seed: int = 0
    bill_failed_generations: bool = False
    render_ahead_s: float = 3.0
    render_cache_mb: float = 256.0
    faults: tuple[FaultSpec, ...] = ()

    def route(self, owner: str) -> RouteSettings:
        if owner == "openai":
            return self.openai
        if owner == "azure":
            return self.azure
        raise KeyError(f"unknown route owner {owner!r}")

    def deployment(self, name: str) -> Deployment | None:
        return next((d for d in self.deployments if d.name == name), None)


# --- loading ------------------------------------------------------------------------------------


def load_config(path: str | Path) -> SimulatorConfig:
    """Read a JSON file into a SimulatorConfig; errors name the file and the bad key."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read simulator config {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"simulator config {path} is not valid JSON: {exc}") from exc
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"simulator config {path}: {exc}") from exc


def config_from_dict(raw: object) -> SimulatorConfig:
    """Build a SimulatorConfig from parsed JSON (the shape of docs/simulator.md)."""
    obj = _mapping(raw, "the top level")
    fields: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(SimulatorConfig)}
    _reject_unknown(obj, known | {"$comment"}, "")
    for name, value in obj.items():
        if name == "$comment":
            continue
        if name in ("openai", "azure"):
            base = SimulatorConfig().route(name)
            fields[name] = _route(value, name, base)
        elif name == "deployments":
            fields[name] = _deployments(value)
        elif name == "faults":
            fields[name] = _faults(value)
        elif name == "models":
            fields[name] = _strings(value, "models", allow_any=False)
        elif name == "api_versions":
            fields[name] = _strings(value, "api_versions", allow_any=True)
        elif name == "latency":
            fields[name] = _dataclass_from(LatencyParams, value, "latency")
        elif name == "prices":
            fields[name] = _dataclass_from(Prices, value, "prices")
        elif name == "tokens":
            fields[name] = _dataclass_from(TokenTable, value, "tokens")
        elif name == "validation":
            fields[name] = _dataclass_from(ValidationSettings, value, "validation")
        elif name == "batch":
            fields[name] = _dataclass_from(BatchSettings, value, "batch")
        elif name == "time_scale":
            fields[name] = _positive(value, "time_scale")
        elif name == "seed":
            fields[name] = _typed(value, int, "seed")
        elif name in ("render_ahead_s", "render_cache_mb"):
            fields[name] = _typed(value, float, name)
            if fields[name] < 0:
                raise ConfigError(f"{name}: expected a number >= 0, got {value!r}")
        elif name == "bill_failed_generations":
            fields[name] = _typed(value, bool, name)
    return SimulatorConfig(**fields)


def _route(raw: object, where: str, base: RouteSettings) -> RouteSettings:
    obj = _mapping(raw, where)
    _reject_unknown(obj, {f.name for f in dataclasses.fields(RouteSettings)}, where)
    fields: dict[str, Any] = {}
    for name, value in obj.items():
        key = f"{where}.{name}"
        if name == "keys":
            fields[name] = _strings(value, key, allow_any=True, non_empty=True)
        elif name == "entra_tokens":
            fields[name] = _strings(value, key, allow_any=True)
        elif name == "speed":
            fields[name] = _positive(value, key)
        elif name == "gateway":
            fields[name] = _gateway(value, key, base.gateway)
        elif name == "rate_limit":
            fields[name] = None if value is None else _rate_rule(value, key)
        elif name == "keep_alive_s":
            fields[name] = None if value is None else _positive(value, key)
        elif name == "insufficient_quota":
            fields[name] = _typed(value, bool, key)
        elif name == "region":
            fields[name] = _typed(value, str, key)
        elif name == "default_model":
            fields[name] = None if value is None else _typed(value, str, key)
        elif name == "rate_limit_error":
            if value not in ("openai", "azure"):
                raise ConfigError(f'{key}: expected "openai" or "azure", got {value!r}')
            fields[name] = value
        elif name == "sse_dialect":
            if value not in ("event_lines", "data_only"):
                raise ConfigError(f'{key}: expected "event_lines" or "data_only", got {value!r}')
            fields[name] = value
    return dataclasses.replace(base, **fields)


def _gateway(raw: object, where: str, base: GatewaySettings) -> GatewaySettings:
    obj = _mapping(raw, where)
    _reject_unknown(obj, {f.name for f in dataclasses.fields(GatewaySettings)}, where)
    fields: dict[str, Any] = {}
    for name, value in obj.items():
        key = f"{where}.{name}"
        if name in ("idle_timeout_non_streamed", "idle_until_first_byte"):
            fields[name] = _typed(value, bool, key)
        else:
            fields[name] = None if value is None else _positive(value, key)
    return dataclasses.replace(base, **fields)


def _deployments(raw: object) -> tuple[Deployment, ...]:
    obj = _mapping(raw, "deployments")
    result = []
    for name, value in obj.items():
        key = f"deployments.{name}"
        if not name:
            raise ConfigError("deployments: a deployment name must not be empty")
        if isinstance(value, str):
            result.append(Deployment(name=name, model=value))
            continue
        spec = _mapping(value, key)
        _reject_unknown(spec, {"model", "rate_limit"}, key)
        model = _typed(spec.get("model", "gpt-image-2"), str, f"{key}.model")
        rule = spec.get("rate_limit")
        result.append(
            Deployment(
                name=name,
                model=model,
                rate_limit=None if rule is None else _rate_rule(rule, f"{key}.rate_limit"),
            )
        )
    return tuple(result)


def _rate_rule(raw: object, where: str) -> RateLimitRule:
    rule: RateLimitRule = _dataclass_from(RateLimitRule, raw, where)
    return rule


def _faults(raw: object) -> tuple[FaultSpec, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"faults: expected a list of fault objects, got {type(raw).__name__}")
    specs = []
    for index, item in enumerate(raw):
        try:
            specs.append(parse_fault(_mapping(item, f"faults[{index}]")))
        except ValueError as exc:
            raise ConfigError(f"faults[{index}]: {exc}") from exc
    return tuple(specs)


# --- small typed readers --------------------------------------------------------------------------


def _mapping(raw: object, where: str) -> Mapping[str, object]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'the top level'}: expected an object, got {_kind(raw)}")
    return raw


def _reject_unknown(obj: Mapping[str, object], known: set[str], where: str) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]} (known keys: {', '.join(sorted(known))})"
        )


def _typed(value: object, kind: type[Any], key: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got a boolean")
    if not isinstance(value, kind):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {_kind(value)}")
    return value


def _positive(value: object, key: str) -> float:
    number = _typed(value, float, key)
    if not number > 0:
        raise ConfigError(f"{key}: expected a positive number, got {number!r}")
    return float(number)


def _strings(
    value: object, key: str, *, allow_any: bool, non_empty: bool = False
) -> tuple[str, ...] | Literal["any"]:
    if allow_any and value == ANY:
        return ANY
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        expected = 'a list of strings or "any"' if allow_any else "a list of strings"
        raise ConfigError(f"{key}: expected {expected}")
    if non_empty and any(not item for item in value):
        raise ConfigError(f"{key}: an entry is empty")
    return tuple(value)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _dataclass_from(cls: type[Any], raw: object, where: str) -> Any:
    """Build one of the pure modules' frozen dataclasses from JSON, checking names and types."""
    obj = _mapping(raw, where)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    _reject_unknown(obj, known, where)
    values: dict[str, Any] = {}
    for name, value in obj.items():
        values[name] = _coerce(value, hints.get(name, object), f"{where}.{name}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _coerce(value: object, hint: Any, key: str) -> Any:
    """JSON value -> the annotated type (floats from ints, tuples from lists, Literal checks)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: unexpected value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_kind(value)}")
        item_hint = args[0] if args else object
        return tuple(_coerce(item, item_hint, f"{key}[{i}]") for i, item in enumerate(value))
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        value_hint = args[1] if len(args) == 2 else object
        return {
            name: _coerce(item, value_hint, f"{key}.{name}")
            for name, item in _mapping(value, key).items()
        }
    if hint in (float, int, str, bool):
        return _typed(value, hint, key)
    if hint is object:
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _dataclass_from(hint, value, key)
    return value
