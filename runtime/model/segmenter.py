"""A loaded model and the VREyeSAM procedure as named stages: prepare -> encode -> decode -> postprocess.

`Segmenter` holds only immutable state (manifest, graphs), so one instance is shared by all requests and
threads; everything per image lives in the values passed between stages. The stages hand the graphs'
values on as the engine gives them (they may live on a device); only what the procedure reads on the host
is copied there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace

import cv2
import numpy as np

from vreyesam.runtime.engines.graph import Graph, Value
from vreyesam.runtime.manifest import DECODER_IMAGE_INPUTS, ENCODER_OUTPUTS, Manifest
from vreyesam.runtime.model import preprocess, procedure
from vreyesam.runtime.vocabulary import Precision


class PromptOutsideImage(ValueError):
    """An explicit prompt point lies outside the image (a caller's mistake)."""


@dataclass(frozen=True)
class PredictOptions:
    """Per-request settings; None means the manifest's default."""

    points: int | None = None
    threshold: float | None = None
    seed: int | None = None
    # Explicit Nx2 (x, y) prompts in the input image's pixel frame; replace the sampled points.
    explicit_points: np.ndarray | None = None


@dataclass(frozen=True)
class PreparedImage:
    input_hw: tuple[int, int]
    fitted: np.ndarray  # hxwx3 uint8, the reference's fitted image
    tensor: np.ndarray  # 3xSxS float32, normalised encoder input

    @property
    def fitted_hw(self) -> tuple[int, int]:
        return self.fitted.shape[0], self.fitted.shape[1]


@dataclass(frozen=True)
class Features:
    """One image's encoder outputs, named as in the graphs (see export/graphs.py for the split)."""

    image_embed: Value  # 1x256x64x64 (the decoder reads the tokens derived from it)
    high_res_feats_0: Value  # 1x32x256x256
    high_res_feats_1: Value  # 1x64x128x128
    image_tokens: Value  # 1x4096x256
    token_to_image_keys: Value  # 1x4096x128
    token_to_image_values: Value  # 1x4096x128
    image_to_token_queries: Value  # 1x4096x128

    def decoder_feed(self) -> dict[str, Value]:
        return {name: getattr(self, name) for name in DECODER_IMAGE_INPUTS}


@dataclass(frozen=True)
class Timings:
    """Milliseconds per stage, in the order the stages ran; `total` is their sum."""

    stages: tuple[tuple[str, float], ...] = ()

    @property
    def total(self) -> float:
        return round(sum(ms for _, ms in self.stages), 3)

    def as_dict(self) -> dict[str, float]:
        return {**dict(self.stages), "total": self.total}


@dataclass(frozen=True)
class Prediction:
    """Outputs at the input image's size, plus what produced them."""

    binary: np.ndarray  # HxW bool
    probability: np.ndarray  # HxW float32 in [0, 1]
    uncertainty: np.ndarray  # HxW float32 in [0, 1]
    points: np.ndarray  # Nx1x2 (x, y) in the fitted frame
    scores: np.ndarray  # N float32
    low_res_logits: np.ndarray  # Nx256x256 float32
    statistics: procedure.MaskStatistics
    timings: Timings = field(default_factory=Timings)


class _Stopwatch:
    """Collects (stage, ms) pairs for one prediction."""

    def __init__(self) -> None:
        self.stages: list[tuple[str, float]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.stages.append((name, round((time.perf_counter() - start) * 1000.0, 3)))

    def timings(self) -> Timings:
        return Timings(tuple(self.stages))


class Segmenter:
    def __init__(
        self, *, manifest: Manifest, encoder: Graph, decoder: Graph, decoder_batch: int, precision: Precision = "fp32"
    ) -> None:
        if [item.name for item in fields(Features)] != list(ENCODER_OUTPUTS):
            raise ValueError("Features does not name the encoder's outputs")
        self.manifest = manifest
        self.precision = precision  # the variant served: "fp32" or a reduced one (model.variants)
        self.encoder = encoder
        self.decoder = decoder
        self.decoder_batch = max(1, decoder_batch)

    @property
    def engines(self) -> str:
        """The engine of each graph, e.g. `CPUExecutionProvider` or `OpenVINO-CPU-bf16+CPUExecutionProvider`."""
        return "+".join(dict.fromkeys((self.encoder.engine, self.decoder.engine)))

    def prepare(self, image_rgb: np.ndarray) -> PreparedImage:
        prep = self.manifest.preprocessing
        fitted = preprocess.fit_image(image_rgb, prep.fit_size)
        return PreparedImage(
            input_hw=(image_rgb.shape[0], image_rgb.shape[1]),
            fitted=fitted,
            tensor=preprocess.encoder_input(fitted, prep),
        )

    def encode(self, tensor: np.ndarray) -> Features:
        outputs = self.encoder.run({"image": tensor[None]})
        return Features(**{name: outputs[name] for name in ENCODER_OUTPUTS})

    def decode(self, features: Features, model_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nx1x2 float32 points in the model frame -> (Nx256x256 logits, N scores) on the host, in chunks."""
        logits, scores = [], []
        image_side = features.decoder_feed()
        for start in range(0, len(model_points), self.decoder_batch):
            chunk = model_points[start : start + self.decoder_batch]
            labels = np.ones((len(chunk), 1), dtype=np.int32)
            outputs = self.decoder.run({**image_side, "point_coords": chunk, "point_labels": labels})
            logits.append(self.decoder.to_host(outputs["low_res_logits"]))
            scores.append(self.decoder.to_host(outputs["scores"]))
        return np.concatenate(logits), np.concatenate(scores)

    def prompt_points(self, prepared: PreparedImage, options: PredictOptions) -> np.ndarray:
        """Nx1x2 points (x, y) in the fitted frame: the caller's explicit ones, or the seeded sample."""
        if options.explicit_points is not None:
            return explicit_prompts(options.explicit_points, prepared)
        defaults = self.manifest.procedure
        count = defaults.points if options.points is None else options.points
        seed = defaults.seed if options.seed is None else options.seed
        return procedure.sample_points(prepared.fitted_hw, count, seed)

    def predict(self, image_rgb: np.ndarray, options: PredictOptions | None = None) -> Prediction:
        """HxWx3 uint8 RGB -> Prediction at HxW. Raises PromptOutsideImage for a bad explicit prompt."""
        options = options or PredictOptions()
        clock = _Stopwatch()
        with clock.stage("preprocess"):
            prepared = self.prepare(image_rgb)
            points = self.prompt_points(prepared, options)
        with clock.stage("encoder"):
            features = self.encode(prepared.tensor)
        with clock.stage("decoder"):
            model_points = procedure.to_model_frame(points, prepared.fitted_hw, self.manifest.preprocessing.image_size)
            low_res_logits, scores = self.decode(features, model_points)
        with clock.stage("postprocess"):
            prediction = self.postprocess(prepared, points, low_res_logits, scores, options.threshold)
        return replace(prediction, timings=clock.timings())

    def postprocess(
        self,
        prepared: PreparedImage,
        points: np.ndarray,
        low_res_logits: np.ndarray,
        scores: np.ndarray,
        threshold: float | None = None,
    ) -> Prediction:
        """Ensemble, threshold and uncertainty in the fitted frame, then resized to the input size."""
        defaults = self.manifest.procedure
        threshold = defaults.threshold if threshold is None else threshold
        probability_fitted = procedure.ensemble_probability(
            low_res_logits, scores, prepared.fitted_hw, defaults.mask_logit_threshold
        )
        binary_fitted = (probability_fitted > threshold).astype(np.uint8)
        binary = procedure.resize_to(binary_fitted, prepared.input_hw, cv2.INTER_NEAREST).astype(bool)
        uncertainty = procedure.uncertainty_map(low_res_logits, scores, defaults.logit_clamp)
        return Prediction(
            binary=binary,
            probability=procedure.resize_to(probability_fitted, prepared.input_hw, cv2.INTER_LINEAR),
            uncertainty=procedure.resize_to(uncertainty, prepared.input_hw, cv2.INTER_LINEAR),
            points=points,
            scores=scores,
            low_res_logits=low_res_logits,
            statistics=procedure.mask_statistics(binary, scores),
        )


def explicit_prompts(points_xy: np.ndarray, prepared: PreparedImage) -> np.ndarray:
    """Nx2 (x, y) in input pixels -> Nx1x2 in the fitted frame; PromptOutsideImage for a point off the image."""
    points = np.asarray(points_xy, dtype=np.float64)
    (in_h, in_w), (fit_h, fit_w) = prepared.input_hw, prepared.fitted_hw
    inside = np.isfinite(points).all() and (points >= 0).all() and (points[:, 0] < in_w).all()
    if not (inside and (points[:, 1] < in_h).all()):
        raise PromptOutsideImage("parameter 'prompts' holds a point outside the image")
    return (points * np.asarray([fit_w / in_w, fit_h / in_h]))[:, None, :]
