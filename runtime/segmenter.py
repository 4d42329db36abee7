"""A loaded model and the VREyeSAM procedure as named stages: prepare -> encode -> decode -> ensemble.

`Segmenter` holds only immutable state (manifest, onnxruntime sessions), so one instance is shared by
all requests and threads; everything per image lives in the values passed between stages.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np

from vreyesam.runtime import preprocess, procedure
from vreyesam.runtime.manifest import DECODER_IMAGE_INPUTS, Manifest
from vreyesam.runtime.sessions import InferenceGraph


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

    image_embed: np.ndarray  # 1x256x64x64 (the decoder reads the tokens derived from it)
    high_res_feats_0: np.ndarray  # 1x32x256x256
    high_res_feats_1: np.ndarray  # 1x64x128x128
    image_tokens: np.ndarray  # 1x4096x256
    token_to_image_keys: np.ndarray  # 1x4096x128
    token_to_image_values: np.ndarray  # 1x4096x128
    image_to_token_queries: np.ndarray  # 1x4096x128

    def decoder_feed(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in DECODER_IMAGE_INPUTS}


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
    timings_ms: dict[str, float] = field(default_factory=dict)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = round((time.perf_counter() - start) * 1000.0, 3)


class Segmenter:
    def __init__(
        self,
        *,
        manifest: Manifest,
        encoder: InferenceGraph,
        decoder: InferenceGraph,
        decoder_batch: int,
        precision: str = "fp32",
    ) -> None:
        self.manifest = manifest
        self.precision = precision  # the variant served: "fp32" or a reduced one (runtime.variants)
        self.encoder = encoder
        self.decoder = decoder
        self.decoder_batch = max(1, decoder_batch)

    @property
    def provider(self) -> str:
        """The engine of each graph, e.g. `CPUExecutionProvider` or `OpenVINO-CPU-bf16+CPUExecutionProvider`."""
        engines = dict.fromkeys(str(graph.get_providers()[0]) for graph in (self.encoder, self.decoder))
        return "+".join(engines)

    def prepare(self, image_rgb: np.ndarray) -> PreparedImage:
        prep = self.manifest.preprocessing
        fitted = preprocess.fit_image(image_rgb, prep.fit_size)
        return PreparedImage(
            input_hw=(image_rgb.shape[0], image_rgb.shape[1]),
            fitted=fitted,
            tensor=preprocess.encoder_input(fitted, prep),
        )

    def encode(self, tensor: np.ndarray) -> Features:
        return Features(*self.encoder.run(None, {"image": tensor[None]}))

    def decode(self, features: Features, model_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nx1x2 float32 points in the model frame -> (Nx256x256 logits, N scores), in chunks of decoder_batch."""
        logits, scores = [], []
        image_side = features.decoder_feed()
        for start in range(0, len(model_points), self.decoder_batch):
            chunk = model_points[start : start + self.decoder_batch]
            chunk_logits, chunk_scores = self.decoder.run(
                None,
                {
                    **image_side,
                    "point_coords": chunk,
                    "point_labels": np.ones((len(chunk), 1), dtype=np.int32),
                },
            )
            logits.append(chunk_logits)
            scores.append(chunk_scores)
        return np.concatenate(logits), np.concatenate(scores)

    def prompt_points(self, prepared: PreparedImage, options: PredictOptions) -> np.ndarray:
        """Nx1x2 points (x, y) in the fitted frame: the caller's explicit ones, or the seeded sample."""
        if options.explicit_points is not None:
            (in_h, in_w), (fit_h, fit_w) = prepared.input_hw, prepared.fitted_hw
            scale = np.asarray([fit_w / in_w, fit_h / in_h])
            return (np.asarray(options.explicit_points, dtype=np.float64) * scale)[:, None, :]
        defaults = self.manifest.procedure
        count = defaults.points if options.points is None else options.points
        seed = defaults.seed if options.seed is None else options.seed
        return procedure.sample_points(prepared.fitted_hw, count, seed)

    def predict(self, image_rgb: np.ndarray, options: PredictOptions | None = None) -> Prediction:
        """HxWx3 uint8 RGB -> Prediction at HxW."""
        options = options or PredictOptions()
        timings: dict[str, float] = {}
        with _timed(timings, "preprocess"):
            prepared = self.prepare(image_rgb)
            points = self.prompt_points(prepared, options)
        with _timed(timings, "encoder"):
            features = self.encode(prepared.tensor)
        with _timed(timings, "decoder"):
            model_points = procedure.to_model_frame(points, prepared.fitted_hw, self.manifest.preprocessing.image_size)
            low_res_logits, scores = self.decode(features, model_points)
        with _timed(timings, "postprocess"):
            prediction = self.postprocess(prepared, points, low_res_logits, scores, options.threshold)
        timings["total"] = round(sum(timings.values()), 3)
        prediction.timings_ms.update(timings)
        return prediction

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
