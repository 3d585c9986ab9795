"""The app settings that ``AppSettings.from_env`` does not read, each with who reads it.

    telemetry = TelemetrySettings.from_env(os.environ)
    if telemetry.enabled:
        ...                                    # telemetry.py configures the exporter

``AppSettings.from_env`` reads the service's own settings (rules/settings.py); a route's key is
read at call time from the setting its ``key_setting`` names (wiring.auth_header). Everything
else the deployed app depends on is read by someone other than the app's code: the Functions
host, the Durable extension, azure-identity, the Azure Monitor exporter, or telemetry.py. They
are listed here, in one place, so that the infrastructure (infra/) sets only settings something
reads and every one a deployment needs (tests/infra checks both), and so that docs/settings.md
can say who reads each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

HOST = "the Functions host"
DURABLE = "the Durable extension (in the host)"
IDENTITY = "azure-identity's DefaultAzureCredential (wiring.py)"
EXPORTER = "the Azure Monitor exporter (telemetry.py) and the Functions host"


@dataclass(frozen=True)
class PlatformSetting:
    """One app setting read outside ``AppSettings.from_env``.

    ``required``: a deployment with the infrastructure's identity-based set-up does not work
    without it. ``when``: the deployment choice that needs it, if only one does.
    """

    name: str
    reader: str
    purpose: str
    required: bool = False
    when: str | None = None


# The Durable extension's storage provider, overridden from app settings (the host reads
# ``AzureFunctionsJobHost__<path>`` as host.json's ``<path>``), so that one deployed package
# runs on either backend.
HOST_JSON_OVERRIDE = "AzureFunctionsJobHost__"
STORAGE_PROVIDER_PATH = ("extensions", "durableTask", "storageProvider")

APPLICATIONINSIGHTS_CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"

PLATFORM_SETTINGS: tuple[PlatformSetting, ...] = (
    PlatformSetting(
        "AzureWebJobsStorage__accountName",
        f"{HOST} and {DURABLE}",
        "the host's storage account, reached with an identity instead of a connection string "
        "(keys, timer leases, and the Azure Storage backend's queues and tables)",
        required=True,
    ),
    PlatformSetting(
        "AzureWebJobsStorage__credential",
        HOST,
        "`managedidentity`: reach that account with the app's managed identity",
        required=True,
    ),
    PlatformSetting(
        "AzureWebJobsStorage__clientId",
        HOST,
        "the client id of the user-assigned identity to use for it",
        required=True,
    ),
    PlatformSetting(
        "AZURE_CLIENT_ID",
        IDENTITY,
        "the client id of the user-assigned identity the app's own Blob calls, user-delegation "
        "SAS and Entra route calls use (without it, DefaultAzureCredential finds no identity on "
        "an app that has only a user-assigned one)",
        required=True,
    ),
    PlatformSetting(
        APPLICATIONINSIGHTS_CONNECTION_STRING,
        f"{HOST}; telemetry.py",
        "the Application Insights resource; telemetry.py exports the app's own telemetry only "
        "when it is set",
    ),
    PlatformSetting(
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        EXPORTER,
        "`Authorization=AAD;ClientId=<identity>`: send telemetry with the managed identity, for "
        "an Application Insights resource with local (key) authentication off",
    ),
    PlatformSetting(
        "DURABLE_TASK_SCHEDULER_CONNECTION_STRING",
        DURABLE,
        "`Endpoint=<scheduler>;Authentication=ManagedIdentity;ClientID=<identity>`: the Durable "
        "Task Scheduler backend",
        when="the Durable Task Scheduler backend",
    ),
    PlatformSetting(
        HOST_JSON_OVERRIDE + "__".join((*STORAGE_PROVIDER_PATH, "type")),
        HOST,
        "`azureManaged`: host.json's storage provider type, overridden",
        when="the Durable Task Scheduler backend",
    ),
    PlatformSetting(
        HOST_JSON_OVERRIDE + "__".join((*STORAGE_PROVIDER_PATH, "connectionName")),
        HOST,
        "`DURABLE_TASK_SCHEDULER_CONNECTION_STRING`: the setting that holds the backend's "
        "connection; it must replace host.json's `connectionName`, which the scheduler's "
        "provider reads before `connectionStringName`",
        when="the Durable Task Scheduler backend",
    ),
)

# Settings a deployment must NOT set, and why.
NEVER_SET: Mapping[str, str] = {
    "PYTHON_ENABLE_OPENTELEMETRY": (
        "depending on its version, the Python worker then configures the Azure Monitor "
        "distro itself, a second export without telemetry.py's scrubbing"
    ),
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": (
        "the Python worker then configures the Azure Monitor distro itself, a second export "
        "without telemetry.py's scrubbing"
    ),
    "AzureWebJobsStorage": (
        "a connection string carries the account key, and the storage account allows no "
        "shared-key access; the host uses the identity-based AzureWebJobsStorage__* settings"
    ),
}


def platform_setting_names() -> frozenset[str]:
    return frozenset(setting.name for setting in PLATFORM_SETTINGS)


@dataclass(frozen=True)
class TelemetrySettings:
    """Where the app's own telemetry goes: Application Insights, or nowhere (None)."""

    connection_string: str | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.connection_string is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TelemetrySettings:
        value = env.get(APPLICATIONINSIGHTS_CONNECTION_STRING, "").strip()
        return cls(connection_string=value or None)
