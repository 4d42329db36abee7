"""A loaded model and the VREyeSAM procedure as named stages: prepare -> encode -> decode -> finish.

The host does only what must be on the host: fit the decoded image to 1024 (`cv2.resize` on uint8, the
reference's own step) and sample the prompt points. Everything between runs in four graphs on the
execution provider (preprocess, encoder, decoder, procedure); their values pass from graph to graph as the
engine holds them (on a GPU they stay in device memory) and only the maps asked for come back to the host.

`Segmenter` holds only immutable state (manifest, graphs) and, when encoder batching is on, the thread-safe
open batch (`model.batching`), or, with CUDA graphs, the captured networks whose buffers a lone image holds
for its turn (`model.capture`), so one instance is shared by all requests and threads; everything else per
image lives in the values passed between stages.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np

from vreyesam.runtime.engines.graph import Graph, Value
from vreyesam.runtime.manifest import (
    DECODER_IMAGE_INPUTS,
    DECODER_LABELS,
    DECODER_LOGITS,
    DECODER_POINTS,
    DECODER_SCORES,
    ENCODER_INPUT,
    ENCODER_OUTPUTS,
    PREPROCESS_INPUT,
    PREPROCESS_OUTPUT,
    Manifest,
    ProcedureDefaults,
)
from vreyesam.runtime.model import preprocess, procedure
from vreyesam.runtime.model.batching import UNBATCHED, BatchPolicy, EncoderBatches, Seat
from vreyesam.runtime.model.capture import Capture
from vreyesam.runtime.model.timing import Clock, Timings
from vreyesam.runtime.vocabulary import MAP_NAMES, MapName, Precision


@dataclass(frozen=True)
class Parameters:
    """The procedure's parameters one prediction ran with, every default resolved."""

    points: int
    threshold: float
    seed: int
    prompts: Literal["explicit", "sampled"]


@dataclass(frozen=True)
class PredictOptions:
    """Per-request settings; None means the manifest's default (resolved once, by `resolve`)."""

    points: int | None = None
    threshold: float | None = None
    seed: int | None = None
    # Explicit Nx2 (x, y) prompts in the input image's pixel frame; replace the sampled points.
    explicit_points: np.ndarray | None = None
    maps: tuple[MapName, ...] = MAP_NAMES  # which maps to compute and copy back
    keep_logits: bool = True  # copy the decoder's Nx256x256 logits back too (tests, benchmark, gate)

    def resolve(self, defaults: ProcedureDefaults) -> Parameters:
        """These options over the model's defaults: the one place a default is filled in."""
        sampled = defaults.points if self.points is None else self.points
        return Parameters(
            points=sampled if self.explicit_points is None else len(self.explicit_points),
            threshold=defaults.threshold if self.threshold is None else self.threshold,
            seed=defaults.seed if self.seed is None else self.seed,
            prompts="sampled" if self.explicit_points is None else "explicit",
        )


@dataclass(frozen=True)
class PreparedImage:
    input_hw: tuple[int, int]
    fitted: np.ndarray  # hxwx3 uint8, the reference's fitted image
    model_input: Value  # 1x3xSxS float32 normalised encoder input, where the preprocessing graph left it
    seat: Seat | None = None  # its place in an encoder batch (model_input is then the batch's row)

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
class Prediction:
    """Outputs at the input image's size (the maps not asked for are None), plus what produced them."""

    input_hw: tuple[int, int]  # H, W of the input image
    binary: np.ndarray | None  # HxW bool
    probability: np.ndarray | None  # HxW float32 in [0, 1]
    uncertainty: np.ndarray | None  # HxW float32 in [0, 1]
    parameters: Parameters
    points: np.ndarray  # Nx1x2 (x, y) in the fitted frame
    scores: np.ndarray  # N float32
    low_res_logits: np.ndarray | None  # Nx256x256 float32, when kept
    statistics: procedure.MaskStatistics
    timings: Timings = field(default_factory=Timings)
    encoder_batch_images: int = 1  # images in the encoder run this image was in (1: alone)


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
        encoder_batch: BatchPolicy = UNBATCHED,
        precision: Precision = "fp32",
        refused: Mapping[str, str] | None = None,
        capture: Capture | None = None,
        capture_refused: str | None = None,
    ) -> None:
        if [item.name for item in fields(Features)] != list(ENCODER_OUTPUTS):
            raise ValueError("Features does not name the encoder's outputs")
        self.manifest = manifest
        self.precision = precision  # the variant served: "fp32" or a reduced one (model.variants)
        self.refused = dict(refused or {})  # variants that failed their gate on this device, and why
        self.preprocess, self.encoder, self.decoder, self.procedure = preprocess, encoder, decoder, procedure
        self.decoder_batch = max(1, decoder_batch)
        self.encoder_batch = encoder_batch
        shape = (3, manifest.preprocessing.image_size, manifest.preprocessing.image_size)  # one image's input
        self.batches = EncoderBatches(preprocess, encoder, shape, encoder_batch) if encoder_batch.enabled else None
        if capture is not None and self.batches is not None:
            raise ValueError("CUDA graphs serve lone images: they do not combine with encoder batching")
        self.capture = capture
        self.capture_refused = capture_refused  # why CUDA graphs were asked for and are not used
        self.self_test_seconds = 0.0  # the golden self-test's time, set by the loader before it is shared

    @property
    def engines(self) -> str:
        """The engines, the networks' first: `CPUExecutionProvider`, `OpenVINO-CPU-bf16+CPUExecutionProvider`..."""
        graphs = (self.encoder, self.decoder, self.preprocess, self.procedure)
        return "+".join(dict.fromkeys(graph.engine for graph in graphs))

    @property
    def cuda_graphs(self) -> str:
        """`on` when lone images replay captured networks, `refused: why` when asked for and not used, else
        `off`."""
        if self.capture is not None:
            return "on"
        return f"refused: {self.capture_refused}" if self.capture_refused else "off"

    @property
    def graph_engines(self) -> dict[str, str]:
        """Each graph's engine, in the order they run."""
        graphs = {"preprocess": self.preprocess, "encoder": self.encoder, "decoder": self.decoder}
        return {role: graph.engine for role, graph in {**graphs, "procedure": self.procedure}.items()}

    def prepare(
        self, image_rgb: np.ndarray, clock: Clock | None = None, capture: Capture | None = None
    ) -> PreparedImage:
        """The fitted image and the encoder's input; with batching on, written into a seat's row of a batch;
        with `capture` (its turn held), written into the captured encoder's input."""
        clock = clock or Clock()
        fitted = preprocess.fit_image(image_rgb, self.manifest.preprocessing.fit_size)
        input_hw = (image_rgb.shape[0], image_rgb.shape[1])
        if capture is not None:
            into = {PREPROCESS_OUTPUT: capture.buffers.image}
            clock.run(self.preprocess, {PREPROCESS_INPUT: fitted}, into=into)
            return PreparedImage(input_hw, fitted, capture.buffers.image)
        if self.batches is None:
            outputs = clock.run(self.preprocess, {PREPROCESS_INPUT: fitted})
            return PreparedImage(input_hw, fitted, outputs[PREPROCESS_OUTPUT])
        seat = self.batches.seat()
        try:
            clock.run(self.preprocess, {PREPROCESS_INPUT: fitted}, into={PREPROCESS_OUTPUT: seat.input_row})
        finally:
            self.batches.settle(seat)
        return PreparedImage(input_hw, fitted, seat.input_row, seat)

    def encode(self, prepared: PreparedImage, clock: Clock | None = None, capture: Capture | None = None) -> Features:
        """The image's features: its own encoder run, its row of its batch's run, or the captured run."""
        clock = clock or Clock()
        if capture is not None:
            feeds, fetch, into = capture.encoder_run()
            return Features(**clock.run(capture.encoder, feeds, fetch, into))
        if prepared.seat is not None and self.batches is not None:
            return Features(**self.batches.features(prepared.seat, clock))
        feed = _handed(self.preprocess, self.encoder, {ENCODER_INPUT: prepared.model_input})
        return Features(**clock.run(self.encoder, feed, ENCODER_OUTPUTS))

    def decode(
        self, features: Features, model_points: np.ndarray, clock: Clock | None = None, capture: Capture | None = None
    ) -> Decoded:
        """Nx1x2 float32 points in the model frame -> logits and scores, in chunks of `decoder_batch` prompts.

        One chunk (a GPU takes all prompts at once) leaves the logits on the device; several (one prompt per
        call measured fastest on a CPU) are joined on the host, which is the CPU's memory anyway. With
        `capture`, the captured decoder takes all prompts into its buffers.
        """
        clock = clock or Clock()
        if capture is not None:
            made = clock.run(capture.decoder, *capture.decoder_run(model_points))
            # A copy: on the host, `to_host` of a buffer is a view, which the next image's turn overwrites.
            return Decoded(made[DECODER_LOGITS], np.array(capture.decoder.to_host(made[DECODER_SCORES])))
        image_side = _handed(self.encoder, self.decoder, features.decoder_feed())
        starts = range(0, len(model_points), self.decoder_batch)
        if len(starts) == 1:
            only = self._decode_chunk(image_side, model_points, clock)
            return Decoded(only[DECODER_LOGITS], self.decoder.to_host(only[DECODER_SCORES]))
        # Each chunk is copied to the host as soon as it is made: an output value onnxruntime allocated keeps
        # its run's memory alive, and 30 held chunks raised the peak (docs/performance.md, "Engine settings").
        logits, scores = [], []
        for start in starts:
            output = self._decode_chunk(image_side, model_points[start : start + self.decoder_batch], clock)
            logits.append(self.decoder.to_host(output[DECODER_LOGITS]))
            scores.append(self.decoder.to_host(output[DECODER_SCORES]))
        return Decoded(np.concatenate(logits), np.concatenate(scores))

    def _decode_chunk(self, image_side: dict[str, Value], points: np.ndarray, clock: Clock) -> dict[str, Value]:
        labels = np.ones((len(points), 1), dtype=np.int32)
        return clock.run(self.decoder, {**image_side, DECODER_POINTS: points, DECODER_LABELS: labels})

    def finish(
        self,
        prepared: PreparedImage,
        decoded: Decoded,
        threshold: float,
        maps: tuple[MapName, ...],
        clock: Clock | None = None,
    ) -> dict[str, np.ndarray]:
        """The procedure graph: the asked-for maps and `area_px`, at the input size, on the host."""
        clock = clock or Clock()
        feeds = {
            **_handed(self.decoder, self.procedure, {DECODER_LOGITS: decoded.logits}),
            DECODER_SCORES: decoded.scores,
            "threshold": np.asarray(threshold, dtype=np.float32),
            "fitted_hw": np.asarray(prepared.fitted_hw, dtype=np.int64),
            "input_hw": np.asarray(prepared.input_hw, dtype=np.int64),
        }
        outputs = clock.run(self.procedure, feeds, (*maps, "area_px"))
        return {name: self.procedure.to_host(value) for name, value in outputs.items()}

    def parameters(self, options: PredictOptions | None = None) -> Parameters:
        """`options` (default: none set) over this model's procedure defaults."""
        return (options or PredictOptions()).resolve(self.manifest.procedure)

    def prompt_points(
        self, prepared: PreparedImage, parameters: Parameters, explicit: np.ndarray | None = None
    ) -> np.ndarray:
        """Nx1x2 points (x, y) in the fitted frame: the caller's `explicit` Nx2 ones, or the seeded sample."""
        if explicit is not None:
            return procedure.explicit_points(explicit, prepared.input_hw, prepared.fitted_hw)
        return procedure.sample_points(prepared.fitted_hw, parameters.points, parameters.seed)

    def predict(self, image_rgb: np.ndarray, options: PredictOptions | None = None) -> Prediction:
        """HxWx3 uint8 RGB -> Prediction at HxW. Raises PromptOutsideImage for a bad explicit prompt."""
        options = options or PredictOptions()
        parameters = self.parameters(options)
        capture = self.capture if self.capture is not None and self.capture.takes(parameters.points) else None
        clock = Clock()
        with capture.turn() if capture is not None else nullcontext():
            with clock.stage("preprocess"):
                prepared = self.prepare(image_rgb, clock, capture)
                points = self.prompt_points(prepared, parameters, options.explicit_points)
            with clock.stage("encoder"):
                features = self.encode(prepared, clock, capture)
            with clock.stage("decoder"):
                size = self.manifest.preprocessing.image_size
                decoded = self.decode(
                    features, procedure.to_model_frame(points, prepared.fitted_hw, size), clock, capture
                )
            with clock.stage("procedure"):
                maps = self.finish(prepared, decoded, parameters.threshold, options.maps, clock)
                logits = np.array(self.decoder.to_host(decoded.logits)) if options.keep_logits else None
        return Prediction(
            input_hw=prepared.input_hw,
            binary=maps.get("binary"),
            probability=maps.get("probability"),
            uncertainty=maps.get("uncertainty"),
            parameters=parameters,
            points=points,
            scores=decoded.scores,
            low_res_logits=logits,
            statistics=procedure.mask_statistics(int(maps["area_px"]), prepared.input_hw, decoded.scores),
            timings=clock.timings(),
            encoder_batch_images=prepared.seat.images if prepared.seat is not None else 1,
        )


def rebuilt(segmenter: Segmenter, **changes: Any) -> Segmenter:
    """The same segmenter (its graphs shared) with some of its constructor's arguments changed."""
    arguments: dict[str, Any] = {
        "manifest": segmenter.manifest,
        "preprocess": segmenter.preprocess,
        "encoder": segmenter.encoder,
        "decoder": segmenter.decoder,
        "procedure": segmenter.procedure,
        "decoder_batch": segmenter.decoder_batch,
        "encoder_batch": segmenter.encoder_batch,
        "precision": segmenter.precision,
        "refused": segmenter.refused,
        "capture": segmenter.capture,
        "capture_refused": segmenter.capture_refused,
    }
    return Segmenter(**{**arguments, **changes})


def replace_encoder(segmenter: Segmenter, fp32_encoder: Graph, refused: Mapping[str, str] | None = None) -> Segmenter:
    """The same segmenter with the fp32 encoder: the device gate's reference, and what serves when a variant's
    encoder failed there (`refused` says which and why). Without captured networks: they hold the variant's."""
    return rebuilt(segmenter, encoder=fp32_encoder, precision="fp32", refused=refused, capture=None)


def with_capture(segmenter: Segmenter, capture: Capture | None, refused: str | None = None) -> Segmenter:
    """The same segmenter with (or, for None, without, and why) captured networks for lone images."""
    return rebuilt(segmenter, capture=capture, capture_refused=refused)
