"""Typed settings, built once from app settings (local.settings.json ``Values`` locally).

    settings = AppSettings.from_env(os.environ)
    route = settings.route("azure")          # RouteSettings; never holds a secret itself
    key = os.environ[route.key_setting]      # the activity resolves the key at call time

Secrets are referenced, never held: a route names the app setting that carries its key (a Key
Vault reference in Azure), or uses Entra ID. A storage connection string is kept with
``repr=False`` so that no repr of a settings object can leak it. Every malformed value is a
``SettingsInvalid`` naming the setting, never echoing its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

from rules.errors import SettingsInvalid
from rules.models import MODELS, ROUTE_OWNERS

RouteOwner = Literal["openai", "azure", "gateway"]
RouteAuth = Literal["key", "entra", "none"]

DEFAULT_AZURE_API_VERSION = "2025-04-01-preview"
DEFAULT_ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"


@dataclass(frozen=True)
class RouteSettings:
    """One way to reach the model: OpenAI direct, an Azure OpenAI deployment, or a gateway."""

    name: str
    owner: RouteOwner
    base_url: str
    model: str = "gpt-image-2"
    deployment: str | None = None
    api_version: str = DEFAULT_AZURE_API_VERSION
    auth: RouteAuth = "key"
    key_setting: str | None = None
    entra_scope: str = DEFAULT_ENTRA_SCOPE
    # The idle limit of a gateway in front of the model (Azure APIM: 60 s), if one is known.
    gateway_idle_timeout_s: float | None = None


@dataclass(frozen=True)
class JobDefaults:
    """Values a request may leave out."""

    size: str = "1024x1024"
    quality: str = "medium"
    output_format: str = "png"
    background: str = "auto"
    moderation: str = "auto"
    n: int = 1
    # 1, not 0: a silent stream is killed at 60 s behind Azure's gateway (seed 004).
    partial_images: int = 1


@dataclass(frozen=True)
class Timeouts:
    """Per-phase limits of one upstream attempt, in seconds."""

    connect_s: float = 10.0
    read_idle_s: float = 180.0
    request_s: float = 480.0
    upload_s: float = 120.0


@dataclass(frozen=True)
class StorageSettings:
    """Where images go: a connection string (Azurite) or an account URL with managed identity."""

    container: str = "images"
    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None
    link_ttl_s: int = 3600


@dataclass(frozen=True)
class AppSettings:
    routes: Mapping[str, RouteSettings]
    default_route: str
    defaults: JobDefaults = JobDefaults()
    timeouts: Timeouts = Timeouts()
    storage: StorageSettings = StorageSettings()
    status_retry_after_s: int = 2

    def route(self, name: str) -> RouteSettings:
        try:
            return self.routes[name]
        except KeyError:
            raise SettingsInvalid("IMAGE_ROUTES", f"no route named {name!r}") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AppSettings:
        names = [n.strip() for n in env.get("IMAGE_ROUTES", "").split(",") if n.strip()]
        if not names:
            raise SettingsInvalid("IMAGE_ROUTES", "name at least one route, e.g. 'azure'")
        routes = {name: _route_from_env(name, env) for name in names}
        default_route = env.get("IMAGE_DEFAULT_ROUTE", names[0]).strip()
        if default_route not in routes:
            raise SettingsInvalid("IMAGE_DEFAULT_ROUTE", "must be one of IMAGE_ROUTES")
        defaults = JobDefaults(
            size=env.get("IMAGE_DEFAULT_SIZE", JobDefaults.size),
            quality=env.get("IMAGE_DEFAULT_QUALITY", JobDefaults.quality),
            output_format=env.get("IMAGE_DEFAULT_OUTPUT_FORMAT", JobDefaults.output_format),
            background=env.get("IMAGE_DEFAULT_BACKGROUND", JobDefaults.background),
            moderation=env.get("IMAGE_DEFAULT_MODERATION", JobDefaults.moderation),
            n=_int(env, "IMAGE_DEFAULT_N", JobDefaults.n, minimum=1),
            partial_images=_int(
                env, "IMAGE_DEFAULT_PARTIAL_IMAGES", JobDefaults.partial_images, minimum=0
            ),
        )
        timeouts = Timeouts(
            connect_s=_float(env, "IMAGE_CONNECT_TIMEOUT_S", Timeouts.connect_s),
            read_idle_s=_float(env, "IMAGE_READ_IDLE_TIMEOUT_S", Timeouts.read_idle_s),
            request_s=_float(env, "IMAGE_REQUEST_TIMEOUT_S", Timeouts.request_s),
            upload_s=_float(env, "IMAGE_UPLOAD_TIMEOUT_S", Timeouts.upload_s),
        )
        connection_string = env.get("IMAGES_STORAGE_CONNECTION_STRING") or None
        account_url = env.get("IMAGES_STORAGE_ACCOUNT_URL") or None
        if not connection_string and not account_url:
            raise SettingsInvalid(
                "IMAGES_STORAGE_CONNECTION_STRING",
                "set it (Azurite: UseDevelopmentStorage=true) or IMAGES_STORAGE_ACCOUNT_URL",
            )
        storage = StorageSettings(
            container=env.get("IMAGES_CONTAINER", StorageSettings.container),
            connection_string=connection_string,
            account_url=account_url,
            link_ttl_s=_int(env, "IMAGES_LINK_TTL_S", StorageSettings.link_ttl_s, minimum=60),
        )
        return cls(
            routes=routes,
            default_route=default_route,
            defaults=defaults,
            timeouts=timeouts,
            storage=storage,
            status_retry_after_s=_int(env, "IMAGE_STATUS_RETRY_AFTER_S", 2, minimum=1),
        )


def _route_from_env(name: str, env: Mapping[str, str]) -> RouteSettings:
    if not name.replace("_", "").isalnum():
        raise SettingsInvalid("IMAGE_ROUTES", f"route name {name!r} must be letters, digits or _")
    prefix = f"IMAGE_ROUTE_{name.upper()}_"
    owner = env.get(prefix + "OWNER", name if name in ROUTE_OWNERS else "")
    if owner not in ROUTE_OWNERS:
        raise SettingsInvalid(prefix + "OWNER", f"must be one of {', '.join(ROUTE_OWNERS)}")
    base_url = env.get(prefix + "BASE_URL", "").strip().rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise SettingsInvalid(prefix + "BASE_URL", "must be an http(s) URL")
    model = env.get(prefix + "MODEL", "gpt-image-2")
    if model not in MODELS:
        raise SettingsInvalid(prefix + "MODEL", f"no request rules for {model!r}")
    deployment = env.get(prefix + "DEPLOYMENT") or None
    if owner == "azure" and not deployment:
        raise SettingsInvalid(prefix + "DEPLOYMENT", "an azure route needs its deployment name")
    auth = env.get(prefix + "AUTH", "key")
    if auth not in ("key", "entra", "none"):
        raise SettingsInvalid(prefix + "AUTH", "must be key, entra or none")
    key_setting = env.get(prefix + "KEY_SETTING", prefix + "KEY") if auth == "key" else None
    idle = env.get(prefix + "GATEWAY_IDLE_TIMEOUT_S", "")
    return RouteSettings(
        name=name,
        owner=cast(RouteOwner, owner),
        base_url=base_url,
        model=model,
        deployment=deployment,
        api_version=env.get(prefix + "API_VERSION", DEFAULT_AZURE_API_VERSION),
        auth=cast(RouteAuth, auth),
        key_setting=key_setting,
        entra_scope=env.get(prefix + "ENTRA_SCOPE", DEFAULT_ENTRA_SCOPE),
        gateway_idle_timeout_s=_float(env, prefix + "GATEWAY_IDLE_TIMEOUT_S", 0.0)
        if idle
        else None,
    )


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsInvalid(name, "must be a whole number") from None
    if value < minimum:
        raise SettingsInvalid(name, f"must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsInvalid(name, "must be a number of seconds") from None
    if value <= 0:
        raise SettingsInvalid(name, "must be more than 0")
    return value
