"""Every runtime setting, read from the environment in one place, with safe defaults.

Command-line flags override the environment; the environment overrides the defaults below. Secrets
(API keys, the model key) are read from files named here, never from the command line.
This module imports no OpenCV: the server sets OpenCV's own image limits from these settings before
cv2 is first imported.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from vreyesam.runtime.vocabulary import DEVICES, PRECISION_REQUESTS, Device, PrecisionRequest

MiB = 1024 * 1024
# A float setting must be positive (a timeout, a window); one typed NonNegative may also be 0 (a threshold off).
NonNegative = float
MAX_ENCODER_BATCH = 64  # images one encoder run may take


@dataclass(frozen=True)
class DecodeLimits:
    """Largest accepted image, as displayed (after EXIF orientation)."""

    max_width: int = 8192
    max_height: int = 8192
    max_pixels: int = 40_000_000


@dataclass(frozen=True)
class QualityGate:
    """When an iris is accepted (media/quality.py; docs/iris.md says how the defaults were chosen)."""

    min_openness: float = 0.5  # occlusion90 below it: "eye_closed"
    max_offgaze: float = 0.8  # offgaze_score above it: "off_gaze"
    min_sharpness: float = 0.0  # sharpness_score below it: "blurred" (0: not checked)
    max_specular: float = 1.0  # specular_fraction above it: "specular" (1: not checked)


class SettingsError(Exception):
    """A setting has an invalid value; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    model_dir: Path | None = None  # VREYESAM_MODEL_DIR
    host: str = "127.0.0.1"  # VREYESAM_HOST: loopback unless told otherwise (the container sets 0.0.0.0)
    port: int = 8000  # VREYESAM_PORT, else PORT (set by Hugging Face Spaces), else 8000
    workers: int = 1  # VREYESAM_WORKERS: server processes, each with its own copy of the model
    device: Device = "auto"  # VREYESAM_DEVICE: auto | cpu | cuda
    precision: PrecisionRequest = "auto"  # VREYESAM_PRECISION: auto | fp32 | bf16 | bf16-encoder (gated variants)
    threads: int = 0  # VREYESAM_THREADS: onnxruntime intra-op threads (0 = one per core)
    decoder_batch: int = 0  # VREYESAM_DECODER_BATCH: prompts per decoder call (0 = by provider)
    # Encoder batching (for GPUs): images arriving within the window share one encoder run; 1 = off.
    encoder_batch: int = 1  # VREYESAM_ENCODER_BATCH: most images per encoder run
    encoder_batch_window_ms: float = 2.0  # VREYESAM_ENCODER_BATCH_WINDOW_MS: longest the first image waits
    # CUDA graphs (GPUs, encoder batching off): a lone image's networks replayed from captured graphs.
    cuda_graphs: bool = False  # VREYESAM_CUDA_GRAPHS
    allow_random_weights: bool = False  # VREYESAM_ALLOW_RANDOM_WEIGHTS: serve a random-weights demo model
    enable_docs: bool = False  # VREYESAM_ENABLE_DOCS: OpenAPI document and /docs, for development only
    page: bool = True  # VREYESAM_PAGE: the page for people at / (off: an API-only deployment, / is 404)
    max_body_bytes: int = 10 * MiB  # VREYESAM_MAX_BODY_BYTES: request body cap, enforced while streaming
    # The decode limits (DecodeLimits above holds their defaults, once).
    max_width: int = DecodeLimits.max_width  # VREYESAM_MAX_WIDTH: image width cap (read from the header first)
    max_height: int = DecodeLimits.max_height  # VREYESAM_MAX_HEIGHT
    max_pixels: int = DecodeLimits.max_pixels  # VREYESAM_MAX_PIXELS
    # The quality gate (QualityGate above holds their defaults, once).
    quality_min_openness: NonNegative = QualityGate.min_openness  # VREYESAM_QUALITY_MIN_OPENNESS
    quality_max_offgaze: NonNegative = QualityGate.max_offgaze  # VREYESAM_QUALITY_MAX_OFFGAZE
    quality_min_sharpness: NonNegative = QualityGate.min_sharpness  # VREYESAM_QUALITY_MIN_SHARPNESS
    quality_max_specular: NonNegative = QualityGate.max_specular  # VREYESAM_QUALITY_MAX_SPECULAR
    max_concurrency: int = 1  # VREYESAM_MAX_CONCURRENCY: predictions running at once per process
    max_queue: int = 8  # VREYESAM_MAX_QUEUE: predictions waiting; beyond it, 503 at once
    queue_timeout_s: float = 30.0  # VREYESAM_QUEUE_TIMEOUT_S: longest wait for a slot before 503
    # Memory no client can exhaust: request bodies held at once, and how long a body and a head may take.
    body_budget_bytes: int = 64 * MiB  # VREYESAM_BODY_BUDGET_BYTES: bodies in flight at once; beyond, 503
    body_timeout_s: float = 30.0  # VREYESAM_BODY_TIMEOUT_S: longest a request body may take to arrive (408)
    header_timeout_s: float = 10.0  # VREYESAM_HEADER_TIMEOUT_S: longest a request head may take (closed)
    # Prometheus metrics on a port of their own (never the API's, no API key); 0 turns them off. 9464 is the
    # port OpenTelemetry's Prometheus exporter uses, free of the usual web and Prometheus ports.
    metrics_port: int = 9464  # VREYESAM_METRICS_PORT
    metrics_host: str | None = None  # VREYESAM_METRICS_HOST: default VREYESAM_HOST
    # Traces: on when OpenTelemetry's own variables ask for them (OTEL_EXPORTER_OTLP_ENDPOINT or
    # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set, OTEL_SDK_DISABLED not true, OTEL_TRACES_EXPORTER not `none`).
    traces: bool = False
    api_keys_file: Path | None = None  # VREYESAM_API_KEYS_FILE: one key per line; unset = no auth
    model_key_file: Path | None = None  # VREYESAM_MODEL_KEY_FILE: key of an encrypted model (a secret file)
    model_key: str | None = field(default=None, repr=False)  # VREYESAM_MODEL_KEY: the key itself, if no file
    # Signed model directories: the public key the directory must be signed with (read-only, never writable
    # by whoever writes the model); unset: the signature is not checked (and /readyz says "signed": false).
    model_public_key_file: Path | None = None  # VREYESAM_MODEL_PUBLIC_KEY_FILE
    model_signature_file: Path | None = None  # VREYESAM_MODEL_SIGNATURE_FILE: default model.sig in the directory
    shutdown_timeout_s: float = 30.0  # VREYESAM_SHUTDOWN_TIMEOUT_S: grace for in-flight requests on SIGTERM
    log_level: str = "info"  # VREYESAM_LOG_LEVEL
    hf_token_file: Path | None = None  # VREYESAM_HF_TOKEN_FILE: the exporter's Hub token (a secret file)
    # The Ray paths (`vreyesam serve --ray`, `vreyesam predict --ray`; the `ray` extra):
    ray_replicas: int = 1  # VREYESAM_RAY_REPLICAS: Serve replicas, each with its own copy of the model
    ray_max_replicas: int = 0  # VREYESAM_RAY_MAX_REPLICAS: above ray_replicas, autoscale up to it; 0 = fixed
    ray_cpus: float = 1.0  # VREYESAM_RAY_CPUS: CPUs each replica or batch actor reserves (fractions allowed)
    ray_gpus: float = 1.0  # VREYESAM_RAY_GPUS: GPUs each reserves when the device is cuda (0.5: two per GPU)
    ray_actors: int = 0  # VREYESAM_RAY_ACTORS: batch actors, each loads the model once; 0 = as many as fit

    def model_key_text(self) -> str | None:
        """The model key from its secret file (preferred) or the environment; None when neither is set."""
        if self.model_key_file is not None:
            try:
                return self.model_key_file.read_text(encoding="utf-8").strip()
            except OSError:
                raise SettingsError("VREYESAM_MODEL_KEY_FILE cannot be read") from None
        return self.model_key

    def environment(self) -> dict[str, str]:
        """The VREYESAM_* variables that reproduce these settings in another process (a worker, a node)."""
        env = {}
        for name, value in vars(self).items():
            if value is not None and name != "traces":  # the OTEL_* variables travel as they are
                text = ("1" if value else "0") if isinstance(value, bool) else str(value)
                env[f"VREYESAM_{name.upper()}"] = text
        return env

    @property
    def decode_limits(self) -> DecodeLimits:
        return DecodeLimits(max_width=self.max_width, max_height=self.max_height, max_pixels=self.max_pixels)

    @property
    def quality_gate(self) -> QualityGate:
        return QualityGate(
            min_openness=self.quality_min_openness,
            max_offgaze=self.quality_max_offgaze,
            min_sharpness=self.quality_min_sharpness,
            max_specular=self.quality_max_specular,
        )

    def with_overrides(self, **overrides: Any) -> Settings:
        """Apply command-line values; None means "not given"."""
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse(name: str, kind: str, raw: str) -> object:
    text = raw.strip()
    try:
        if kind == "bool":
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        if kind == "int":
            value: object = int(text)
            if int(text) < 0:
                raise ValueError
            return value
        if kind == "float":
            number = float(text)
            if not number > 0:
                raise ValueError
            return number
        if kind == "non-negative":
            number = float(text)
            if not 0 <= number < math.inf:
                raise ValueError
            return number
    except ValueError:
        raise SettingsError(f"{name} has an invalid value") from None
    if kind == "path":
        return Path(text) if text else None
    return text


_KINDS = {bool: "bool", int: "int", float: "float"}


def _kind(field_type: object) -> str:
    text = str(field_type)
    if "Path" in text:
        return "path"
    if text == "NonNegative":
        return "non-negative"
    for python_type, kind in _KINDS.items():
        if text == python_type.__name__:
            return kind
    return "str"


def _traces_wanted(env: Mapping[str, str]) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").lower() in _TRUE or env.get("OTEL_TRACES_EXPORTER", "") == "none":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    values: dict[str, object] = {"traces": _traces_wanted(env)}
    for item in fields(Settings):
        if item.name == "traces":
            continue  # OpenTelemetry's variables decide, not a VREYESAM_ one
        name = f"VREYESAM_{item.name.upper()}"
        raw = env.get(name)
        if raw is None and item.name == "port":
            name, raw = "PORT", env.get("PORT")
        if raw is not None:
            values[item.name] = _parse(name, _kind(item.type), raw)
    settings = Settings(**values)  # type: ignore[arg-type]
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    if settings.device not in DEVICES:
        raise SettingsError(f"VREYESAM_DEVICE must be one of {', '.join(DEVICES)}")
    if settings.precision not in PRECISION_REQUESTS:
        raise SettingsError(f"VREYESAM_PRECISION must be one of {', '.join(PRECISION_REQUESTS)}")
    if not 0 < settings.port < 65536:
        raise SettingsError("VREYESAM_PORT must be between 1 and 65535")
    for name in ("workers", "max_concurrency", "max_body_bytes", "max_width", "max_height", "max_pixels"):
        if getattr(settings, name) < 1:
            raise SettingsError(f"VREYESAM_{name.upper()} must be at least 1")
    if not 1 <= settings.encoder_batch <= MAX_ENCODER_BATCH:
        raise SettingsError(f"VREYESAM_ENCODER_BATCH must be between 1 (off) and {MAX_ENCODER_BATCH}")
    for name in ("quality_min_openness", "quality_max_offgaze", "quality_max_specular"):
        if not 0.0 <= getattr(settings, name) <= 1.0:
            raise SettingsError(f"VREYESAM_{name.upper()} must be between 0 and 1")
    if settings.quality_min_sharpness < 0.0:
        raise SettingsError("VREYESAM_QUALITY_MIN_SHARPNESS must be at least 0")
    if settings.encoder_batch_window_ms > 1000:
        raise SettingsError("VREYESAM_ENCODER_BATCH_WINDOW_MS must be at most 1000")
    if settings.body_budget_bytes < settings.max_body_bytes:
        raise SettingsError("VREYESAM_BODY_BUDGET_BYTES must be at least VREYESAM_MAX_BODY_BYTES")
    if not 0 <= settings.metrics_port < 65536:
        raise SettingsError("VREYESAM_METRICS_PORT must be between 0 (off) and 65535")
    if settings.metrics_port and settings.metrics_port == settings.port:
        raise SettingsError("VREYESAM_METRICS_PORT must differ from the API's port")
    if settings.log_level.lower() not in {"debug", "info", "warning", "error"}:
        raise SettingsError("VREYESAM_LOG_LEVEL must be debug, info, warning or error")
    if settings.ray_replicas < 1:
        raise SettingsError("VREYESAM_RAY_REPLICAS must be at least 1")
    if settings.ray_max_replicas and settings.ray_max_replicas < settings.ray_replicas:
        raise SettingsError("VREYESAM_RAY_MAX_REPLICAS must be 0 or at least VREYESAM_RAY_REPLICAS")


def read_secret_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a secret file (comments with #)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
