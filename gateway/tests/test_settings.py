"""GatewaySettings: environment parsing and the configured backends."""

from __future__ import annotations

import dataclasses

import pytest
from genai_core.services import SERVICES
from genai_core.settings import SettingsError
from genai_gateway.settings import GatewaySettings


def test_defaults_from_empty_environment():
    settings = GatewaySettings.from_env({})
    assert settings == GatewaySettings()
    assert settings.api_keys == ()
    assert settings.port == 8080
    assert settings.max_body_bytes == 16 * 1024 * 1024


def test_api_keys_parse_comma_separated():
    assert GatewaySettings.from_env({"GENAI_GATEWAY_API_KEYS": "a,b"}).api_keys == ("a", "b")
    assert GatewaySettings.from_env({"GENAI_GATEWAY_API_KEYS": " a , ,b, "}).api_keys == ("a", "b")
    assert GatewaySettings.from_env({"GENAI_GATEWAY_API_KEYS": ""}).api_keys == ()


def test_numbers_parse():
    settings = GatewaySettings.from_env(
        {
            "GENAI_GATEWAY_PORT": "9000",
            "GENAI_GATEWAY_REQUEST_TIMEOUT": "2.5",
            "GENAI_GATEWAY_MAX_BODY_BYTES": "1024",
        }
    )
    assert (settings.port, settings.request_timeout, settings.max_body_bytes) == (9000, 2.5, 1024)


def test_shared_variables_are_read():
    settings = GatewaySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4317", "GENAI_LOG_LEVEL": "DEBUG"})
    assert settings.otlp_endpoint == "http://otel:4317"
    assert settings.log_level == "DEBUG"


def test_targets_default_to_every_service_of_the_table():
    assert GatewaySettings().targets == {name: row.default_target for name, row in SERVICES.items()}
    assert GatewaySettings().targets["retrieval"] == "127.0.0.1:50054"


def test_targets_omit_empty_ones():
    settings = GatewaySettings.from_env(
        {
            "GENAI_GATEWAY_TOKENIZER_TARGET": "",
            "GENAI_GATEWAY_INFERENCE_TARGET": "",
            "GENAI_GATEWAY_EMBEDDING_TARGET": "emb:50053",
        }
    )
    expected = {name: row.default_target for name, row in SERVICES.items() if name not in ("tokenizer", "inference")}
    assert settings.targets == {**expected, "embedding": "emb:50053"}
    assert GatewaySettings(targets={}).targets == {}


def test_unknown_backends_are_rejected():
    with pytest.raises(ValueError, match="unknown backends"):
        GatewaySettings(targets={"mystery": "x:1"})


@pytest.mark.parametrize(
    "environ",
    [
        {"GENAI_GATEWAY_PORT": "http"},
        {"GENAI_GATEWAY_PORT": "70000"},
        {"GENAI_GATEWAY_PORT": "-1"},
        {"GENAI_GATEWAY_REQUEST_TIMEOUT": "0"},
        {"GENAI_GATEWAY_TRAIN_TIMEOUT": "-3"},
        {"GENAI_GATEWAY_MAX_BODY_BYTES": "lots"},
    ],
)
def test_bad_values_raise_settings_error(environ):
    with pytest.raises(SettingsError) as info:
        GatewaySettings.from_env(environ)
    assert "GENAI_GATEWAY_" in str(info.value)


def test_all_problems_reported_at_once():
    with pytest.raises(SettingsError) as info:
        GatewaySettings.from_env({"GENAI_GATEWAY_PORT": "x", "GENAI_GATEWAY_MAX_BODY_BYTES": "y"})
    assert "GENAI_GATEWAY_PORT" in str(info.value)
    assert "GENAI_GATEWAY_MAX_BODY_BYTES" in str(info.value)


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        GatewaySettings().port = 1  # type: ignore[misc]
