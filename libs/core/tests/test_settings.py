"""genai_core.settings: typed parsing, precedence, collected errors, validation."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Optional  # noqa: UP035 - the typing.Union spelling is part of what is tested

import pytest
from genai_core.settings import ServerSettings, SettingsError, load

P = "GENAI_T_"


class Mode(enum.Enum):
    FAST = "fast"
    SAFE = "safe"


@dataclass(frozen=True)
class Sample:
    name: str = "default"
    port: int = 8000
    ratio: float = 0.5
    debug: bool = False
    tags: tuple[str, ...] = ()
    ports: tuple[int, ...] = (1, 2)
    root: Path = Path("/srv")
    mode: Mode = Mode.SAFE
    limit: int | None = 10
    legacy: Optional[Path] = None  # noqa: UP045


@dataclass(frozen=True)
class Required:
    token: str
    count: int = 1


@dataclass(frozen=True)
class Validated:
    low: int = 0
    high: int = 10

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError("low must not exceed high")


def test_defaults_when_environment_is_empty():
    assert load(Sample, P, {}) == Sample()


def test_every_supported_type_is_parsed():
    env = {
        P + "NAME": "  keep spaces  ",
        P + "PORT": " 6000 ",
        P + "RATIO": "0.25",
        P + "DEBUG": "Yes",
        P + "TAGS": "a, b ,,c",
        P + "PORTS": "7, 8",
        P + "ROOT": "~/data",
        P + "MODE": " FAST ",
        P + "LIMIT": "3",
        P + "LEGACY": "/opt/x",
    }
    s = load(Sample, P, env)
    assert s.name == "  keep spaces  "  # strings are taken verbatim
    assert s.port == 6000
    assert s.ratio == 0.25
    assert s.debug is True
    assert s.tags == ("a", "b", "c")
    assert s.ports == (7, 8)
    assert s.root == Path("~/data").expanduser() and "~" not in str(s.root)
    assert s.mode is Mode.FAST
    assert s.limit == 3
    assert s.legacy == Path("/opt/x")


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on", " On "])
def test_true_spellings(raw):
    assert load(Sample, P, {P + "DEBUG": raw}).debug is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "off"])
def test_false_spellings(raw):
    assert load(Sample, P, {P + "DEBUG": raw}).debug is False


def test_empty_optional_means_none_for_both_union_spellings():
    s = load(Sample, P, {P + "LIMIT": "", P + "LEGACY": ""})
    assert s.limit is None
    assert s.legacy is None


def test_empty_tuple():
    assert load(Sample, P, {P + "TAGS": ""}).tags == ()


def test_environment_overrides_defaults_which_override_dataclass_defaults():
    assert load(Sample, P, {}, port=7000).port == 7000
    assert load(Sample, P, {P + "PORT": "7100"}, port=7000).port == 7100
    # Variables of another prefix are ignored.
    assert load(Sample, P, {"OTHER_PORT": "1"}).port == 8000


def test_required_field_is_reported():
    with pytest.raises(SettingsError, match="GENAI_T_TOKEN is required"):
        load(Required, P, {})
    assert load(Required, P, {P + "TOKEN": "abc"}).token == "abc"
    assert load(Required, P, {}, token="from-default").token == "from-default"


def test_all_errors_are_collected_in_one_message():
    env = {
        P + "PORT": "eighty",
        P + "DEBUG": "maybe",
        P + "MODE": "turbo",
        P + "PORTS": "1,x",
        P + "LIMIT": "lots",
        P + "RATIO": "0.1",  # valid: must not be named
    }
    with pytest.raises(SettingsError) as info:
        load(Sample, P, env)
    message = str(info.value)
    for name in ("PORT", "DEBUG", "MODE", "PORTS", "LIMIT"):
        assert f"GENAI_T_{name}=" in message
    assert "GENAI_T_RATIO" not in message
    assert "'eighty'" in message  # the bad value is quoted back
    assert "fast" in message and "safe" in message  # the enum's choices are listed
    assert "true" in message  # the bool's choices are listed


def test_missing_and_bad_are_reported_together():
    with pytest.raises(SettingsError) as info:
        load(Required, P, {P + "COUNT": "many"})
    assert "GENAI_T_TOKEN is required" in str(info.value)
    assert "GENAI_T_COUNT='many'" in str(info.value)


def test_unsupported_type_is_an_error_not_a_crash():
    @dataclass(frozen=True)
    class Odd:
        blob: bytes = b""

    with pytest.raises(SettingsError, match="GENAI_T_BLOB"):
        load(Odd, P, {P + "BLOB": "x"})


def test_post_init_validation_becomes_settings_error():
    with pytest.raises(SettingsError, match="low must not exceed high") as info:
        load(Validated, P, {P + "LOW": "11"})
    assert isinstance(info.value.__cause__, ValueError)
    assert load(Validated, P, {P + "LOW": "5"}).low == 5


def test_settings_error_is_a_value_error():
    assert issubclass(SettingsError, ValueError)


# -- ServerSettings -------------------------------------------------------------------------


def test_server_settings_defaults():
    s = ServerSettings.from_env("GENAI_X_", {})
    assert (s.host, s.port, s.metrics_port) == ("127.0.0.1", 0, 0)
    assert s.log_level == "INFO"
    assert s.otlp_endpoint == ""


def test_server_settings_reads_standard_otel_and_log_level_variables():
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "GENAI_LOG_LEVEL": "DEBUG"}
    s = ServerSettings.from_env("GENAI_X_", env)
    assert s.otlp_endpoint == "http://collector:4317"
    assert s.log_level == "DEBUG"


def test_content_capture_is_off_unless_the_standard_genai_variable_turns_it_on():
    assert ServerSettings.from_env("GENAI_X_", {}).capture_content is False
    on = ServerSettings.from_env("GENAI_X_", {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"})
    assert on.capture_content is True
    with pytest.raises(SettingsError, match="OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"):
        ServerSettings.from_env("GENAI_X_", {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "maybe"})


def test_server_settings_prefixed_variables_win_over_shared_ones():
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
        "GENAI_LOG_LEVEL": "DEBUG",
        "GENAI_X_LOG_LEVEL": "WARNING",
        "GENAI_X_PORT": "6001",
    }
    s = ServerSettings.from_env("GENAI_X_", env, port=50051)
    assert s.log_level == "WARNING"
    assert s.port == 6001
    assert s.otlp_endpoint == "http://collector:4317"


def test_server_settings_service_defaults_apply():
    s = ServerSettings.from_env("GENAI_X_", {}, port=50051, metrics_port=9101)
    assert (s.port, s.metrics_port) == (50051, 9101)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"GENAI_X_PORT": "70000"}, "ports"),
        ({"GENAI_X_METRICS_PORT": "-1"}, "ports"),
        ({"GENAI_X_MAX_MESSAGE_BYTES": "10"}, "max_message_bytes"),
        ({"GENAI_X_GRACE_SECONDS": "-0.5"}, "grace_seconds"),
    ],
)
def test_server_settings_validation(env, needle):
    with pytest.raises(SettingsError, match=needle):
        ServerSettings.from_env("GENAI_X_", env)


def test_server_settings_are_frozen():
    s = ServerSettings()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]
