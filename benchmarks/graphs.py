"""Each graph alone on one execution provider, and the pipeline under concurrent callers: where GPU time goes.

    python -m benchmarks.graphs --model DIR [--device cuda|cpu] [--batches 1,2,4,8,16] [--prompts 30,120,480]
        [--runs 20] [--clients 1,2,4,8] [--precision auto] [--skip-graphs] [--json OUT]

Per graph (preprocess, encoder, fp16 encoder, decoder, procedure in both forms), milliseconds per run at each
batch size:
- `host`: the runtime's own `OnnxRuntimeGraph` fed host arrays (what a request pays);
- `device`: inputs already in the provider's memory, outputs left there (the graph alone), on a session
  with a free batch axis; `fixed`: the same on a session fixed to that size (what the runtime serves);
- `cuda_graph`: the fixed session replayed from a captured CUDA graph (CUDA only; the error when it cannot
  capture);
- `memcpy_nodes`: the copies onnxruntime inserted between the providers, general and fixed (each is a
  transfer across the bus and a synchronisation; a captured graph needs none).
Then one profiled `device` run per graph: time per (provider, operator) and the nodes onnxruntime placed on
the CPU provider. Last, the whole pipeline (`load_segmenter`, precision `auto`) in each `--layouts` entry
(`plain`; `cuda-graphs`: VREYESAM_CUDA_GRAPHS; `batch-B`: encoder batching of B images, with B callers at
least): the stage medians of a lone caller with each network's GFLOP/s (from `benchmarks.flops`, which
needs the `onnx` package), then images/s from 1..N threads at once.
Every measurement is taken on its own: one that fails is recorded with its error and the rest still run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from vreyesam.runtime.engines.devices import CPU_PROVIDER, resolve_providers
from vreyesam.runtime.engines.onnxruntime_graph import (
    OnnxRuntimeGraph,
    SessionConfig,
    disabled_optimizers,
    provider_entries,
    session_options,
)
from vreyesam.runtime.manifest import (
    DECODER,
    DECODER_IMAGE_INPUTS,
    DECODER_LABELS,
    DECODER_LOGITS,
    DECODER_POINTS,
    DECODER_PROMPT_AXIS,
    DECODER_SCORES,
    ENCODER,
    ENCODER_BATCH_AXIS,
    ENCODER_FP16,
    PREPROCESS,
    PREPROCESS_INPUT,
    PROCEDURE,
    PROCEDURE_PARALLEL,
    PROCEDURE_PROMPT_AXIS,
)
from vreyesam.runtime.model.artifacts import read_model_files, servable_manifest
from vreyesam.runtime.model.batching import BatchPolicy
from vreyesam.runtime.model.loader import LoadOptions, load_segmenter
from vreyesam.runtime.model.preprocess import fit_image
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.tools import synth

Feeds = dict[str, np.ndarray]
POINTS = 30  # the procedure's default prompt count, which the pipeline figures use


def timed(run: Callable[[], object], runs: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000.0)
    return {"p50_ms": round(float(np.median(samples)), 3), "p90_ms": round(float(np.percentile(samples, 90)), 3)}


def attempt(record: dict[str, Any], key: str, measure: Callable[[], Any]) -> None:
    """record[key] = measure(), or the error it raised (the probe goes on)."""
    try:
        record[key] = measure()
    except Exception as exc:  # a probe reports every failure and carries on
        record[key] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
        traceback.print_exc()


class Probe:
    """Sessions of one graph on one provider, built from the verified bytes of a model directory."""

    def __init__(self, model: bytes, device: str, threads: int) -> None:
        self.model = model
        self.device = device
        self.threads = threads
        self.providers = resolve_providers(device)
        self.ort_device = "cpu" if self.providers[0] == CPU_PROVIDER else "cuda"

    def config(self, fixed: tuple[str, int] | None = None, *, cuda_graph: bool = False) -> SessionConfig:
        return SessionConfig(intra_op_threads=self.threads, fixed_dims=(fixed,) if fixed else (), cuda_graph=cuda_graph)

    def session(
        self,
        *,
        fixed: tuple[str, int] | None = None,
        cuda_graph: bool = False,
        profile_dir: Path | None = None,
        saved: Path | None = None,
    ) -> ort.InferenceSession:
        """A session as the runtime builds it (its options, providers and disabled rewrites), `fixed` to one
        size of a free axis, profiled or with its optimised graph saved when asked."""
        config = self.config(fixed, cuda_graph=cuda_graph)
        options = session_options(config)
        if profile_dir is not None:
            options.enable_profiling = True
            options.profile_file_prefix = str(profile_dir / "profile")
        if saved is not None:
            options.optimized_model_filepath = str(saved)
        return ort.InferenceSession(
            self.model,
            sess_options=options,
            providers=provider_entries(self.providers, config),
            disabled_optimizers=disabled_optimizers(self.providers),
        )

    def memcpy_nodes(self, fixed: tuple[str, int] | None = None) -> int:
        """Copies between providers onnxruntime inserted in the session's graph (none on the CPU alone)."""
        import onnx

        with tempfile.TemporaryDirectory(prefix="vreyesam-optimised-") as tmp:
            path = Path(tmp) / "optimised.onnx"
            self.session(fixed=fixed, saved=path)
            graph = onnx.load(str(path), load_external_data=False).graph
        return sum(node.op_type in ("MemcpyFromHost", "MemcpyToHost") for node in graph.node)

    def on_device(self, array: np.ndarray) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.ort_device, 0)

    def host_run(self, feeds: Feeds, fixed: tuple[str, int] | None = None) -> Callable[[], object]:
        graph = OnnxRuntimeGraph(self.model, self.providers, self.config(fixed))
        return lambda: graph.run(feeds)

    def device_run(self, session: ort.InferenceSession, feeds: Feeds) -> Callable[[], object]:
        placed = {name: self.on_device(value) for name, value in feeds.items()}
        outputs = [output.name for output in session.get_outputs()]

        def run() -> object:
            binding = session.io_binding()
            for name, value in placed.items():
                binding.bind_ortvalue_input(name, value)
            for name in outputs:
                binding.bind_output(name, self.ort_device)
            session.run_with_iobinding(binding)
            return binding

        return run

    def cuda_graph_run(
        self, plain: ort.InferenceSession, feeds: Feeds, fixed: tuple[str, int] | None = None
    ) -> Callable[[], object]:
        """Fixed input and output buffers (shaped by one run of `plain`), captured on the third run (the
        timer's warm-up) and replayed after, on a session fixed to the feeds' size."""
        session = self.session(fixed=fixed, cuda_graph=True)
        probe = self.device_run(plain, feeds)()
        shapes = {
            output.name: value.shape()
            for output, value in zip(plain.get_outputs(), probe.get_outputs(), strict=True)  # type: ignore[attr-defined]
        }
        types = {output.name: _numpy_type(output.type) for output in session.get_outputs()}
        binding = session.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, self.on_device(value))
        for name, shape in shapes.items():
            buffer = ort.OrtValue.ortvalue_from_shape_and_type(shape, types[name], "cuda", 0)
            binding.bind_ortvalue_output(name, buffer)
        return lambda: session.run_with_iobinding(binding)

    def profile(self, feeds: Feeds, runs: int = 5) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="vreyesam-profile-") as tmp:
            session = self.session(profile_dir=Path(tmp))
            run = self.device_run(session, feeds)
            for _ in range(runs + 2):
                run()
            events = json.loads(Path(session.end_profiling()).read_text())
        nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
        by_op: Counter[str] = Counter()
        on_cpu: Counter[str] = Counter()
        per_run = len(nodes) // (runs + 2)
        for event in nodes[len(nodes) - per_run * runs :]:  # the last `runs` runs
            args = event.get("args", {})
            provider = str(args.get("provider", "?")).removesuffix("ExecutionProvider")
            by_op[f"{provider}:{args.get('op_name', '?')}"] += event.get("dur", 0) / runs / 1000.0
            if provider == "CPU":
                on_cpu[str(args.get("op_name", "?"))] += 1
        return {
            "ms_by_operator": {op: round(ms, 3) for op, ms in by_op.most_common(14)},
            "kernel_ms_total": round(sum(by_op.values()), 3),
            "cpu_nodes_per_run": {op: count // runs for op, count in on_cpu.items()},
        }


def memcpy_counts(probe: Probe, fixed: tuple[str, int]) -> dict[str, int]:
    return {"general": probe.memcpy_nodes(), f"fixed_{fixed[1]}": probe.memcpy_nodes(fixed)}


def _numpy_type(onnx_type: str) -> type:
    return {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}.get(
        onnx_type, np.float32
    )


def _image() -> np.ndarray:
    _, image, _ = synth.generate(seed=5, n=1, width=400, height=300)[0]
    return image


def measure_encoder(probe: Probe, image: np.ndarray, args: argparse.Namespace) -> tuple[dict[str, Any], Feeds]:
    """The encoder at each batch size (host feed at batch 1, device-resident, CUDA graph), its profile at
    batch 1, and its outputs for the image."""
    record: dict[str, Any] = {}
    plain = probe.session()
    names = [output.name for output in plain.get_outputs()]
    outputs = dict(zip(names, plain.run(None, {"image": image}), strict=True))
    for batch in args.batches:
        feeds = {"image": np.repeat(image, batch, axis=0)}
        fixed = (ENCODER_BATCH_AXIS, batch)
        entry: dict[str, Any] = record.setdefault(f"batch_{batch}", {})
        if batch == 1:
            attempt(entry, "host", lambda: timed(probe.host_run(feeds, fixed), args.runs))  # noqa: B023 - at once
        attempt(entry, "device", lambda: timed(probe.device_run(plain, feeds), args.runs))  # noqa: B023
        attempt(entry, "fixed", lambda: timed(probe.device_run(probe.session(fixed=fixed), feeds), args.runs))  # noqa: B023
        if probe.ort_device == "cuda":
            attempt(entry, "cuda_graph", lambda: timed(probe.cuda_graph_run(plain, feeds, fixed), args.runs))  # noqa: B023
        for mode in ("device", "fixed", "cuda_graph"):
            if "p50_ms" in entry.get(mode, {}):
                entry[mode]["ms_per_image"] = round(entry[mode]["p50_ms"] / batch, 3)
    attempt(record, "memcpy_nodes", lambda: memcpy_counts(probe, (ENCODER_BATCH_AXIS, 1)))
    attempt(record, "profile_batch_1", lambda: probe.profile({"image": image}))
    return record, outputs


def fp16_decoder(decoder: Probe, feeds: Feeds, logits: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """The decoder converted to fp16 as it stands (no fusion; inputs and outputs kept fp32): its time, and
    its logits against the fp32 graph's. A question for the GPU, not a variant: nothing serves it."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from vreyesam.runtime.model.agreement import relative_error

    converted = convert_float_to_float16(onnx.load_from_string(decoder.model), keep_io_types=True)
    probe = Probe(converted.SerializeToString(), decoder.device, decoder.threads)
    plain = probe.session()
    record: dict[str, Any] = {"logits_relative_error": relative_error(plain.run(None, feeds)[0], logits)}
    attempt(record, "device", lambda: timed(probe.device_run(plain, feeds), args.runs))
    attempt(record, "cuda_graph", lambda: timed(probe.cuda_graph_run(plain, feeds), args.runs))
    return record


def measure_graphs(args: argparse.Namespace, model: Path) -> dict[str, Any]:
    roles = [PREPROCESS, ENCODER, ENCODER_FP16, DECODER, PROCEDURE, PROCEDURE_PARALLEL]
    files = read_model_files(model, servable_manifest(model, allow_random_weights=True, trust=None))
    present = [role for role in roles if role in files.manifest.artifacts]
    graphs = {role: files.take_graph(role) for role in present}
    report: dict[str, Any] = {}
    rng = np.random.default_rng(0)

    fitted = fit_image(_image(), files.manifest.preprocessing.fit_size)
    pre = Probe(graphs[PREPROCESS], args.device, args.threads)
    image = pre.session().run(None, {PREPROCESS_INPUT: fitted})[0]
    report[PREPROCESS] = {}
    attempt(report[PREPROCESS], "host", lambda: timed(pre.host_run({PREPROCESS_INPUT: fitted}), args.runs))
    pre_feeds = {PREPROCESS_INPUT: fitted}
    attempt(report[PREPROCESS], "device", lambda: timed(pre.device_run(pre.session(), pre_feeds), args.runs))

    features: dict[str, np.ndarray] = {}
    for role in (ENCODER, ENCODER_FP16):
        if role in graphs:
            probe = Probe(graphs[role], args.device, args.threads)
            report[role], outputs = measure_encoder(probe, image, args)
            features = features or outputs

    decoder = Probe(graphs[DECODER], args.device, args.threads)
    plain = decoder.session()
    image_side = {name: features[name] for name in DECODER_IMAGE_INPUTS}
    record = report.setdefault(DECODER, {})
    logits = scores = None
    for prompts in sorted(args.prompts, key=lambda count: count != POINTS):  # the procedure's count first
        points = rng.integers(0, 1024, size=(prompts, 1, 2)).astype(np.float32)
        feeds = {**image_side, DECODER_POINTS: points, DECODER_LABELS: np.ones((prompts, 1), np.int32)}
        entry = record.setdefault(f"prompts_{prompts}", {})
        fixed = (DECODER_PROMPT_AXIS, prompts)
        attempt(entry, "host", lambda: timed(decoder.host_run(feeds, fixed), args.runs))  # noqa: B023 - at once
        attempt(entry, "device", lambda: timed(decoder.device_run(plain, feeds), args.runs))  # noqa: B023
        attempt(entry, "fixed", lambda: timed(decoder.device_run(decoder.session(fixed=fixed), feeds), args.runs))  # noqa: B023
        if decoder.ort_device == "cuda":
            attempt(entry, "cuda_graph", lambda: timed(decoder.cuda_graph_run(plain, feeds, fixed), args.runs))  # noqa: B023
        if logits is None:
            logits, scores = plain.run(None, feeds)
            attempt(record, f"profile_prompts_{prompts}", lambda: decoder.profile(feeds))  # noqa: B023
            if decoder.ort_device == "cuda":
                attempt(record, f"fp16_prompts_{prompts}", lambda: fp16_decoder(decoder, feeds, logits, args))  # noqa: B023

    attempt(record, "memcpy_nodes", lambda: memcpy_counts(decoder, (DECODER_PROMPT_AXIS, POINTS)))
    feeds = {
        DECODER_LOGITS: logits,
        DECODER_SCORES: scores,
        "threshold": np.asarray(0.2, np.float32),
        "fitted_hw": np.asarray(fitted.shape[:2], np.int64),
        "input_hw": np.asarray((300, 400), np.int64),
    }
    for role in (PROCEDURE, PROCEDURE_PARALLEL):
        if role not in graphs:
            continue
        procedure = Probe(graphs[role], args.device, args.threads)
        fixed = (PROCEDURE_PROMPT_AXIS, len(scores))
        entry = report[role] = {}
        attempt(entry, "host", lambda: timed(procedure.host_run(feeds), args.runs))  # noqa: B023 - run at once
        attempt(entry, "device", lambda: timed(procedure.device_run(procedure.session(), feeds), args.runs))  # noqa: B023
        attempt(entry, "fixed", lambda: timed(procedure.device_run(procedure.session(fixed=fixed), feeds), args.runs))  # noqa: B023
        attempt(entry, "memcpy_nodes", lambda: memcpy_counts(procedure, fixed))  # noqa: B023
        attempt(entry, "profile", lambda: procedure.profile(feeds))  # noqa: B023
    return report


def images_per_s(segmenter: Segmenter, image: np.ndarray, clients: int, per_client: int) -> float:
    """`clients` threads, released together, each predicting `per_client` times."""
    barrier = threading.Barrier(clients + 1)

    def client() -> None:
        barrier.wait()
        for _ in range(per_client):
            segmenter.predict(image)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return clients * per_client / (time.perf_counter() - started)


def work_rates(model: Path, medians: dict[str, float]) -> dict[str, float]:
    """GFLOP per network and GFLOP/s at the stage medians (empty without the `onnx` package)."""
    try:
        from benchmarks.flops import network_gflop
    except ImportError:
        return {}
    work = network_gflop(model, POINTS)
    rates = {f"{name}_gflop": round(gflop, 1) for name, gflop in work.items()}
    rates.update({f"{name}_gflop_per_s": round(gflop / medians[name] * 1000.0, 1) for name, gflop in work.items()})
    return rates


def layout_options(args: argparse.Namespace, layout: str) -> LoadOptions:
    """`plain`, `cuda-graphs` or `batch-B` as the loader's options."""
    options = LoadOptions(
        device=args.device, precision=args.precision, intra_op_threads=args.threads, allow_random_weights=True
    )
    if layout == "cuda-graphs":
        return replace(options, cuda_graphs=True)
    if layout.startswith("batch-"):
        return replace(options, encoder_batch=BatchPolicy(max_images=int(layout.removeprefix("batch-"))))
    if layout != "plain":
        raise ValueError(f"unknown layout {layout!r} (plain, cuda-graphs, batch-B)")
    return options


def measure_pipeline(args: argparse.Namespace, model: Path, layout: str) -> dict[str, Any]:
    """The pipeline as served (`--precision`, default `auto`) in one layout: stage medians of a lone caller,
    the networks' work rates, then images/s from N threads at once (at least B for a batch of B)."""
    options = layout_options(args, layout)
    segmenter = load_segmenter(model, options)
    image = _image()
    for _ in range(3):
        segmenter.predict(image)
    stages: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for name, value in segmenter.predict(image).timings.as_dict().items():
            stages.setdefault(name, []).append(value)
    medians = {name: round(float(np.median(values)), 3) for name, values in stages.items()}
    report: dict[str, Any] = {
        "engines": segmenter.engines,
        "precision": segmenter.precision,
        "refused": segmenter.refused,
        "cuda_graphs": segmenter.cuda_graphs,
        "stage_p50_ms": medians,
        **work_rates(model, medians),
    }
    batch = options.encoder_batch.max_images
    for clients in sorted({*args.clients, *([batch] if batch > 1 else [])}):
        per_client = max(2, args.runs * 2 // clients)
        report[f"clients_{clients}_images_per_s"] = round(images_per_s(segmenter, image, clients, per_client), 2)
    return report


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--batches", type=_ints, default=[1, 2, 4, 8, 16], help="encoder batch sizes")
    parser.add_argument("--prompts", type=_ints, default=[30, 120, 480], help="decoder prompt counts")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--clients", type=_ints, default=[1, 2, 4, 8], help="concurrent callers")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = library default)")
    parser.add_argument("--precision", default="auto", help="the pipeline's variant (default: auto)")
    parser.add_argument("--skip-graphs", action="store_true", help="the pipeline figures only")
    parser.add_argument(
        "--layouts", default="plain", help="pipeline layouts, comma-separated: plain, cuda-graphs, batch-B"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"device": args.device, "onnxruntime": ort.__version__, "cpus": os.cpu_count()}
    if not args.skip_graphs:
        attempt(report, "graphs", lambda: measure_graphs(args, args.model))
    for layout in args.layouts.split(","):
        attempt(report, f"pipeline_{layout}", lambda: measure_pipeline(args, args.model, layout))  # noqa: B023
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
