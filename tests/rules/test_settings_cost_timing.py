import pytest

from rules.cost import cost_usd
from rules.errors import SettingsInvalid
from rules.settings import AppSettings
from rules.timing import Clocks

from .conftest import ENV


def test_routes_are_read_from_app_settings(settings):
    azure = settings.route("azure")
    assert azure.owner == "azure"
    assert azure.deployment == "gpt-image-2"
    assert azure.key_setting == "IMAGE_ROUTE_AZURE_KEY"
    assert azure.gateway_idle_timeout_s == 60.0
    assert settings.route("openai").gateway_idle_timeout_s is None


def test_connection_string_never_shows_in_repr():
    env = dict(ENV, IMAGES_STORAGE_CONNECTION_STRING="AccountKey=topsecret")
    assert "topsecret" not in repr(AppSettings.from_env(env))


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"IMAGE_ROUTES": ""}, "IMAGE_ROUTES"),
        ({"IMAGE_ROUTE_AZURE_DEPLOYMENT": ""}, "IMAGE_ROUTE_AZURE_DEPLOYMENT"),
        ({"IMAGE_ROUTE_AZURE_BASE_URL": "ftp://x"}, "IMAGE_ROUTE_AZURE_BASE_URL"),
        ({"IMAGE_ROUTE_AZURE_AUTH": "password"}, "IMAGE_ROUTE_AZURE_AUTH"),
        ({"IMAGE_READ_IDLE_TIMEOUT_S": "soon"}, "IMAGE_READ_IDLE_TIMEOUT_S"),
        ({"IMAGE_DEFAULT_ROUTE": "mars"}, "IMAGE_DEFAULT_ROUTE"),
        ({"IMAGES_STORAGE_CONNECTION_STRING": ""}, "IMAGES_STORAGE_CONNECTION_STRING"),
        ({"IMAGE_JOB_ID_SECRET": "short"}, "IMAGE_JOB_ID_SECRET"),
        ({"IMAGE_TRUST_PRINCIPAL_HEADER": "maybe"}, "IMAGE_TRUST_PRINCIPAL_HEADER"),
        ({"IMAGE_READ_IDLE_TIMEOUT_S": "nan"}, "IMAGE_READ_IDLE_TIMEOUT_S"),
    ],
)
def test_a_bad_setting_is_named_without_its_value(change, setting):
    with pytest.raises(SettingsInvalid) as caught:
        AppSettings.from_env(dict(ENV, **change))
    assert caught.value.setting == setting


def test_cost_follows_output_tokens():
    usage = {
        "input_tokens": 50,
        "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
        "output_tokens": 1000,
        "total_tokens": 1050,
    }
    assert cost_usd("gpt-image-2", usage) == pytest.approx(0.03025)
    assert cost_usd("gpt-image-2", None) is None


def test_clocks_turn_marks_into_milliseconds():
    clocks = Clocks(started_at_iso="2026-01-01T00:00:00Z", started=10.0)
    clocks.connected = 10.05
    clocks.first_byte = 10.5
    clocks.first_partial = 20.0
    clocks.final_image = 30.0
    clocks.body_done = 30.25
    record = clocks.record()
    assert record.connect_ms == 50
    assert record.first_partial_image_ms == 10_000
    assert record.download_ms == 250
    assert record.upload_ms is None


def test_the_principal_header_is_trusted_only_behind_easy_auth():
    assert AppSettings.from_env(ENV).trust_principal_header is False
    assert AppSettings.from_env(dict(ENV, WEBSITE_AUTH_ENABLED="True")).trust_principal_header
    forced = dict(ENV, IMAGE_TRUST_PRINCIPAL_HEADER="true")
    assert AppSettings.from_env(forced).trust_principal_header
    assert "test-only-secret" not in repr(AppSettings.from_env(ENV))


def test_the_samples_public_job_id_secret_is_refused_in_azure():
    sample = dict(ENV, IMAGE_JOB_ID_SECRET="local-only-job-id-secret-change-me")
    AppSettings.from_env(sample)  # fine locally
    with pytest.raises(SettingsInvalid) as caught:
        AppSettings.from_env(dict(sample, WEBSITE_INSTANCE_ID="abc123"))
    assert caught.value.setting == "IMAGE_JOB_ID_SECRET"
    assert "change-me" not in str(caught.value)
