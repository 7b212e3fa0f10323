"""genai_tokenizer.settings: the service's environment, read in one place."""

from __future__ import annotations

from pathlib import Path

import pytest
from genai_core.settings import SettingsError
from genai_tokenizer.settings import Settings, TokenizerSettings


def test_defaults():
    s = Settings.from_env({})
    assert (s.server.port, s.server.metrics_port) == (50051, 9101)
    assert s.tokenizer == TokenizerSettings()
    assert s.tokenizer.default_tokenizer in s.tokenizer.builtins


def test_environment_overrides():
    s = Settings.from_env(
        {
            "GENAI_TOKENIZER_PORT": "6000",
            "GENAI_TOKENIZER_DATA_DIR": "/srv/tok",
            "GENAI_TOKENIZER_BUILTINS": "all-minilm-l6-v2",
            "GENAI_TOKENIZER_DEFAULT_TOKENIZER": "all-minilm-l6-v2",
            "GENAI_TOKENIZER_MAX_BATCH_SIZE": "8",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4317",
            "GENAI_LOG_LEVEL": "debug",
        }
    )
    assert s.server.port == 6000
    assert s.server.otlp_endpoint == "http://otel:4317"
    assert s.server.log_level == "debug"
    assert s.tokenizer.data_dir == Path("/srv/tok")
    assert s.tokenizer.builtins == ("all-minilm-l6-v2",)
    assert s.tokenizer.max_batch_size == 8


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"GENAI_TOKENIZER_MAX_BATCH_SIZE": "0"}, "max_batch_size"),
        ({"GENAI_TOKENIZER_MAX_INPUT_CHARS": "-1"}, "max_input_chars"),
        ({"GENAI_TOKENIZER_MAX_BATCH_SIZE": "lots"}, "GENAI_TOKENIZER_MAX_BATCH_SIZE"),
    ],
)
def test_invalid_values_fail_fast(env, needle):
    with pytest.raises(SettingsError, match=needle):
        Settings.from_env(env)
