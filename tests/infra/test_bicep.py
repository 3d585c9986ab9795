"""infra/ against the app: every app setting it sets is one the app reads, every setting the app
needs is set and the app starts on them, every role a code path needs is granted, and the
templates hang together (syntax, module parameters, azd's parameter file, host.json).

The app's reads are not listed here: they are recorded from ``AppSettings.from_env`` itself
(every name it looks up), plus the key setting each route names (read at call time by
wiring.auth_header) and rules.platform_settings (the host's, azure-identity's, the exporter's).
Each combination of the deployment's choices is checked: the Durable backend, an Azure OpenAI
account of its own or an existing route, a key or Entra ID.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from rules.platform_settings import (
    HOST_JSON_OVERRIDE,
    NEVER_SET,
    PLATFORM_SETTINGS,
    platform_setting_names,
)
from rules.settings import AppSettings, StorageSettings
from storage.protocol import route_cool_down_name, route_slot_name

from .bicep import Template, Unknown, text

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
# A secret's latest version (no version in the URI: a rotated secret is picked up).
KEY_VAULT_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\(SecretUri=[^)]+secrets/[a-z0-9-]+/\)$")

# What a deployment can choose (main.bicep's parameters, passed through to api.bicep).
SCENARIOS = [
    {
        "durableBackend": backend,
        "deployOpenAi": own_openai,
        "routeAuth": auth,
        "routeBaseUrl": "" if own_openai else "https://existing.openai.azure.com",
        "routeKey": "",
    }
    for backend, own_openai, auth in itertools.product(
        ("AzureStorage", "DurableTaskScheduler"), (False, True), ("key", "entra")
    )
    # An account of its own is always reached with Entra ID (its local auth is off).
    if not (own_openai and auth == "key")
]


def scenario_id(scenario: Mapping[str, Any]) -> str:
    own = "own-openai" if scenario["deployOpenAi"] else f"existing-{scenario['routeAuth']}"
    return f"{scenario['durableBackend']}-{own}"


@pytest.fixture(scope="module")
def api() -> Template:
    return Template.load(INFRA / "app" / "api.bicep")


@pytest.fixture(scope="module")
def rbac() -> Template:
    return Template.load(INFRA / "app" / "rbac.bicep")


@pytest.fixture(scope="module")
def main() -> Template:
    return Template.load(INFRA / "main.bicep")


class RecordingEnv(Mapping[str, str]):
    """The environment, remembering every name looked up in it (found or not)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.looked_up: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.looked_up.add(name)
        return self._values[name]

    def get(self, name: str, default: Any = None) -> Any:
        self.looked_up.add(name)
        return self._values.get(name, default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.looked_up.add(name)
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def module_values(main: Template, module: str, scenario: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters main.bicep passes to ``module`` when deployed with ``scenario``."""
    passed = main.evaluate(main.modules[module].params, main.values(scenario))
    assert isinstance(passed, dict)
    return {k: v for k, v in passed["params"].items() if not isinstance(v, Unknown)}


def app_settings(api: Template, scenario: Mapping[str, Any]) -> dict[str, Any]:
    """The app settings the template deploys in ``scenario``, as evaluated from the Bicep."""
    main = Template.load(INFRA / "main.bicep")
    values = api.values(module_values(main, "api", scenario))
    settings = api.evaluate(api.resource("appSettings").property("properties"), values)
    assert isinstance(settings, dict), settings
    return settings


def as_host_sees_them(settings: Mapping[str, Any]) -> dict[str, str]:
    """The settings as the running app sees them: Key Vault references resolved, the values
    only Azure knows (endpoints, client ids) replaced by plausible ones."""
    env: dict[str, str] = {}
    for name, value in settings.items():
        text = str(value)
        if isinstance(value, str) and KEY_VAULT_REFERENCE.match(value):
            text = f"resolved-from-key-vault-{name.lower()}-0123456789"
        elif "<" in text:  # something only Azure computes
            text = re.sub(r"<[^>]*>", "unknown", text)
            if name.endswith(("_URL", "_BASE_URL")):
                text = "https://placeholder.example"
        env[name] = text
    return env


def reads(env: Mapping[str, str]) -> set[str]:
    """Every app setting the app reads on ``env``."""
    recording = RecordingEnv(env)
    settings = AppSettings.from_env(recording)
    keys = {route.key_setting for route in settings.routes.values() if route.key_setting}
    return recording.looked_up | keys | platform_setting_names()


def test_no_bicep_compiler_is_needed_the_grammar_reads_every_file():
    files = sorted(INFRA.rglob("*.bicep"))
    assert {f.name for f in files} >= {"main.bicep", "api.bicep", "rbac.bicep"}
    for path in files:
        Template.load(path)  # raises with every syntax error's line


def test_the_grammar_catches_a_syntax_error(tmp_path):
    from .bicep import BicepSyntaxError

    broken = tmp_path / "broken.bicep"
    broken.write_text("resource x 'Microsoft.Web/sites@2024-04-01' = {\n  name: \n", "utf-8")
    with pytest.raises(BicepSyntaxError, match=r"broken\.bicep:"):
        Template.load(broken)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_every_setting_the_infra_sets_is_read_by_the_app(api: Template, scenario):
    settings = app_settings(api, scenario)
    env = as_host_sees_them(settings)
    unread = sorted(set(settings) - reads(env))
    assert unread == [], "the infra sets settings nothing reads"
    assert sorted(set(settings) & set(NEVER_SET)) == []


@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_the_app_starts_on_the_infra_settings_and_every_required_one_is_set(
    api: Template, scenario
):
    settings = app_settings(api, scenario)
    env = as_host_sees_them(settings)
    app = AppSettings.from_env(env)  # raises SettingsInvalid naming a missing or wrong one
    route = app.route("azure")
    assert route.owner == "azure"
    assert route.auth == ("entra" if scenario["deployOpenAi"] else scenario["routeAuth"])
    assert app.storage.account_url
    assert not app.storage.connection_string
    if route.key_setting:
        assert route.key_setting in settings
    scheduler = scenario["durableBackend"] == "DurableTaskScheduler"
    for platform in PLATFORM_SETTINGS:
        if platform.required:
            assert platform.name in settings, platform.name
        if platform.when == "the Durable Task Scheduler backend":
            assert (platform.name in settings) == scheduler, platform.name


@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_secrets_are_only_key_vault_references(api: Template, scenario):
    settings = app_settings(api, scenario)
    env = as_host_sees_them(settings)
    app = AppSettings.from_env(env)
    secret_settings = {"IMAGE_JOB_ID_SECRET"} | {
        r.key_setting for r in app.routes.values() if r.key_setting
    }
    for name in secret_settings:
        assert KEY_VAULT_REFERENCE.match(str(settings[name])), name
    for name, value in settings.items():
        assert "AccountKey=" not in str(value), name
        if not name.startswith("APPLICATIONINSIGHTS"):
            assert "InstrumentationKey=" not in str(value), name


def test_the_containers_the_app_uses_are_created(api: Template):
    settings = app_settings(api, SCENARIOS[0])
    containers = {
        str(api.evaluate(r.property("name"), api.values({})))
        for r in api.resources.values()
        if r.type.startswith("containers")
    }
    assert settings["IMAGES_CONTAINER"] in containers
    assert settings["IMAGE_BATCHES_CONTAINER"] in containers
    assert {StorageSettings.container, StorageSettings.batches_container} <= containers


def test_host_json_overrides_name_real_host_json_paths_and_the_task_hub_matches(api: Template):
    host = json.loads((ROOT / "host.json").read_text("utf-8"))
    scheduler = next(s for s in SCENARIOS if s["durableBackend"] == "DurableTaskScheduler")
    overrides = [n for n in app_settings(api, scheduler) if n.startswith(HOST_JSON_OVERRIDE)]
    assert overrides
    for name in overrides:
        node: Any = host
        for part in name.removeprefix(HOST_JSON_OVERRIDE).split("__"):
            assert part in node, f"{name}: host.json has no {part!r} there"
            node = node[part]
    hub = host["extensions"]["durableTask"]["hubName"]
    assert api.evaluate(api.variables["taskHubName"], {}) == hub
    assert api.evaluate(api.resource("taskHub").property("name"), {}) == hub


# --- roles ---------------------------------------------------------------------------------

# Built-in role definition ids: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
BUILTIN_ROLES = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "Cognitive Services OpenAI User": "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd",
    "Durable Task Data Contributor": "0ad04412-c4d5-4796-b79c-f76d14c8d402",
}
BLOB_WRITER = ("Storage Blob Data Owner", "Storage Blob Data Contributor")

# Code path -> the roles that serve it (any one), on which resource, in which deployments.
CODE_PATHS: list[tuple[str, tuple[str, ...], str, str]] = [
    # (code path, roles, resource type, when)
    (
        "storage/azure_blob.py: images, previews, metadata, uploads, batches (read, write, "
        "delete, list)",
        BLOB_WRITER,
        "Microsoft.Storage/storageAccounts",
        "always",
    ),
    (
        "storage/azure_blob.py: user-delegation SAS links (generateUserDelegationKey)",
        BLOB_WRITER,
        "Microsoft.Storage/storageAccounts",
        "always",
    ),
    (
        "the host: AzureWebJobsStorage by identity (keys, timer leases, the package)",
        ("Storage Blob Data Owner",),
        "Microsoft.Storage/storageAccounts",
        "always",
    ),
    (
        "the Durable extension, Azure Storage backend: control and work-item queues",
        ("Storage Queue Data Contributor",),
        "Microsoft.Storage/storageAccounts",
        "AzureStorage",
    ),
    (
        "the Durable extension, Azure Storage backend: history and instances tables",
        ("Storage Table Data Contributor",),
        "Microsoft.Storage/storageAccounts",
        "AzureStorage",
    ),
    (
        "the Durable extension, Durable Task Scheduler backend",
        ("Durable Task Data Contributor",),
        "Microsoft.DurableTask/schedulers",
        "DurableTaskScheduler",
    ),
    (
        "the host and telemetry.py: telemetry with Entra ID (local auth off)",
        ("Monitoring Metrics Publisher",),
        "Microsoft.Insights/components",
        "always",
    ),
    (
        "the host: Key Vault references (IMAGE_JOB_ID_SECRET, IMAGE_ROUTE_AZURE_KEY)",
        ("Key Vault Secrets User",),
        "Microsoft.KeyVault/vaults",
        "always",
    ),
    (
        "wiring.auth_header: the Entra route's token (activities/route_client.py)",
        ("Cognitive Services OpenAI User",),
        "Microsoft.CognitiveServices/accounts",
        "deployOpenAi",
    ),
]


def applies(when: str, scenario: Mapping[str, Any]) -> bool:
    if when == "always":
        return True
    if when == "deployOpenAi":
        return bool(scenario["deployOpenAi"])
    return bool(scenario["durableBackend"] == when)


def grants(rbac: Template, scenario: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(principal parameter, role id, scope resource type) of each assignment made in
    ``scenario``."""
    main = Template.load(INFRA / "main.bicep")
    values = rbac.values(
        {"principalId": "deployer", **module_values(main, "rbac", scenario), **scenario}
    )
    roles = rbac.evaluate(rbac.variables["roles"], values)
    found = []
    for resource in rbac.resources.values():
        if not resource.type.startswith("Microsoft.Authorization/roleAssignments@"):
            continue
        if resource.condition is not None and rbac.evaluate(resource.condition, values) is not True:
            continue
        properties = resource.property("properties")
        by_name = {
            key: node
            for key, node in (
                (text(p.named_children[0]), p.named_children[-1])
                for p in properties.named_children
                if p.type == "object_property"
            )
        }
        principal = text(by_name["principalId"])
        role_ref = by_name["roleDefinitionId"].named_children[1].named_children[-1]
        role = roles[text(role_ref.named_children[-1])]
        scope = rbac.resource(text(resource.property("scope")))
        found.append((principal, role, scope.type.split("@")[0]))
    return found


@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_every_role_a_code_path_needs_is_granted_to_the_identity(rbac: Template, scenario):
    granted = grants(rbac, scenario)
    for path, roles, resource_type, when in CODE_PATHS:
        wanted = {BUILTIN_ROLES[name] for name in roles}
        ok = any(
            principal == "identityPrincipalId" and role in wanted and scope == resource_type
            for principal, role, scope in granted
        )
        assert ok == True or not applies(when, scenario), path  # noqa: E712


@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_the_identity_holds_no_role_no_code_path_needs(rbac: Template, scenario):
    needed = {
        (BUILTIN_ROLES[name], resource_type)
        for _path, roles, resource_type, when in CODE_PATHS
        if applies(when, scenario)
        for name in roles
    }
    extra = [
        (role, scope)
        for principal, role, scope in grants(rbac, scenario)
        if principal == "identityPrincipalId" and (role, scope) not in needed
    ]
    assert extra == []


def test_the_roles_template_uses_the_built_in_role_ids(rbac: Template):
    roles = rbac.evaluate(rbac.variables["roles"], {})
    assert set(roles.values()) <= set(BUILTIN_ROLES.values())


# --- the templates together -----------------------------------------------------------------


def test_main_passes_every_module_parameter_and_only_those(main: Template):
    for module in main.modules.values():
        child = Template.load((INFRA / module.path).resolve())
        passed = {
            text(p.named_children[0])
            for p in module.params.named_children
            if p.type == "object_property" and text(p.named_children[0]) == "params"
            for p in p.named_children[-1].named_children
            if p.type == "object_property"
        }
        required = {name for name, param in child.params.items() if not param.has_default}
        assert passed <= set(child.params), module.path
        assert required <= passed, module.path
        for name in passed:
            if child.params[name].secure:
                assert main.params[name].secure, f"{name} reaches a @secure() parameter"


def test_azd_parameters_name_main_parameters_and_secrets_are_not_in_them(main: Template):
    parameters = json.loads((INFRA / "main.parameters.json").read_text("utf-8"))["parameters"]
    assert set(parameters) <= set(main.params)
    required = {name for name, p in main.params.items() if not p.has_default}
    generated = {name for name, p in main.params.items() if p.secure}
    assert required <= set(parameters) | generated
    assert not generated & set(parameters), "a secret would sit in the azd environment file"
    assert "generate" in (INFRA / "main.bicep").read_text("utf-8")  # azd makes jobIdSecret


def test_azure_yaml_deploys_the_repository_root_as_a_python_function_app():
    config = yaml.safe_load((ROOT / "azure.yaml").read_text("utf-8"))
    (service,) = config["services"].values()
    assert service == {"project": ".", "language": "python", "host": "function"}
    assert (ROOT / "infra" / "main.bicep").is_file()  # azd's default infra path


def test_the_function_app_is_flex_consumption_python_311_without_shared_keys(api: Template):
    values = api.values({})
    plan = api.evaluate(api.resource("plan").property("sku"), values)
    assert plan == {"tier": "FlexConsumption", "name": "FC1"}
    config = api.resource("functionApp").property("properties")
    source = text(config)
    assert re.search(r"name: 'python'\s+version: '3\.11'", source)
    assert "keyVaultReferenceIdentity" in source
    storage = api.evaluate(api.resource("storage").property("properties"), values)
    assert storage["allowSharedKeyAccess"] is False
    assert storage["allowBlobPublicAccess"] is False
    insights = api.evaluate(api.resource("appInsights").property("properties"), values)
    assert insights["DisableLocalAuth"] is True
    assert isinstance(insights["WorkspaceResourceId"], Unknown)  # on the Log Analytics workspace
    vault = api.evaluate(api.resource("keyVault").property("properties"), values)
    assert vault["enableRbacAuthorization"] is True


def test_the_routes_slot_claims_are_deleted_a_day_after_they_were_written(api: Template):
    """One small blob per batch send (storage.protocol.route_slot_name), needed for seconds:
    the account's lifecycle rule removes them, under the images container the app writes to."""
    values = api.values({})
    policy = api.evaluate(api.resource("routeRecordsLifecycle").property("properties"), values)
    [rule] = policy["policy"]["rules"]
    assert rule["enabled"] is True
    [prefix] = rule["definition"]["filters"]["prefixMatch"]
    container = StorageSettings.container  # the app's default, which the template sets
    assert api.evaluate(api.variables["imagesContainerName"], values) == container
    assert f"{container}/{route_slot_name('azure', 'k')}".startswith(prefix)
    assert f"{container}/{route_cool_down_name('azure')}".startswith(prefix)
    assert not f"{container}/img-0/metadata.json".startswith(prefix)  # a job's blobs stay
    assert rule["definition"]["actions"]["baseBlob"]["delete"] == {
        "daysAfterModificationGreaterThan": 1
    }


# --- documented ------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_every_setting_the_app_reads_is_set_by_the_infra_or_documented(api: Template, scenario):
    docs = "".join(
        (ROOT / "docs" / name).read_text("utf-8") for name in ("settings.md", "batches.md")
    )
    settings = app_settings(api, scenario)
    undocumented = []
    for name in sorted(reads(as_host_sees_them(settings)) - set(settings)):
        forms = {name}
        if name.startswith("IMAGE_ROUTE_AZURE_"):
            rest = name.removeprefix("IMAGE_ROUTE_AZURE_")
            forms |= {f"IMAGE_ROUTE_{{NAME}}_{rest}", f"IMAGE_ROUTE_<R>_{rest}"}
        if not any(f"`{form}`" in docs for form in forms):
            undocumented.append(name)
    assert undocumented == [], "read by the app, neither set in infra/ nor in docs/settings.md"


def test_the_platform_settings_and_the_forbidden_ones_are_documented():
    docs = (ROOT / "docs" / "settings.md").read_text("utf-8")
    for setting in PLATFORM_SETTINGS:
        assert f"`{setting.name}`" in docs, setting.name
    for name in NEVER_SET:
        assert f"`{name}`" in docs, name
