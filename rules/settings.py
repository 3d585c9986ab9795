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

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, cast

from rules.budget import Limit, TimeoutBudget
from rules.errors import SettingsInvalid
from rules.models import MODELS, ROUTE_OWNERS
from rules.pacing import Pace
from rules.retry import RetryPolicy
from rules.webhooks import WebhookSettings

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
    # Whether that gateway also kills a non-streamed request that is silent that long (APIM's
    # 60 s kill is reported for streams; a non-streamed answer is one body at the end).
    gateway_idle_non_streamed: bool = False
    # A response header in which a gateway says how many times it retried on its own (e.g.
    # LiteLLM's x-litellm-attempted-retries); those retries are counted apart from ours.
    gateway_retry_header: str | None = None
    # The route's limits, which its governor (rules.pacing) keeps for every job together: None
    # is not limited (the route's x-ratelimit-limit-* headers still set a limit when they give
    # one). ``burst`` is how many sends may go at once; 1 spreads them evenly.
    requests_per_minute: int | None = None
    images_per_minute: int | None = None
    concurrency: int | None = None
    burst: int = 1
    # A job whose attempt failed before its request was sent may move to this route, when it is
    # healthier (rules.failover); never after a send.
    failover_to: str | None = None
    # Whether a batch whose deadline allows it may go through the route's Batch API (files and
    # batches endpoints; half price, 24 h window: rules.batches). Azure needs a Global Batch
    # deployment for it.
    batch_api: bool = False


@dataclass(frozen=True)
class JobDefaults:
    """Values a request may leave out."""

    size: str = "1024x1024"
    quality: str = "medium"
    output_format: str = "png"
    background: str = "auto"
    moderation: str = "auto"
    n: int = 1
    # 1, not 0: a silent stream is killed at 60 s behind Azure's gateway (field report B).
    partial_images: int = 1


@dataclass(frozen=True)
class Timeouts:
    """The timeout budget in seconds: one upstream attempt's phases and the layers around it."""

    connect_s: float = 10.0
    # Long on purpose: after the last partial image a 4K high image can be silent for ~5 min.
    read_idle_s: float = 360.0
    request_s: float = 900.0
    # Long: an image that arrived is billed; storage gets minutes to come back before it is lost.
    upload_s: float = 600.0
    # One activity invocation; keep equal to host.json functionTimeout (30 minutes).
    activity_s: float = 1800.0
    # How long the starter may take to answer (it answers at once; this bounds a slow store).
    http_starter_s: float = 10.0
    # What clients are told to expect: one HTTP call's timeout, and how long to keep polling.
    client_http_s: float = 30.0
    client_poll_s: float = 3600.0

    @property
    def pre_send_storage_s(self) -> float:
        """How long an attempt waits for storage before its send (to read its record and write
        its sent mark): the activity's time that the request and the upload leave over."""
        return max(0.0, self.activity_s - self.request_s - self.upload_s)


TIMEOUT_SETTINGS = {
    "connect_s": "IMAGE_CONNECT_TIMEOUT_S",
    "read_idle_s": "IMAGE_READ_IDLE_TIMEOUT_S",
    "request_s": "IMAGE_REQUEST_TIMEOUT_S",
    "upload_s": "IMAGE_UPLOAD_TIMEOUT_S",
    "activity_s": "IMAGE_ACTIVITY_TIMEOUT_S",
    "http_starter_s": "IMAGE_HTTP_STARTER_TIMEOUT_S",
    "client_http_s": "IMAGE_CLIENT_HTTP_TIMEOUT_S",
    "client_poll_s": "IMAGE_CLIENT_POLL_TIMEOUT_S",
}


@dataclass(frozen=True)
class StorageSettings:
    """Where images go: a connection string (Azurite) or an account URL with managed identity."""

    container: str = "images"
    # Manifests, batch waves, results and reports (rules.batches).
    batches_container: str = "batches"
    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None
    link_ttl_s: int = 3600


@dataclass(frozen=True)
class BatchSettings:
    """How batches run (rules.batches)."""

    # NCRONTAB (six fields) of the timer that claims manifests dropped under incoming/ (the
    # timer trigger reads the IMAGE_BATCH_SCHEDULE setting itself; this copy is for the docs
    # and checks).
    schedule: str = "0 */1 * * * *"
    # Items per wave: the manifest is split into waves, read one at a time.
    wave: int = 100
    # Items running at once (sub-orchestrations; the route's governor paces their sends): as
    # one ends the next starts.
    in_flight: int = 200
    # Waves per orchestration execution before it continues as new (a small history); the
    # items in flight end first.
    waves_per_execution: int = 5
    # The caller a manifest dropped in the container runs as.
    caller: str = "batch"
    # How often a Batch API batch is polled (route seconds).
    batch_api_poll_s: float = 60.0


@dataclass(frozen=True)
class AppSettings:
    routes: Mapping[str, RouteSettings]
    default_route: str
    defaults: JobDefaults = JobDefaults()
    timeouts: Timeouts = Timeouts()
    storage: StorageSettings = StorageSettings()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    status_retry_after_s: int = 2
    # How long a status poll that comes when the image may be stored any moment is held for a
    # change (seconds; 0: answered at once).
    status_hold_s: float = 3.0
    # What to do with partial_images 0 behind a gateway that kills silent streams:
    # "partial_images" (send 1) or "non_streaming".
    silent_stream_fix: str = "partial_images"
    # A finished job is returned again for the same Idempotency-Key within this window.
    idempotency_window_s: int = 86_400
    # The caller when no Easy Auth principal is present (x-ms-client-principal-id).
    default_caller: str = "anonymous"
    # Whether x-ms-client-principal-id names the caller: only behind Easy Auth, which sets it
    # and strips it from client requests (App Service sets WEBSITE_AUTH_ENABLED=True).
    trust_principal_header: bool = False
    # The key of the HMAC that turns (caller, key or request) into a job id, so an id reveals
    # nothing of the prompt; a Key Vault reference in Azure.
    job_id_secret: bytes = field(default=b"", repr=False)
    # Local runs only (IMAGE_TIME_SCALE): every duration that is measured against the model's
    # time (generation estimates, idle and request limits, the retry policy's waits) is divided
    # by it, to match a simulator running at the same time scale. Already applied to
    # ``timeouts``, ``routes`` and ``retry``; 1 in Azure.
    time_scale: float = 1.0
    # The API's public base URL (e.g. https://jobs.example.com/api): the URLs answers hand out
    # are built on it, never on a client-supplied Host alone. None: the request's own URL.
    public_base_url: str | None = None
    # Blob containers (of the images account) from which a start request may name an edit's
    # input images as ``container/name`` (IMAGE_INPUT_CONTAINERS); every caller may read every
    # blob in them through a job. Uploads (POST /api/uploads) need none.
    input_containers: tuple[str, ...] = ()
    # Whether the shared default caller (no trusted principal: every key holder alike) may list
    # jobs; off, the list is for callers with an identity of their own (Easy Auth).
    shared_caller_may_list: bool = False
    batches: BatchSettings = field(default_factory=lambda: BatchSettings())
    # Webhook deliveries (rules.webhooks): off without IMAGE_WEBHOOK_SECRET.
    webhooks: WebhookSettings = field(default_factory=lambda: WebhookSettings())

    def pace(self, name: str) -> Pace:
        """The route's limits for its governor, in the route's time (a minute is 60 s, or
        60 / IMAGE_TIME_SCALE in a scaled local run)."""
        route = self.route(name)
        return Pace(
            requests_per_minute=route.requests_per_minute,
            images_per_minute=route.images_per_minute,
            concurrency=route.concurrency,
            burst=route.burst,
            window_s=60.0 / self.time_scale,
            lease_s=self.timeouts.activity_s,
        )

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
        for route in routes.values():
            if route.failover_to is not None and route.failover_to not in routes:
                raise SettingsInvalid(
                    f"IMAGE_ROUTE_{route.name.upper()}_FAILOVER_TO", "must name one of IMAGE_ROUTES"
                )
            if route.failover_to == route.name:
                raise SettingsInvalid(
                    f"IMAGE_ROUTE_{route.name.upper()}_FAILOVER_TO", "must name another route"
                )
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
            **{
                name: _float(env, setting, getattr(Timeouts, name))
                for name, setting in TIMEOUT_SETTINGS.items()
            }
        )
        check_budget(timeouts, routes.values())
        silent_fix = env.get("IMAGE_SILENT_STREAM_FIX", "partial_images")
        if silent_fix not in ("partial_images", "non_streaming"):
            raise SettingsInvalid(
                "IMAGE_SILENT_STREAM_FIX", "must be partial_images or non_streaming"
            )
        scale = _time_scale(env)
        connection_string = env.get("IMAGES_STORAGE_CONNECTION_STRING") or None
        account_url = env.get("IMAGES_STORAGE_ACCOUNT_URL") or None
        if not connection_string and not account_url:
            raise SettingsInvalid(
                "IMAGES_STORAGE_CONNECTION_STRING",
                "set it (Azurite: UseDevelopmentStorage=true) or IMAGES_STORAGE_ACCOUNT_URL",
            )
        storage = StorageSettings(
            container=env.get("IMAGES_CONTAINER", StorageSettings.container),
            batches_container=env.get("IMAGE_BATCHES_CONTAINER", StorageSettings.batches_container),
            connection_string=connection_string,
            account_url=account_url,
            link_ttl_s=_int(env, "IMAGES_LINK_TTL_S", StorageSettings.link_ttl_s, minimum=60),
        )
        settings = cls(
            routes={name: _scaled_route(route, scale) for name, route in routes.items()},
            default_route=default_route,
            defaults=defaults,
            timeouts=_scaled_timeouts(timeouts, scale),
            storage=storage,
            retry=_scaled_policy(_retry_policy(env), scale),
            status_retry_after_s=_int(env, "IMAGE_STATUS_RETRY_AFTER_S", 2, minimum=1),
            status_hold_s=_seconds_or_zero(env, "IMAGE_STATUS_HOLD_S", 3.0),
            silent_stream_fix=silent_fix,
            idempotency_window_s=_int(env, "IMAGE_IDEMPOTENCY_WINDOW_S", 86_400, minimum=0),
            default_caller=env.get("IMAGE_DEFAULT_CALLER", "anonymous") or "anonymous",
            trust_principal_header=_trust_principal(env),
            job_id_secret=_job_id_secret(env),
            time_scale=scale,
            public_base_url=_public_base_url(env),
            input_containers=_input_containers(env, storage.container),
            shared_caller_may_list=_bool(env, "IMAGE_SHARED_CALLER_MAY_LIST", False),
            batches=BatchSettings(
                schedule=env.get("IMAGE_BATCH_SCHEDULE", BatchSettings.schedule),
                wave=_int(env, "IMAGE_BATCH_WAVE", BatchSettings.wave, minimum=1),
                in_flight=_int(env, "IMAGE_BATCH_IN_FLIGHT", BatchSettings.in_flight, minimum=1),
                waves_per_execution=_int(
                    env,
                    "IMAGE_BATCH_WAVES_PER_EXECUTION",
                    BatchSettings.waves_per_execution,
                    minimum=1,
                ),
                caller=env.get("IMAGE_BATCH_CALLER", BatchSettings.caller) or "batch",
                batch_api_poll_s=_float(
                    env, "IMAGE_BATCH_API_POLL_S", BatchSettings.batch_api_poll_s
                )
                / scale,
            ),
            webhooks=WebhookSettings.from_env(env, scale),
        )
        check_silence(settings)
        return settings


def check_silence(settings: AppSettings) -> None:
    """Raise SettingsInvalid when a route's slowest request fits no idle limit on its path."""
    # Imported here: the send plan is built on this module's types.
    from rules.send_plan import unfit_worst_case

    for route in settings.routes.values():
        problem = unfit_worst_case(route, settings)
        if problem:
            raise SettingsInvalid("IMAGE_REQUEST_TIMEOUT_S", problem)


# Limits measured against the model's time; the others (connect, the HTTP starter, a client's
# one call) are about the network and the host, and keep their seconds.
SCALED_TIMEOUTS = ("read_idle_s", "request_s", "upload_s", "activity_s", "client_poll_s")
SCALED_WAITS = (
    "rate_limit_base_s",
    "rate_limit_cap_s",
    "rate_limit_min_s",
    "max_server_wait_s",
    "post_send_wait_s",
)


def _public_base_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("IMAGE_PUBLIC_BASE_URL", "").strip().rstrip("/")
    if not raw:
        return None
    if not raw.startswith(("http://", "https://")) or "?" in raw or "#" in raw:
        raise SettingsInvalid("IMAGE_PUBLIC_BASE_URL", "must be an http(s) URL without query")
    return raw


def _input_containers(env: Mapping[str, str], own: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in env.get("IMAGE_INPUT_CONTAINERS", "").split(",") if n.strip())
    for name in names:
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}", name):
            raise SettingsInvalid("IMAGE_INPUT_CONTAINERS", f"{name!r} is not a container name")
        if name == own:
            # It holds every job's images: a caller could edit another caller's image.
            raise SettingsInvalid(
                "IMAGE_INPUT_CONTAINERS", "must not name the images container itself"
            )
    return names


def _time_scale(env: Mapping[str, str]) -> float:
    scale = _float(env, "IMAGE_TIME_SCALE", 1.0)
    if scale < 1:
        raise SettingsInvalid("IMAGE_TIME_SCALE", "must be at least 1 (1: real time)")
    if scale != 1 and env.get("WEBSITE_INSTANCE_ID"):
        # App Service sets WEBSITE_INSTANCE_ID: a scaled clock is for local runs only.
        raise SettingsInvalid("IMAGE_TIME_SCALE", "is for local runs only; remove it in Azure")
    return scale


def _scaled_timeouts(timeouts: Timeouts, scale: float) -> Timeouts:
    return replace(timeouts, **{name: getattr(timeouts, name) / scale for name in SCALED_TIMEOUTS})


def _scaled_route(route: RouteSettings, scale: float) -> RouteSettings:
    idle = route.gateway_idle_timeout_s
    return replace(route, gateway_idle_timeout_s=idle / scale if idle is not None else None)


def _scaled_policy(policy: RetryPolicy, scale: float) -> RetryPolicy:
    waits = {name: getattr(policy, name) / scale for name in SCALED_WAITS}
    transient = tuple(wait / scale for wait in policy.transient_waits_s)
    return replace(policy, transient_waits_s=transient, **waits)


def check_budget(timeouts: Timeouts, routes: Collection[RouteSettings]) -> None:
    """Raise SettingsInvalid naming the first pair of limits in the wrong order."""

    def limit(name: str) -> Limit:
        return Limit(TIMEOUT_SETTINGS[name], getattr(timeouts, name))

    budget = TimeoutBudget(**{name.removesuffix("_s"): limit(name) for name in TIMEOUT_SETTINGS})
    gateways = [
        Limit(f"IMAGE_ROUTE_{route.name.upper()}_GATEWAY_IDLE_TIMEOUT_S", idle)
        for route in routes
        if (idle := route.gateway_idle_timeout_s) is not None
    ]
    budget.check(gateways)


def _retry_policy(env: Mapping[str, str]) -> RetryPolicy:
    default = RetryPolicy()
    waits_raw = env.get("IMAGE_RETRY_TRANSIENT_WAITS_S", "")
    try:
        waits = (
            tuple(float(w) for w in waits_raw.split(",") if w.strip())
            if waits_raw.strip()
            else default.transient_waits_s
        )
    except ValueError:
        raise SettingsInvalid(
            "IMAGE_RETRY_TRANSIENT_WAITS_S", "must be seconds separated by commas, e.g. 5,15,30"
        ) from None
    if not waits or any(w <= 0 for w in waits):
        raise SettingsInvalid("IMAGE_RETRY_TRANSIENT_WAITS_S", "needs at least one wait above 0")
    post_send = env.get("IMAGE_RETRY_POST_SEND", default.post_send)
    if post_send not in ("never", "after_wait"):
        raise SettingsInvalid("IMAGE_RETRY_POST_SEND", "must be never or after_wait")
    return RetryPolicy(
        max_attempts=_int(env, "IMAGE_RETRY_MAX_ATTEMPTS", default.max_attempts, minimum=1),
        transient_waits_s=waits,
        rate_limit_max_attempts=_int(
            env, "IMAGE_RETRY_RATE_LIMIT_MAX_ATTEMPTS", default.rate_limit_max_attempts, minimum=1
        ),
        rate_limit_base_s=_float(env, "IMAGE_RETRY_RATE_LIMIT_BASE_S", default.rate_limit_base_s),
        rate_limit_cap_s=_float(env, "IMAGE_RETRY_RATE_LIMIT_CAP_S", default.rate_limit_cap_s),
        post_send=post_send,
        post_send_wait_s=_float(env, "IMAGE_RETRY_POST_SEND_WAIT_S", default.post_send_wait_s),
        post_send_max_resends=_int(
            env, "IMAGE_RETRY_POST_SEND_MAX_RESENDS", default.post_send_max_resends, minimum=0
        ),
        max_server_wait_s=_float(env, "IMAGE_RETRY_MAX_SERVER_WAIT_S", default.max_server_wait_s),
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
        gateway_idle_non_streamed=_bool(env, prefix + "GATEWAY_IDLE_NON_STREAMED", False),
        gateway_retry_header=(env.get(prefix + "GATEWAY_RETRY_HEADER") or "").lower() or None,
        requests_per_minute=_optional_int(env, prefix + "REQUESTS_PER_MINUTE"),
        images_per_minute=_optional_int(env, prefix + "IMAGES_PER_MINUTE"),
        concurrency=_optional_int(env, prefix + "CONCURRENCY"),
        burst=_int(env, prefix + "BURST", 1, minimum=1),
        failover_to=(env.get(prefix + "FAILOVER_TO") or "").strip() or None,
        batch_api=_bool(env, prefix + "BATCH_API", False),
    )


def _optional_int(env: Mapping[str, str], name: str) -> int | None:
    if not env.get(name, "").strip():
        return None
    return _int(env, name, 1, minimum=1)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false"):
        raise SettingsInvalid(name, "must be true or false")
    return raw == "true"


def _trust_principal(env: Mapping[str, str]) -> bool:
    setting = env.get("IMAGE_TRUST_PRINCIPAL_HEADER", "auto").strip().lower()
    if setting == "auto":
        return env.get("WEBSITE_AUTH_ENABLED", "").strip().lower() == "true"
    if setting in ("true", "false"):
        return setting == "true"
    raise SettingsInvalid("IMAGE_TRUST_PRINCIPAL_HEADER", "must be auto, true or false")


# The sample settings' secret: public, so ids made with it can be computed from a guessed prompt.
SAMPLE_JOB_ID_SECRET = "local-only-job-id-secret-change-me"  # noqa: S105 - public by design


def _job_id_secret(env: Mapping[str, str]) -> bytes:
    secret = env.get("IMAGE_JOB_ID_SECRET", "")
    if secret == SAMPLE_JOB_ID_SECRET and env.get("WEBSITE_INSTANCE_ID"):
        # App Service sets WEBSITE_INSTANCE_ID: the sample's secret is for local runs only.
        raise SettingsInvalid(
            "IMAGE_JOB_ID_SECRET", "is the sample's public value; set a secret of your own"
        )
    if len(secret) < 16:
        raise SettingsInvalid(
            "IMAGE_JOB_ID_SECRET",
            "set at least 16 random characters (a Key Vault reference in Azure): job ids are "
            "an HMAC of the caller and the request under it",
        )
    return secret.encode()


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


def _seconds_or_zero(env: Mapping[str, str], name: str, default: float) -> float:
    if env.get(name, "").strip() in ("0", "0.0"):
        return 0.0
    return _float(env, name, default)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsInvalid(name, "must be a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise SettingsInvalid(name, "must be more than 0")
    return value
