"""The services table: one row per service, read by settings, callers and the Procfile."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from genai_core.services import SERVICES, load_targets, procfile, service
from genai_core.settings import DownstreamSettings, ServerSettings, SettingsError

REPO = Path(__file__).resolve().parents[3]


def test_rows_are_unique_and_importable():
    assert len({s.port for s in SERVICES.values()}) == len(SERVICES)
    assert len({s.metrics_port for s in SERVICES.values()}) == len(SERVICES)
    for row in SERVICES.values():
        assert importlib.util.find_spec(row.module) is not None, row.module
        assert row.stub_class().__name__.endswith("ServiceStub")
        assert row.proto_service.startswith(f"genai.{row.name}.v1.")


def test_server_settings_take_the_tables_ports():
    settings = ServerSettings.for_service("retrieval", {"GENAI_RETRIEVAL_METRICS_PORT": "0"})
    assert (settings.port, settings.metrics_port) == (SERVICES["retrieval"].port, 0)


def test_targets_default_to_localhost_and_empty_means_not_deployed():
    targets = load_targets("GENAI_X_", ["tokenizer", "inference", "embedding"],
                           {"GENAI_X_INFERENCE_TARGET": "", "GENAI_X_EMBEDDING_TARGET": "emb:9"})
    assert targets == {"tokenizer": f"127.0.0.1:{SERVICES['tokenizer'].port}", "embedding": "emb:9"}


def test_downstream_settings_read_the_timeout():
    settings = DownstreamSettings.from_env("GENAI_X_", ("tokenizer",), {"GENAI_X_DOWNSTREAM_TIMEOUT": "7.5"})
    assert settings.timeout == 7.5
    with pytest.raises(SettingsError, match="GENAI_X_DOWNSTREAM_TIMEOUT"):
        DownstreamSettings.from_env("GENAI_X_", ("tokenizer",), {"GENAI_X_DOWNSTREAM_TIMEOUT": "soon"})


def test_unknown_service_names_the_known_ones():
    with pytest.raises(KeyError, match="known: tokenizer"):
        service("nope")


def test_procfile_starts_every_service_then_the_gateway():
    lines = procfile().splitlines()
    assert [line.split(":")[0] for line in lines] == [*SERVICES, "gateway", "ready"]
    assert all(f"-m {row.module}" in procfile() for row in SERVICES.values())
