"""Settings from the environment, in one place: defaults, parsing, validation, secrets from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from vreyesam.runtime.settings import DecodeLimits, Settings, SettingsError, load_settings


def test_defaults_are_the_safe_choice() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert settings.allow_random_weights is False and settings.enable_docs is False
    assert settings.api_keys_file is None and settings.model_key_text() is None
    assert settings.decode_limits == DecodeLimits()


def test_values_are_parsed_by_the_field_type(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "VREYESAM_MODEL_DIR": str(tmp_path),
            "VREYESAM_PORT": " 7000 ",
            "VREYESAM_ALLOW_RANDOM_WEIGHTS": "yes",
            "VREYESAM_ENABLE_DOCS": "off",
            "VREYESAM_PAGE": "0",
            "VREYESAM_QUEUE_TIMEOUT_S": "2.5",
            "VREYESAM_MAX_WIDTH": "100",
            "VREYESAM_PRECISION": "bf16-encoder",
            "VREYESAM_DEVICE": "cpu",
            "VREYESAM_ENCODER_BATCH": "8",
            "VREYESAM_ENCODER_BATCH_WINDOW_MS": "1.5",
        }
    )
    assert settings.model_dir == tmp_path and settings.port == 7000
    assert settings.allow_random_weights is True and settings.enable_docs is False
    assert settings.page is False and Settings().page is True  # the page is on unless turned off
    assert settings.queue_timeout_s == 2.5
    assert settings.decode_limits == DecodeLimits(max_width=100)
    assert (settings.precision, settings.device) == ("bf16-encoder", "cpu")
    assert (settings.encoder_batch, settings.encoder_batch_window_ms) == (8, 1.5)


def test_port_falls_back_to_the_spaces_variable() -> None:
    assert load_settings({"PORT": "7860"}).port == 7860
    assert load_settings({"PORT": "7860", "VREYESAM_PORT": "9000"}).port == 9000


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"VREYESAM_PORT": "eighty"}, "VREYESAM_PORT has an invalid value"),
        ({"VREYESAM_PORT": "70000"}, "VREYESAM_PORT must be between 1 and 65535"),
        ({"PORT": "-1"}, "PORT has an invalid value"),
        ({"VREYESAM_ALLOW_RANDOM_WEIGHTS": "maybe"}, "VREYESAM_ALLOW_RANDOM_WEIGHTS has an invalid value"),
        ({"VREYESAM_QUEUE_TIMEOUT_S": "0"}, "VREYESAM_QUEUE_TIMEOUT_S has an invalid value"),
        ({"VREYESAM_WORKERS": "0"}, "VREYESAM_WORKERS must be at least 1"),
        ({"VREYESAM_MAX_BODY_BYTES": "0"}, "VREYESAM_MAX_BODY_BYTES must be at least 1"),
        ({"VREYESAM_DEVICE": "tpu"}, "VREYESAM_DEVICE must be one of auto, cpu, cuda"),
        (
            {"VREYESAM_PRECISION": "int4"},
            "VREYESAM_PRECISION must be one of auto, fp32, bf16, bf16-encoder, fp16-encoder",
        ),
        ({"VREYESAM_LOG_LEVEL": "loud"}, "VREYESAM_LOG_LEVEL must be debug, info, warning or error"),
        ({"VREYESAM_RAY_REPLICAS": "0"}, "VREYESAM_RAY_REPLICAS must be at least 1"),
        (
            {"VREYESAM_RAY_REPLICAS": "3", "VREYESAM_RAY_MAX_REPLICAS": "2"},
            "VREYESAM_RAY_MAX_REPLICAS must be 0 or at least VREYESAM_RAY_REPLICAS",
        ),
        ({"VREYESAM_RAY_GPUS": "0"}, "VREYESAM_RAY_GPUS has an invalid value"),
        ({"VREYESAM_ENCODER_BATCH": "0"}, "VREYESAM_ENCODER_BATCH must be between 1 (off) and 64"),
        ({"VREYESAM_ENCODER_BATCH": "65"}, "VREYESAM_ENCODER_BATCH must be between 1 (off) and 64"),
        ({"VREYESAM_ENCODER_BATCH_WINDOW_MS": "0"}, "VREYESAM_ENCODER_BATCH_WINDOW_MS has an invalid value"),
        ({"VREYESAM_ENCODER_BATCH_WINDOW_MS": "1500"}, "VREYESAM_ENCODER_BATCH_WINDOW_MS must be at most 1000"),
    ],
)
def test_invalid_values_name_their_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(environ)
    assert str(refused.value) == message


def test_model_key_comes_from_its_file_first(tmp_path: Path) -> None:
    key_file = tmp_path / "model.key"
    key_file.write_text("  abc123  \n")
    from_file = load_settings({"VREYESAM_MODEL_KEY_FILE": str(key_file), "VREYESAM_MODEL_KEY": "from-env"})
    assert from_file.model_key_text() == "abc123"
    assert load_settings({"VREYESAM_MODEL_KEY": "from-env"}).model_key_text() == "from-env"
    assert "from-env" not in repr(load_settings({"VREYESAM_MODEL_KEY": "from-env"}))  # never in a log line
    unreadable = load_settings({"VREYESAM_MODEL_KEY_FILE": str(tmp_path / "absent")})
    with pytest.raises(SettingsError, match="VREYESAM_MODEL_KEY_FILE cannot be read") as refused:
        unreadable.model_key_text()
    assert str(tmp_path) not in str(refused.value)


def test_command_line_overrides_skip_values_not_given() -> None:
    settings = load_settings({"VREYESAM_PORT": "7000", "VREYESAM_HOST": "0.0.0.0"})
    overridden = settings.with_overrides(port=9000, host=None, allow_random_weights=None)
    assert (overridden.port, overridden.host, overridden.allow_random_weights) == (9000, "0.0.0.0", False)
