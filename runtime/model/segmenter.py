"""A loaded model and the VREyeSAM procedure as named stages: prepare -> encode -> decode -> finish.

The host does only what must be on the host: fit the decoded image to 1024 (`cv2.resize` on uint8, the
reference's own step) and sample the prompt points. Everything between runs in four graphs on the
execution provider (preprocess, encoder, decoder, procedure); their values pass from graph to graph as the
engine holds them (on a GPU they stay in device memory) and only the maps asked for come back to the host.

`Segmenter` holds only immutable state (manifest, graphs), so one instance is shared by all requests and
threads; everything per image lives in the values passed between stages.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import numpy as np

from vreyesam.runtime.engines.graph import Graph, Value
from vreyesam.runtime.manifest import (
    DECODER_IMAGE_INPUTS,
    ENCODER_OUTPUTS,
    PREPROCESS_INPUT,
    PREPROCESS_OUTPUT,
    Manifest,
)
from vreyesam.runtime.model import preprocess, procedure
from vreyesam.runtime.vocabulary import MAP_NAMES, MapName, Precision


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
    maps: tuple[MapName, ...] = MAP_NAMES  # which maps to compute and copy back
    keep_logits: bool = True  # copy the decoder's Nx256x256 logits back too (tests, benchmark, gate)


@dataclass(frozen=True)
class PreparedImage:
    input_hw: tuple[int, int]
    fitted: np.ndarray  # hxwx3 uint8, the reference's fitted image
    model_input: Value  # 1x3xSxS float32 normalised encoder input, where the preprocessing graph left it

    @property
    def fitted_hw(self) -> tuple[int, int]:
        return self.fitted.shape[0], self.fitted.shape[1]


@dataclass(frozen=True)
class Features:
    """One image's encoder outputs, named as in the graphs (see export/graphs.py for the split)."""

    image_embed: Value  # 1x256x64x64 (the decoder reads the tokens derived from it)
    high_res_feats_0: Value  # 1x32x256x256 (the decoder reads upscale_skip_0, derived from it)
    high_res_feats_1: Value  # 1x64x128x128 (the decoder reads upscale_skip_1)
    image_tokens: Value  # 1x4096x256
    token_to_image_keys: Value  # 1x8x16x4096 (head-major, transposed)
    token_to_image_values: Value  # 1x8x4096x16 (head-major)
    image_to_token_queries: Value  # 1x4096x128
    upscale_skip_0: Value  # 1x4096x4x128 (channels last, in the upscaling's pixel order)
    upscale_skip_1: Value  # 1x4096x256

    def decoder_feed(self) -> dict[str, Value]:
        return {name: getattr(self, name) for name in DECODER_IMAGE_INPUTS}


@dataclass(frozen=True)
class Decoded:
    logits: Value  # Nx256x256 float32, the first multimask output of each prompt
    scores: np.ndarray  # N float32, on the host (the statistics read them)


@dataclass(frozen=True)
class Timings:
    """Milliseconds per stage, in the order the stages ran; `total` is their sum, `host` the part of it
    spent outside engine runs (fitting, sampling, copies, bookkeeping)."""

    stages: tuple[tuple[str, float], ...] = ()
    engine_ms: float = 0.0

    @property
    def total(self) -> float:
        return round(sum(ms for _, ms in self.stages), 3)

    def as_dict(self) -> dict[str, float]:
        return {**dict(self.stages), "total": self.total, "host": round(self.total - self.engine_ms, 3)}


@dataclass(frozen=True)
class Prediction:
    """Outputs at the input image's size (the maps not asked for are None), plus what produced them."""

    input_hw: tuple[int, int]  # H, W of the input image
    binary: np.ndarray | None  # HxW bool
    probability: np.ndarray | None  # HxW float32 in [0, 1]
    uncertainty: np.ndarray | None  # HxW float32 in [0, 1]
    points: np.ndarray  # Nx1x2 (x, y) in the fitted frame
    scores: np.ndarray  # N float32
    low_res_logits: np.ndarray | None  # Nx256x256 float32, when kept
    statistics: procedure.MaskStatistics
    timings: Timings = field(default_factory=Timings)


class _Clock:
    """One prediction's stage timings, and the time spent inside engine runs."""

    def __init__(self) -> None:
        self.stages: list[tuple[str, float]] = []
        self.engine_ms = 0.0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.stages.append((name, round((time.perf_counter() - start) * 1000.0, 3)))

    def run(self, graph: Graph, feeds: Mapping[str, Value], fetch: Sequence[str] | None = None) -> dict[str, Value]:
        start = time.perf_counter()
        try:
            return graph.run(feeds, fetch)
        finally:
            self.engine_ms += (time.perf_counter() - start) * 1000.0

    def timings(self) -> Timings:
        return Timings(tuple(self.stages), round(self.engine_ms, 3))


def _handed(source: Graph, target: Graph, values: Mapping[str, Value]) -> dict[str, Value]:
    """Values from `source` as `target` takes them: as they are on the same engine, else via the host."""
    if source.engine == target.engine:
        return dict(values)
    return {name: source.to_host(value) for name, value in values.items()}


class Segmenter:
    def __init__(
        self,
        *,
        manifest: Manifest,
        preprocess: Graph,
        encoder: Graph,
        decoder: Graph,
        procedure: Graph,
        decoder_batch: int,
        precision: Precision = "fp32",
        refused: Mapping[str, str] | None = None,
    ) -> None:
        if [item.name for item in fields(Features)] != list(ENCODER_OUTPUTS):
            raise ValueError("Features does not name the encoder's outputs")
        self.manifest = manifest
        self.precision = precision  # the variant served: "fp32" or a reduced one (model.variants)
        self.refused = dict(refused or {})  # variants that failed their gate on this device, and why
        self.preprocess, self.encoder, self.decoder, self.procedure = preprocess, encoder, decoder, procedure
        self.decoder_batch = max(1, decoder_batch)

    @property
    def engines(self) -> str:
        """The engines, the networks' first: `CPUExecutionProvider`, `OpenVINO-CPU-bf16+CPUExecutionProvider`..."""
        graphs = (self.encoder, self.decoder, self.preprocess, self.procedure)
        return "+".join(dict.fromkeys(graph.engine for graph in graphs))

    @property
    def graph_engines(self) -> dict[str, str]:
        """Each graph's engine, in the order they run."""
        graphs = {"preprocess": self.preprocess, "encoder": self.encoder, "decoder": self.decoder}
        return {role: graph.engine for role, graph in {**graphs, "procedure": self.procedure}.items()}

    def prepare(self, image_rgb: np.ndarray, clock: _Clock | None = None) -> PreparedImage:
        clock = clock or _Clock()
        fitted = preprocess.fit_image(image_rgb, self.manifest.preprocessing.fit_size)
        outputs = clock.run(self.preprocess, {PREPROCESS_INPUT: fitted})
        return PreparedImage((image_rgb.shape[0], image_rgb.shape[1]), fitted, outputs[PREPROCESS_OUTPUT])

    def encode(self, prepared: PreparedImage, clock: _Clock | None = None) -> Features:
        clock = clock or _Clock()
        feed = _handed(self.preprocess, self.encoder, {"image": prepared.model_input})
        return Features(**clock.run(self.encoder, feed, ENCODER_OUTPUTS))

    def decode(self, features: Features, model_points: np.ndarray, clock: _Clock | None = None) -> Decoded:
        """Nx1x2 float32 points in the model frame -> logits and scores, in chunks of `decoder_batch` prompts.

        One chunk (a GPU takes all prompts at once) leaves the logits on the device; several (one prompt per
        call measured fastest on a CPU) are joined on the host, which is the CPU's memory anyway.
        """
        clock = clock or _Clock()
        image_side = _handed(self.encoder, self.decoder, features.decoder_feed())
        starts = range(0, len(model_points), self.decoder_batch)
        if len(starts) == 1:
            only = self._decode_chunk(image_side, model_points, clock)
            return Decoded(only["low_res_logits"], self.decoder.to_host(only["scores"]))
        # Each chunk is copied to the host as soon as it is made: an output value onnxruntime allocated was
        # measured to keep ~12-18 MB of its run alive, so 30 held chunks held ~0.55 GB more at the peak.
        logits, scores = [], []
        for start in starts:
            output = self._decode_chunk(image_side, model_points[start : start + self.decoder_batch], clock)
            logits.append(self.decoder.to_host(output["low_res_logits"]))
            scores.append(self.decoder.to_host(output["scores"]))
        return Decoded(np.concatenate(logits), np.concatenate(scores))

    def _decode_chunk(self, image_side: dict[str, Value], points: np.ndarray, clock: _Clock) -> dict[str, Value]:
        labels = np.ones((len(points), 1), dtype=np.int32)
        return clock.run(self.decoder, {**image_side, "point_coords": points, "point_labels": labels})

    def finish(
        self,
        prepared: PreparedImage,
        decoded: Decoded,
        options: PredictOptions,
        clock: _Clock | None = None,
    ) -> dict[str, np.ndarray]:
        """The procedure graph: the asked-for maps and `area_px`, at the input size, on the host."""
        clock = clock or _Clock()
        threshold = self.manifest.procedure.threshold if options.threshold is None else options.threshold
        feeds = {
            **_handed(self.decoder, self.procedure, {"low_res_logits": decoded.logits}),
            "scores": decoded.scores,
            "threshold": np.asarray(threshold, dtype=np.float32),
            "fitted_hw": np.asarray(prepared.fitted_hw, dtype=np.int64),
            "input_hw": np.asarray(prepared.input_hw, dtype=np.int64),
        }
        outputs = clock.run(self.procedure, feeds, (*options.maps, "area_px"))
        return {name: self.procedure.to_host(value) for name, value in outputs.items()}

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
        clock = _Clock()
        with clock.stage("preprocess"):
            prepared = self.prepare(image_rgb, clock)
            points = self.prompt_points(prepared, options)
        with clock.stage("encoder"):
            features = self.encode(prepared, clock)
        with clock.stage("decoder"):
            model_points = procedure.to_model_frame(points, prepared.fitted_hw, self.manifest.preprocessing.image_size)
            decoded = self.decode(features, model_points, clock)
        with clock.stage("postprocess"):
            maps = self.finish(prepared, decoded, options, clock)
            logits = self.decoder.to_host(decoded.logits) if options.keep_logits else None
        return Prediction(
            input_hw=prepared.input_hw,
            binary=maps.get("binary"),
            probability=maps.get("probability"),
            uncertainty=maps.get("uncertainty"),
            points=points,
            scores=decoded.scores,
            low_res_logits=logits,
            statistics=procedure.mask_statistics(int(maps["area_px"]), prepared.input_hw, decoded.scores),
            timings=clock.timings(),
        )


def replace_encoder(segmenter: Segmenter, fp32_encoder: Graph, refused: Mapping[str, str] | None = None) -> Segmenter:
    """The same segmenter with the fp32 encoder: the device gate's reference, and what serves when a variant's
    encoder failed there (`refused` says which and why)."""
    return Segmenter(
        manifest=segmenter.manifest,
        preprocess=segmenter.preprocess,
        encoder=fp32_encoder,
        decoder=segmenter.decoder,
        procedure=segmenter.procedure,
        decoder_batch=segmenter.decoder_batch,
        precision="fp32",
        refused=refused,
    )


def explicit_prompts(points_xy: np.ndarray, prepared: PreparedImage) -> np.ndarray:
    """Nx2 (x, y) in input pixels -> Nx1x2 in the fitted frame; PromptOutsideImage for a point off the image."""
    points = np.asarray(points_xy, dtype=np.float64)
    (in_h, in_w), (fit_h, fit_w) = prepared.input_hw, prepared.fitted_hw
    inside = np.isfinite(points).all() and (points >= 0).all() and (points[:, 0] < in_w).all()
    if not (inside and (points[:, 1] < in_h).all()):
        raise PromptOutsideImage("parameter 'prompts' holds a point outside the image")
    return (points * np.asarray([fit_w / in_w, fit_h / in_h]))[:, None, :]
