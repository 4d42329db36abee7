"""The model-directory contract shared by the exporter (writer) and the runtime (reader).

A model directory holds `manifest.json` plus the files it lists (ONNX graphs, the golden sample).
The manifest names every file by its bare file name and pins it by sha256; it never holds an absolute
path, a user name or a token. The exporter writes it; the runtime's model room reads it (and reads each
artifact once, see `vreyesam.runtime.model.artifacts`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vreyesam.runtime.gate_report import FidelityReport, fidelity_from_dict
from vreyesam.runtime.vocabulary import GraphPrecision

# 2: the encoder graph also gives the decoder's image-side tensors (the decoder no longer takes image_embed).
# 3: preprocessing and the procedure are graphs too (the host only fits the image and encodes the answer).
# 4: the decoder's image-side tensors in the layouts the regrouped decoder reads (head-major first-block keys
#    and values; the upscaling's skip features instead of the raw high-resolution maps).
SCHEMA_VERSION = 4
MANIFEST_NAME = "manifest.json"

# Artifact roles the runtime needs; the exporter must write all of them. The four graphs run in this order.
PREPROCESS = "preprocess"
ENCODER = "encoder"
DECODER = "decoder"
PROCEDURE = "procedure"
GOLDEN = "golden"
GRAPHS = (PREPROCESS, ENCODER, DECODER, PROCEDURE)
REQUIRED_ARTIFACTS = (*GRAPHS, GOLDEN)
# Optional: the fp16 encoder graph of the `fp16-encoder` variant, and the calibration images the serving
# device gates that variant on (it is converted on a build machine without a GPU); the procedure graph with
# all prompts at once, which a GPU runs (the other form streams one prompt at a time, as a CPU's memory
# prefers; both give the same bits).
ENCODER_FP16 = "encoder-fp16"
CALIBRATION = "calibration"
PROCEDURE_PARALLEL = "procedure-parallel"
# The artifacts that are ONNX graphs (encrypted when the model is).
GRAPH_ROLES = (*GRAPHS, ENCODER_FP16, PROCEDURE_PARALLEL)

# Tensor names of the graphs: the encoder's outputs, in order, and the decoder's per-image inputs (all of
# the encoder's outputs but the raw feature maps, which are there for the export's embedding check).
ENCODER_OUTPUTS = (
    "image_embed",
    "high_res_feats_0",
    "high_res_feats_1",
    "image_tokens",
    "token_to_image_keys",
    "token_to_image_values",
    "image_to_token_queries",
    "upscale_skip_0",
    "upscale_skip_1",
)
# The decoder graph's image inputs, in its input order (its forward signature, which the export names
# positionally): every encoder output but the three raw feature maps.
DECODER_IMAGE_INPUTS = ENCODER_OUTPUTS[3:]
# The decoder's prompts and outputs: Nx1x2 float32 points (x, y) in the model frame, Nx1 int32 labels (1 =
# foreground), then the first multimask output's Nx256x256 logits and its N scores.
DECODER_POINTS = "point_coords"
DECODER_LABELS = "point_labels"
DECODER_INPUTS = (*DECODER_IMAGE_INPUTS, DECODER_POINTS, DECODER_LABELS)
DECODER_LOGITS = "low_res_logits"
DECODER_SCORES = "scores"
DECODER_OUTPUTS = (DECODER_LOGITS, DECODER_SCORES)

# The free dimensions of the networks: the encoder's images and the decoder's prompts (the first axis of
# their inputs and outputs). The runtime fixes them per session (engines.shaped).
ENCODER_BATCH_AXIS = "batch"
DECODER_PROMPT_AXIS = "prompts"
PROCEDURE_PROMPT_AXIS = "N"  # the procedure graph's prompts (its logits' first axis and its scores')

# The preprocessing graph: the fitted hxwx3 uint8 RGB image -> the encoder's normalised 1x3xSxS input.
PREPROCESS_INPUT = "fitted"
PREPROCESS_OUTPUT = "image"
ENCODER_INPUT = PREPROCESS_OUTPUT  # Bx3xSxS: the preprocessing's output, one image or a batch of them
# The procedure graph: decoder outputs, threshold and the two frame sizes -> the maps at the input size.
PROCEDURE_INPUTS = (DECODER_LOGITS, DECODER_SCORES, "threshold", "fitted_hw", "input_hw")
PROCEDURE_OUTPUTS = ("binary", "probability", "uncertainty", "area_px")

_SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ManifestError(Exception):
    """The model directory does not satisfy the contract (missing, malformed or tampered)."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, element type and shape of one graph input or output; symbolic dims are strings."""

    name: str
    dtype: str
    shape: list[int | str]


@dataclass(frozen=True)
class Artifact:
    """One file of the model directory, pinned by sha256."""

    file: str
    sha256: str
    bytes: int
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes the encoder input (SAM2Transforms, reproduced without torch)."""

    fit_size: int = 1024  # the reference first fits the image inside fit_size x fit_size (cv2 INTER_LINEAR)
    image_size: int = 1024  # then resizes to image_size x image_size (bilinear, antialiased, float)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    low_res_size: int = 256  # side of the decoder's mask logits


@dataclass(frozen=True)
class ProcedureDefaults:
    """The VREyeSAM inference procedure's defaults (paper settings)."""

    points: int = 30
    threshold: float = 0.2
    seed: int = 0
    mask_logit_threshold: float = 0.0
    logit_clamp: float = 32.0


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights came from: an identifier (never a local path) and its sha256."""

    kind: str  # "huggingface" | "local" | "random"
    id: str
    sha256: str | None
    random_weights: bool
    seed: int | None = None


@dataclass(frozen=True)
class Variant:
    """A reduced-precision way to run the same graphs, with the export's verdict on it.

    The fp32 model itself is not a variant: it is what `precision`, `fidelity` and `golden_tolerance`
    describe. A variant is served only if `passed` (its fidelity gate) is true.
    """

    encoder: GraphPrecision
    decoder: GraphPrecision
    passed: bool
    fidelity: FidelityReport
    golden_tolerance: dict[str, float]


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    model_name: str
    model_version: str
    sam2_config: str
    source: WeightsSource
    opset: int
    precision: str
    artifacts: dict[str, Artifact]
    preprocessing: Preprocessing
    procedure: ProcedureDefaults
    fidelity: FidelityReport
    golden_tolerance: dict[str, float]
    tools: dict[str, str]
    encrypted: bool = False
    variants: dict[str, Variant] = field(default_factory=dict)

    @property
    def model_sha256(self) -> str:
        """One digest for the whole model: the sha256 of the sorted artifact digests."""
        joined = "\n".join(f"{role}:{self.artifacts[role].sha256}" for role in sorted(self.artifacts))
        return hashlib.sha256(joined.encode()).hexdigest()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def sha256_hex(source: bytes | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of bytes in memory, or of a file read in chunks (a checkpoint can be large)."""
    digest = hashlib.sha256()
    if isinstance(source, Path):
        with source.open("rb") as handle:
            while chunk := handle.read(chunk_size):
                digest.update(chunk)
    else:
        digest.update(source)
    return digest.hexdigest()


def _tensor_specs(raw: list[dict[str, Any]]) -> list[TensorSpec]:
    return [TensorSpec(name=str(t["name"]), dtype=str(t["dtype"]), shape=list(t["shape"])) for t in raw]


def _variant(raw: dict[str, Any]) -> Variant:
    return Variant(
        encoder=str(raw["encoder"]),
        decoder=str(raw["decoder"]),
        passed=bool(raw["passed"]),
        fidelity=fidelity_from_dict(raw["fidelity"]),
        golden_tolerance={k: float(v) for k, v in raw["golden_tolerance"].items()},
    )


def manifest_from_dict(raw: dict[str, Any]) -> Manifest:
    """Build a Manifest from parsed JSON, rejecting anything outside the contract."""
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"unsupported manifest schema version {raw.get('schema_version')!r}")
    try:
        artifacts = {
            role: Artifact(
                file=str(a["file"]),
                sha256=str(a["sha256"]),
                bytes=int(a["bytes"]),
                inputs=_tensor_specs(a.get("inputs", [])),
                outputs=_tensor_specs(a.get("outputs", [])),
            )
            for role, a in raw["artifacts"].items()
        }
        prep = raw["preprocessing"]
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            model_name=str(raw["model_name"]),
            model_version=str(raw["model_version"]),
            sam2_config=str(raw["sam2_config"]),
            source=WeightsSource(**raw["source"]),
            opset=int(raw["opset"]),
            precision=str(raw["precision"]),
            artifacts=artifacts,
            preprocessing=Preprocessing(
                fit_size=int(prep["fit_size"]),
                image_size=int(prep["image_size"]),
                mean=tuple(float(v) for v in prep["mean"]),  # type: ignore[arg-type]
                std=tuple(float(v) for v in prep["std"]),  # type: ignore[arg-type]
                low_res_size=int(prep["low_res_size"]),
            ),
            procedure=ProcedureDefaults(**raw["procedure"]),
            fidelity=fidelity_from_dict(raw["fidelity"]),
            golden_tolerance={k: float(v) for k, v in raw["golden_tolerance"].items()},
            tools={str(k): str(v) for k, v in raw["tools"].items()},
            encrypted=bool(raw.get("encrypted", False)),
            variants={str(name): _variant(v) for name, v in raw.get("variants", {}).items()},
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ManifestError("manifest is malformed") from exc
    for role in REQUIRED_ARTIFACTS:
        if role not in manifest.artifacts:
            raise ManifestError(f"manifest lists no {role} artifact")
    for artifact in manifest.artifacts.values():
        if not _SAFE_FILE_NAME.match(artifact.file):
            raise ManifestError("manifest names an artifact outside the model directory")
    return manifest


def read_manifest(model_dir: Path) -> Manifest:
    try:
        data = (model_dir / MANIFEST_NAME).read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError("model directory has no manifest") from exc
    except OSError as exc:
        raise ManifestError("manifest is unreadable") from exc
    return parse_manifest(data)


def parse_manifest(data: bytes) -> Manifest:
    """A manifest from its file's bytes (as read once, e.g. when its signature was checked)."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise ManifestError("manifest is unreadable") from exc
    if not isinstance(raw, dict):
        raise ManifestError("manifest is malformed")
    return manifest_from_dict(raw)
