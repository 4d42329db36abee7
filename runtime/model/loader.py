"""Verified model files -> ready Segmenter: choose device and variant, build the graphs, self-test.

Any failure is a ModelLoadError with a message safe to print.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from vreyesam.runtime.engines.devices import CPU_PROVIDER, resolve_providers
from vreyesam.runtime.engines.graph import DeviceUnavailable, EngineUnavailable, Graph
from vreyesam.runtime.engines.onnxruntime_graph import OnnxRuntimeGraph, SessionConfig
from vreyesam.runtime.engines.openvino_graph import OpenVinoGraph, bf16_supported
from vreyesam.runtime.engines.shaped import ShapedGraph
from vreyesam.runtime.gate_report import misses
from vreyesam.runtime.manifest import (
    CALIBRATION,
    DECODER,
    DECODER_POINTS,
    DECODER_PROMPT_AXIS,
    DECODER_SCORES,
    ENCODER,
    ENCODER_BATCH_AXIS,
    ENCODER_INPUT,
    ENCODER_OUTPUTS,
    GOLDEN,
    PREPROCESS,
    PROCEDURE,
    PROCEDURE_PARALLEL,
    PROCEDURE_PROMPT_AXIS,
    Manifest,
)
from vreyesam.runtime.model import crypto, device_gate, golden, variants
from vreyesam.runtime.model.agreement import iou, relative_error
from vreyesam.runtime.model.artifacts import (
    ModelFiles,
    ModelLoadError,
    read_model_files,
    require_key,
    servable_manifest,
)
from vreyesam.runtime.model.batching import UNBATCHED, BatchPolicy
from vreyesam.runtime.model.capture import CUDA_WARM_UP_RUNS, Capture
from vreyesam.runtime.model.procedure import MAX_POINTS
from vreyesam.runtime.model.segmenter import PredictOptions, Segmenter, replace_encoder, with_capture
from vreyesam.runtime.model.signature import Trust
from vreyesam.runtime.settings import Settings
from vreyesam.runtime.vocabulary import Device, GraphPrecision, PrecisionRequest

log = logging.getLogger("vreyesam.runtime")


@dataclass(frozen=True)
class LoadOptions:
    device: Device = "auto"
    precision: PrecisionRequest = "auto"
    intra_op_threads: int = 0
    # Prompts per decoder call; 0 = by provider: 1 on CPU (faster there: docs/performance.md), all on a GPU.
    decoder_batch: int = 0
    encoder_batch: BatchPolicy = UNBATCHED  # images per encoder run (default: one at a time)
    cuda_graphs: bool = False  # replay a lone image's networks from CUDA graphs (CUDA provider, unbatched)
    allow_random_weights: bool = False
    self_test: bool = True
    model_key: bytes | None = field(default=None, repr=False)  # for encrypted model directories
    trust: Trust | None = None  # the key the directory must be signed with (None: not checked)


def _trust(settings: Settings) -> Trust | None:
    if settings.model_public_key_file is None:
        return None
    try:
        pem = settings.model_public_key_file.read_bytes()
    except OSError:
        raise ModelLoadError("VREYESAM_MODEL_PUBLIC_KEY_FILE cannot be read") from None
    return Trust(pem, settings.model_signature_file)


def load_options(settings: Settings) -> LoadOptions:
    """The settings' load options; ModelLoadError for a model key that is not a key, or a public key file
    that cannot be read."""
    key_text = settings.model_key_text()
    try:
        key = crypto.parse_key(key_text) if key_text else None
    except crypto.ModelKeyError as exc:
        raise ModelLoadError(str(exc)) from None
    return LoadOptions(
        device=settings.device,
        precision=settings.precision,
        intra_op_threads=settings.threads,
        decoder_batch=settings.decoder_batch,
        encoder_batch=BatchPolicy(settings.encoder_batch, settings.encoder_batch_window_ms),
        cuda_graphs=settings.cuda_graphs,
        allow_random_weights=settings.allow_random_weights,
        model_key=key,
        trust=_trust(settings),
    )


def plan(manifest: Manifest, options: LoadOptions) -> tuple[list[str], variants.Choice]:
    """Execution providers and precision variant for these options; ModelLoadError when they cannot be met."""
    try:
        providers = resolve_providers(options.device)
        choice = variants.choose_variant(manifest, options.precision, providers[0] == CPU_PROVIDER, bf16_supported)
    except (DeviceUnavailable, variants.VariantUnavailable) as exc:
        raise ModelLoadError(str(exc)) from None
    return providers, choice


def procedure_artifact(manifest: Manifest, on_cpu: bool) -> str:
    """The procedure graph's form for this device: all prompts at once on a GPU (where the model has it),
    one at a time on the CPU (export/procedure_graph.py)."""
    return PROCEDURE_PARALLEL if not on_cpu and PROCEDURE_PARALLEL in manifest.artifacts else PROCEDURE


def artifacts_for(choice: variants.Choice, procedure: str = PROCEDURE) -> tuple[str, ...]:
    """The artifacts a choice is built and checked from (an fp16 variant also needs fp32 and calibration)."""
    roles = (PREPROCESS, choice.encoder_artifact, DECODER, procedure, GOLDEN)
    return (*roles, ENCODER, CALIBRATION) if choice.gated_on_device else roles


@dataclass(frozen=True)
class Shapes:
    """The sizes of the networks' free axes their sessions are specialised to (`engines.shaped`)."""

    encoder: tuple[int, ...]  # images per encoder run
    encoder_general: bool  # a session for any other batch size too
    encoder_padded: bool  # a batch between two sizes runs at the larger
    decoder: tuple[int, ...]  # prompts per decoder call (any other count has a general session)
    procedure: tuple[int, ...] = ()  # prompts of the procedure graph (a GPU's; the CPU's streams them)


def decoder_chunk(options: LoadOptions, on_cpu: bool) -> int:
    """Prompts per decoder call: one at a time on the CPU (measured fastest), all at once on a GPU."""
    return options.decoder_batch or (1 if on_cpu else MAX_POINTS)


def shapes_for(options: LoadOptions, on_cpu: bool, default_points: int) -> Shapes:
    """Fixed sizes for what is served: lone images (and on a GPU every batch size up to the most, doubling),
    and the decoder's chunk of the model's default prompt count."""
    decoder = (min(decoder_chunk(options, on_cpu), default_points),)
    batch = options.encoder_batch
    if on_cpu:
        if not batch.enabled:
            return Shapes(encoder=(1,), encoder_general=False, encoder_padded=False, decoder=decoder)
        # Each session holds its own copy of the weights: the CPU keeps one, for every batch size.
        return Shapes(encoder=(), encoder_general=True, encoder_padded=False, decoder=decoder)
    sizes = {1, batch.max_images, *(2**power for power in range(7) if 2**power < batch.max_images)}
    encoder = tuple(sorted(sizes)) if batch.enabled else (1,)
    return Shapes(encoder, False, batch.enabled, decoder, procedure=(default_points,))


def _shaped(
    model: bytes,
    providers: list[str],
    config: SessionConfig,
    *,
    axis: tuple[str, str],
    sizes: tuple[int, ...],
    general: bool,
    pad: bool = False,
) -> ShapedGraph:
    """Sessions of one graph fixed to each size of its free axis (`axis`: the input it is read from, and the
    dimension's name in the graph), plus a general session when asked."""
    feed, dimension = axis
    fixed = {
        size: OnnxRuntimeGraph(model, providers, replace(config, fixed_dims=((dimension, size),))) for size in sizes
    }
    general_session = OnnxRuntimeGraph(model, providers, config) if general else None
    return ShapedGraph(axis_input=feed, fixed=fixed, general=general_session, pad=pad)


def _graph(
    model: bytes, role: str, precision: GraphPrecision, providers: list[str], options: LoadOptions, shapes: Shapes
) -> Graph:
    if precision == "bf16":
        return OpenVinoGraph(model, options.intra_op_threads)
    config = SessionConfig(intra_op_threads=options.intra_op_threads)
    if role == ENCODER:
        axis = (ENCODER_INPUT, ENCODER_BATCH_AXIS)
        return _shaped(
            model,
            providers,
            config,
            axis=axis,
            sizes=shapes.encoder,
            general=shapes.encoder_general,
            pad=shapes.encoder_padded,
        )
    if role == DECODER:
        return _shaped(
            model, providers, config, axis=(DECODER_POINTS, DECODER_PROMPT_AXIS), sizes=shapes.decoder, general=True
        )
    if role == PROCEDURE and shapes.procedure:
        axis = (DECODER_SCORES, PROCEDURE_PROMPT_AXIS)
        return _shaped(model, providers, config, axis=axis, sizes=shapes.procedure, general=True)
    return OnnxRuntimeGraph(model, providers, config)


def build_segmenter(
    files: ModelFiles, providers: list[str], choice: variants.Choice, options: LoadOptions
) -> Segmenter:
    """Graphs for the chosen variant (they take the files' graph bytes), without the self-test."""
    manifest = files.manifest
    if [spec.name for spec in manifest.artifacts[ENCODER].outputs] != list(ENCODER_OUTPUTS):
        raise ModelLoadError("the encoder's outputs do not match what this runtime reads")
    on_cpu = providers[0] == CPU_PROVIDER
    shapes = shapes_for(options, on_cpu, manifest.procedure.points)
    # Only the networks have reduced-precision variants; the preprocessing and procedure graphs run in fp32.
    built: dict[str, tuple[str, GraphPrecision]] = {
        PREPROCESS: (PREPROCESS, "fp32"),
        ENCODER: (choice.encoder_artifact, choice.encoder),
        DECODER: (DECODER, choice.decoder),
        PROCEDURE: (procedure_artifact(manifest, on_cpu), "fp32"),
    }
    sources = {role: files.take_graph(source) for role, (source, _) in built.items()}
    try:
        graphs = {
            role: _graph(sources[role], role, kind, providers, options, shapes) for role, (_, kind) in built.items()
        }
    except (DeviceUnavailable, EngineUnavailable) as exc:
        raise ModelLoadError(str(exc)) from None
    wanted = options.cuda_graphs and not on_cpu and not options.encoder_batch.enabled
    capture, refused = (
        _capture(sources[ENCODER], sources[DECODER], providers, options, manifest) if wanted else (None, None)
    )
    return Segmenter(
        manifest=manifest,
        preprocess=graphs[PREPROCESS],
        encoder=graphs[ENCODER],
        decoder=graphs[DECODER],
        procedure=graphs[PROCEDURE],
        decoder_batch=decoder_chunk(options, on_cpu),
        encoder_batch=options.encoder_batch,
        precision=choice.name,
        capture=capture,
        capture_refused=refused,
    )


def _capture(
    encoder: bytes, decoder: bytes, providers: list[str], options: LoadOptions, manifest: Manifest
) -> tuple[Capture | None, str | None]:
    """The captured networks for lone images with the default prompt count, or why there are none."""
    config = SessionConfig(intra_op_threads=options.intra_op_threads, cuda_graph=True)
    points = manifest.procedure.points
    try:
        return Capture(
            encoder=OnnxRuntimeGraph(encoder, providers, replace(config, fixed_dims=((ENCODER_BATCH_AXIS, 1),))),
            decoder=OnnxRuntimeGraph(decoder, providers, replace(config, fixed_dims=((DECODER_PROMPT_AXIS, points),))),
            prompts=points,
            image_size=manifest.preprocessing.image_size,
            warm_up_runs=CUDA_WARM_UP_RUNS,
        ), None
    except Exception as exc:  # onnxruntime refuses a graph it cannot capture whole: served without, and said
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        log.warning("CUDA graphs refused, serving without them (%s)", reason)
        return None, reason


def _capture_agrees(segmenter: Segmenter, image: np.ndarray, tolerance: dict[str, float]) -> str | None:
    """The captured path against the ordinary sessions on one image with the captured prompt count: None when
    they agree within the golden tolerance, else what differs (a replay on stale addresses gives noise)."""
    if segmenter.capture is None:
        raise ValueError("the agreement check needs captured networks")
    options = PredictOptions(points=segmenter.capture.prompts, maps=("binary",))
    ours, expected = segmenter.predict(image, options), with_capture(segmenter, None).predict(image, options)
    if ours.low_res_logits is None or expected.low_res_logits is None:
        raise ValueError("the agreement check needs the logits")
    measured = {
        "logits_relative_error": relative_error(ours.low_res_logits, expected.low_res_logits),
        "final_mask_iou": iou(ours.binary, expected.binary),
    }
    problems = misses(measured, {name: tolerance[name] for name in measured})
    return f"the captured networks disagree with the ordinary sessions ({'; '.join(problems)})" if problems else None


def _gate_on_device(
    segmenter: Segmenter, files: ModelFiles, providers: list[str], options: LoadOptions
) -> tuple[Segmenter, variants.Choice]:
    """An fp16 variant against fp32 on this device: the variant if it passes, else fp32 (for `auto`)."""
    manifest = files.manifest
    variant = manifest.variants[segmenter.precision]
    thresholds = variant.fidelity.thresholds
    calibration = files.small(CALIBRATION)
    if thresholds is None or calibration is None:
        raise ModelLoadError(f"variant {segmenter.precision} has no thresholds or calibration images to gate on")
    shapes = shapes_for(options, providers[0] == CPU_PROVIDER, manifest.procedure.points)
    fp32_encoder = _graph(files.take_graph(ENCODER), ENCODER, "fp32", providers, options, shapes)
    result = device_gate.gate(segmenter, fp32_encoder, device_gate.calibration_images(calibration), thresholds)
    if result.passed:
        log.info("variant %s passed its gate on %s: %s", segmenter.precision, segmenter.engines, result)
        return segmenter, variants.Choice(
            segmenter.precision, variant.encoder, variant.decoder, variant.golden_tolerance
        )
    why = "; ".join(result.problems)
    if options.precision != "auto":
        raise ModelLoadError(f"precision {segmenter.precision!r} failed its gate on this device: {why}")
    log.warning("variant %s refused on this device (%s): serving fp32", segmenter.precision, why)
    fp32_segmenter = replace_encoder(segmenter, fp32_encoder, refused={segmenter.precision: why})
    return fp32_segmenter, variants.fp32(manifest)


def segmenter_from_files(files: ModelFiles, options: LoadOptions) -> Segmenter:
    """A ready Segmenter from verified files: planned, built, gated on the device where the variant needs
    it, and (unless disabled) self-tested."""
    providers, choice = plan(files.manifest, options)
    segmenter = build_segmenter(files, providers, choice, options)
    if choice.gated_on_device:
        segmenter, choice = _gate_on_device(segmenter, files, providers, options)
    if segmenter.capture is not None:
        problem = _capture_agrees(segmenter, golden.load_golden(files.golden).image, choice.golden_tolerance)
        if problem is not None:
            log.warning("CUDA graphs refused, serving without them (%s)", problem)
            segmenter = with_capture(segmenter, None, refused=problem)
    if options.self_test:
        started = time.perf_counter()
        try:
            errors = golden.run_golden(segmenter, golden.load_golden(files.golden), choice.golden_tolerance)
        except golden.GoldenMismatch as exc:
            raise ModelLoadError(str(exc)) from None
        segmenter.self_test_seconds = time.perf_counter() - started
        log.info("golden self-test passed on %s (%s): %s", segmenter.engines, choice.name, errors)
    return segmenter


def verified_files(model_dir: Path, options: LoadOptions) -> ModelFiles:
    """What the variant these options choose needs of the model directory, each file read once and checked;
    ModelLoadError when it cannot be served here (integrity, random-weights policy, key, device, precision)."""
    servable = servable_manifest(model_dir, allow_random_weights=options.allow_random_weights, trust=options.trust)
    manifest = servable.manifest
    require_key(manifest, options.model_key)  # before planning: the first thing to say to its operator
    providers, choice = plan(manifest, options)
    roles = artifacts_for(choice, procedure_artifact(manifest, providers[0] == CPU_PROVIDER))
    return read_model_files(model_dir, servable, key=options.model_key, roles=roles)


def load_segmenter(model_dir: Path, options: LoadOptions) -> Segmenter:
    """The model directory, verified and loaded; ModelLoadError when it cannot be served."""
    return segmenter_from_files(verified_files(model_dir, options), options)
