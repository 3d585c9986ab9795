import pytest

from rules.settings import AppSettings

ENV = {
    "IMAGE_ROUTES": "azure,openai",
    "IMAGE_ROUTE_AZURE_BASE_URL": "http://127.0.0.1:8089",
    "IMAGE_ROUTE_AZURE_DEPLOYMENT": "gpt-image-2",
    "IMAGE_ROUTE_AZURE_GATEWAY_IDLE_TIMEOUT_S": "60",
    "IMAGE_ROUTE_OPENAI_BASE_URL": "http://127.0.0.1:8089/v1",
    "IMAGES_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    "IMAGE_JOB_ID_SECRET": "test-only-secret-0123456789",
}


@pytest.fixture
def settings() -> AppSettings:
    return AppSettings.from_env(ENV)
