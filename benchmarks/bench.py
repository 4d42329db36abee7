"""Benchmark: this runtime against the PyTorch reference, side by side, in one run.

    python -m benchmarks.bench --model DIR [--device cpu|cuda] [--images 5] [--repeats 3] [--json OUT]

Workload: synthetic 400x300 eye images (VRBiom size) plus one 1920x1080 image, the full VREyeSAM procedure
(30 prompts). Contestants, each in its own process so peak RSS and cold start are its own:
- torch-fp32 / torch-bf16: Meta's SAM2ImagePredictor + the procedure (the reference), bf16 by autocast,
  on the builder's torch; torch-cpu-fp32 / torch-cpu-bf16: the same on the CPU build of torch, what a user
  serving on a CPU installs (`--torch-cpu-python`, its own environment: `make torch-cpu-env`), the fair
  reference for the CPU figures;
- ort-<provider>[-<variant>]: this runtime on every execution provider available here, fp32 and each
  reduced-precision variant the export passed that this machine can run (bf16 on a CPU with native bf16);
  on a GPU each also as `...+graphs`, its lone images replayed from CUDA graphs (VREYESAM_CUDA_GRAPHS);
- http-<device>[+graphs]: the same runtime behind `vreyesam serve` (default precision), called over HTTP on
  loopback with the default JSON answer; its overhead is reported against the in-process run of the same
  variant.
Figures: end-to-end p50/p90 per image, images/s, encoder and decoder time, cold start, peak RSS, and
fidelity against torch-fp32 (final-mask IoU, logits relative error, per-prompt mask IoU on the pixels where
the reference logit is confident). Ratios are computed pair by pair against every torch contestant. On the
CPU the run ends with the machine's matrix-product rate (fp32, bf16) and each network's GFLOP/s as a share
of it (`benchmarks.matrix_peak`), and the model's variant verdicts and what `auto` serves with it.
Needs the builder environment (torch, sam2, torchvision) for the reference contestants.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LAUNCHED_AT_ENV = "VREYESAM_BENCH_LAUNCHED_AT"
REPOSITORY = Path(__file__).resolve().parents[1]  # workers run as `python -m benchmarks.bench` from here


# ----------------------------------------------------------------------------------------- workers


def _images(workdir: Path) -> list[Path]:
    return sorted((workdir / "images").glob("*.png"))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _worker_torch(args: argparse.Namespace) -> dict[str, object]:
    import torch

    from tests.torchvision_import import import_torchvision

    import_torchvision()
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from vreyesam.export.meta_reference import run_reference
    from vreyesam.export.model import build_random, build_sam2_hiera_s, load_state_dict_strict
    from vreyesam.export.weights import load_state
    from vreyesam.runtime.manifest import read_manifest

    torch.set_num_threads(args.threads or torch.get_num_threads())
    bf16 = args.contestant.endswith("-bf16")
    manifest = read_manifest(args.model)
    if manifest.source.random_weights:
        model = build_random(int(manifest.source.seed or 0))
    else:
        if args.weights is None:
            raise SystemExit("the model was exported from real weights: pass --weights FILE for the torch reference")
        model = build_sam2_hiera_s()
        load_state_dict_strict(model, load_state(args.weights))
    predictor = SAM2ImagePredictor(model.to(args.device))
    cold_start = time.time() - float(os.environ[LAUNCHED_AT_ENV])
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=bf16)
    runs: list[dict[str, float]] = []
    outputs: dict[str, np.ndarray] = {}
    for path in _images(args.workdir):
        for repeat in range(args.repeats + 1):  # the first run of each image warms up and is not counted
            timings: dict[str, float] = {}
            with autocast:
                result = run_reference(predictor, path, timings_ms=timings)
            if repeat:
                runs.append(
                    {
                        "image": path.stem,
                        "e2e": timings["total"],
                        "encoder": timings["set_image"],
                        "decoder": timings["predict"],
                        # Outside the two torch calls: reading, fitting, the numpy ensemble and resizes.
                        "host": timings["total"] - timings["set_image"] - timings["predict"],
                    }
                )
        outputs[f"{path.stem}/binary"] = result.binary
        outputs[f"{path.stem}/logits"] = result.low_res_logits.astype(np.float32)
    np.savez_compressed(args.workdir / f"{args.contestant}.npz", **outputs)
    return {
        "cold_start_s": cold_start,
        "runs": runs,
        "peak_rss_mb": _peak_rss_mb(),
        "provider": f"torch {torch.__version__}",
        "precision": "bf16 autocast" if bf16 else "fp32",
    }


def _worker_ort(args: argparse.Namespace) -> dict[str, object]:
    from vreyesam.runtime.media.decode import read_image_file
    from vreyesam.runtime.model.loader import LoadOptions, load_segmenter

    device, precision, graphs = _ort_contestant(args.contestant)
    options = LoadOptions(
        device=device, precision=precision, intra_op_threads=args.threads, allow_random_weights=True, cuda_graphs=graphs
    )
    segmenter = load_segmenter(args.model, options)
    cold_start = time.time() - float(os.environ[LAUNCHED_AT_ENV])
    runs: list[dict[str, float]] = []
    outputs: dict[str, np.ndarray] = {}
    for path in _images(args.workdir):
        for repeat in range(args.repeats + 1):
            started = time.perf_counter()
            prediction = segmenter.predict(read_image_file(path))
            e2e = (time.perf_counter() - started) * 1000.0
            if repeat:
                timings = prediction.timings.as_dict()
                stages = {name: timings[name] for name in ("encoder", "decoder", "host")}
                runs.append({"image": path.stem, "e2e": e2e, **stages})
        outputs[f"{path.stem}/binary"] = prediction.binary
        outputs[f"{path.stem}/logits"] = prediction.low_res_logits
    np.savez_compressed(args.workdir / f"{args.contestant}.npz", **outputs)
    return {
        "cold_start_s": cold_start,
        "runs": runs,
        "peak_rss_mb": _peak_rss_mb(),
        "provider": segmenter.engines,
        "precision": segmenter.precision,
        "cuda_graphs": segmenter.cuda_graphs,
    }


def _ort_contestant(name: str) -> tuple[str, str, bool]:
    """`ort-cpu` -> (cpu, fp32, False); `ort-cpu-bf16-encoder` -> (cpu, bf16-encoder, False);
    `ort-cuda-fp16-encoder+graphs` -> (cuda, fp16-encoder, True)."""
    base, _, graphs = name.partition("+")
    _, device, *variant = base.split("-", 2)
    return device, variant[0] if variant else "fp32", graphs == "graphs"


def _worker_http(args: argparse.Namespace) -> dict[str, object]:
    """A real `vreyesam serve` process with its default precision, timed from this client."""
    import httpx

    from tests.server_harness import start_server
    from vreyesam.runtime.media import render

    device, _, graphs = args.contestant.removeprefix("http-").partition("+")
    settings = {
        "VREYESAM_DEVICE": device,
        "VREYESAM_CUDA_GRAPHS": "1" if graphs == "graphs" else "0",
        "VREYESAM_LOG_LEVEL": "warning",
        **({"VREYESAM_THREADS": str(args.threads)} if args.threads else {}),
    }
    log_path = args.workdir / f"{args.contestant}.log"
    server = start_server(args.model, log_path, "--allow-random-weights", env=settings, python=args.serve_python)
    try:
        server.wait_until("/readyz", 200, timeout_s=300.0)
        cold_start = time.time() - float(os.environ[LAUNCHED_AT_ENV])
        ready = httpx.get(server.base_url + "/readyz", timeout=5).json()
        runs: list[dict[str, float]] = []
        outputs: dict[str, np.ndarray] = {}
        with httpx.Client(base_url=server.base_url, timeout=600) as client:
            for path in _images(args.workdir):
                body = path.read_bytes()
                for repeat in range(args.repeats + 1):
                    started = time.perf_counter()
                    response = client.post("/predict", content=body, headers={"Content-Type": "image/png"})
                    e2e = (time.perf_counter() - started) * 1000.0
                    response.raise_for_status()
                    answer = response.json()
                    if repeat:
                        timings = answer["timings_ms"]
                        stages = {k: timings[k] for k in ("encoder", "decoder", "host")}
                        runs.append({"image": path.stem, "e2e": e2e, **stages})
                outputs[f"{path.stem}/binary"] = render.rle_decode(answer["outputs"]["mask"]["rle"])
        peak_rss = (server.rss_bytes("VmHWM") or float("nan")) / 2**20
    finally:
        server.stop()
    np.savez_compressed(args.workdir / f"{args.contestant}.npz", **outputs)
    return {
        "cold_start_s": cold_start,
        "runs": runs,
        "peak_rss_mb": peak_rss,
        "provider": ready["provider"],
        "precision": ready["model"]["precision"],
        "cuda_graphs": ready["cuda_graphs"],
    }


def worker_main(args: argparse.Namespace) -> int:
    if args.contestant.startswith("torch"):
        result = _worker_torch(args)
    elif args.contestant.startswith("http"):
        result = _worker_http(args)
    else:
        result = _worker_ort(args)
    (args.workdir / f"{args.contestant}.json").write_text(json.dumps(result))
    return 0


# ------------------------------------------------------------------------------------------ parent


def _write_workload(workdir: Path, count: int, large: bool) -> None:
    from vreyesam.runtime.media import render
    from vreyesam.runtime.tools import synth

    (workdir / "images").mkdir(parents=True, exist_ok=True)
    shapes = [(400, 300)] * count + ([(1920, 1080)] if large else [])
    for index, (width, height) in enumerate(shapes):
        _, image, _ = synth.generate(seed=100 + index, n=1, width=width, height=height, mode="mixed")[0]
        (workdir / "images" / f"{index:02d}-{width}x{height}.png").write_bytes(render.encode_png(image))


TORCH_REFERENCES = ("torch-cpu-fp32", "torch-cpu-bf16", "torch-fp32", "torch-bf16")


def _contestants(device: str, model: Path, torch_cpu: bool) -> list[str]:
    import onnxruntime

    from vreyesam.runtime.engines.openvino_graph import bf16_supported
    from vreyesam.runtime.manifest import read_manifest
    from vreyesam.runtime.vocabulary import CPU_VARIANTS, GPU_VARIANTS

    names = ["torch-fp32", "torch-bf16"]
    if torch_cpu and device == "cpu":
        names += ["torch-cpu-fp32", "torch-cpu-bf16"]
    passed = [name for name, variant in read_manifest(model).variants.items() if variant.passed]
    if device == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        gpu = ["ort-cuda", *(f"ort-cuda-{name}" for name in passed if name in GPU_VARIANTS)]
        names += [*gpu, *(f"{name}+graphs" for name in gpu)]
    names.append("ort-cpu")
    if bf16_supported():
        names += [f"ort-cpu-{name}" for name in passed if name in CPU_VARIANTS]
    names.append(f"http-{device}")
    if device == "cuda":
        names.append("http-cuda+graphs")
    return names


def workload_model(model: Path) -> dict[str, object]:
    """The model's weights, each variant's verdict at export (worst logits error, final-mask IoU) and the
    variant `VREYESAM_PRECISION=auto` serves with it on this machine's CPU and on a GPU."""
    from vreyesam.runtime.engines.openvino_graph import bf16_supported
    from vreyesam.runtime.manifest import read_manifest
    from vreyesam.runtime.model.variants import choose_variant

    manifest = read_manifest(model)
    verdicts: dict[str, object] = {}
    for name, variant in manifest.variants.items():
        worst = variant.fidelity.worst
        verdicts[name] = {
            "passed": variant.passed,
            "logits_relative_error": worst.logits_relative_error if worst else None,
            "final_mask_iou": worst.final_mask_iou if worst else None,
            "problems": list(variant.fidelity.problems),
        }
    return {
        "weights": manifest.model_version,
        "variants": verdicts,
        "auto_on_this_cpu": choose_variant(manifest, "auto", True, bf16_supported).name,
        "auto_on_a_gpu": choose_variant(manifest, "auto", False, bf16_supported).name,
    }


def _run_worker(args: argparse.Namespace, contestant: str) -> dict[str, object]:
    # The CPU build of torch lives in an environment of its own; every other contestant runs in this one.
    python = args.torch_cpu_python if contestant.startswith("torch-cpu-") else sys.executable
    command = [
        python,
        "-m",
        "benchmarks.bench",
        "worker",
        "--contestant",
        contestant,
        "--model",
        str(args.model),
        "--workdir",
        str(args.workdir),
        "--repeats",
        str(args.repeats),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--serve-python",
        args.serve_python,
    ]
    if args.weights:
        command += ["--weights", str(args.weights)]
    env = {**os.environ, LAUNCHED_AT_ENV: repr(time.time())}
    subprocess.run(command, check=True, env=env, cwd=REPOSITORY)  # noqa: S603 - our own interpreter and module
    return json.loads((args.workdir / f"{contestant}.json").read_text())


def fidelity(workdir: Path, contestant: str, reference: str = "torch-fp32") -> dict[str, float]:
    """Against the torch fp32 run; the HTTP contestant returns masks only, so it has no logit figures."""
    from vreyesam.runtime.model.agreement import confident_pixel_iou, iou, relative_error

    ours, ref = np.load(workdir / f"{contestant}.npz"), np.load(workdir / f"{reference}.npz")
    stems = sorted({key.split("/")[0] for key in ref.files})
    figures: dict[str, float] = {
        "final_mask_iou_min": min(iou(ours[f"{stem}/binary"], ref[f"{stem}/binary"]) for stem in stems)
    }
    if all(f"{stem}/logits" in ours.files for stem in stems):
        pairs = [(ours[f"{s}/logits"].astype(np.float64), ref[f"{s}/logits"].astype(np.float64)) for s in stems]
        figures["logits_relative_error_max"] = max(relative_error(o, r) for o, r in pairs)
        figures["confident_pixel_iou_min"] = min(confident_pixel_iou(o, r) for o, r in pairs)
    return figures


def summarize(name: str, raw: dict[str, object], workdir: Path) -> dict[str, object]:
    runs = raw["runs"]
    assert isinstance(runs, list)
    vrbiom = [r for r in runs if "400x300" in r["image"]]
    e2e = np.array([r["e2e"] for r in vrbiom])
    summary = {
        "contestant": name,
        "provider": raw.get("provider", "torch"),
        "precision": raw.get("precision", "fp32"),
        "cuda_graphs": raw.get("cuda_graphs", "off"),
        "e2e_p50_ms": float(np.percentile(e2e, 50)),
        "e2e_p90_ms": float(np.percentile(e2e, 90)),
        "images_per_s": float(1000.0 / e2e.mean()),
        "encoder_ms": float(np.median([r["encoder"] for r in vrbiom])),
        "decoder_ms": float(np.median([r["decoder"] for r in vrbiom])),
        "host_ms": float(np.median([r["host"] for r in vrbiom])),
        "large_image_e2e_ms": float(np.median([r["e2e"] for r in runs if "1920x1080" in r["image"]] or [np.nan])),
        "cold_start_s": float(raw["cold_start_s"]),  # type: ignore[arg-type]
        "peak_rss_mb": float(raw["peak_rss_mb"]),  # type: ignore[arg-type]
    }
    summary.update(fidelity(workdir, name))
    return summary


def add_ratios(rows: list[dict[str, object]]) -> None:
    by_name = {row["contestant"]: row for row in rows}
    for row in rows:
        for ref in TORCH_REFERENCES:
            if ref in by_name:
                row[f"speedup_vs_{ref}"] = float(by_name[ref]["e2e_p50_ms"]) / float(row["e2e_p50_ms"])
        if str(row["contestant"]).startswith("http-"):
            # HTTP overhead: against the in-process run of the same device and precision.
            device, plus, graphs = str(row["contestant"]).removeprefix("http-").partition("+")
            suffix = "" if row["precision"] == "fp32" else f"-{row['precision']}"
            in_process = by_name.get(f"ort-{device}{suffix}{plus}{graphs}")
            if in_process is not None:
                row["http_overhead"] = float(row["e2e_p50_ms"]) / float(in_process["e2e_p50_ms"]) - 1.0


COLUMNS = [
    ("contestant", "{}"),
    ("provider", "{}"),
    ("precision", "{}"),
    ("e2e_p50_ms", "{:.1f}"),
    ("e2e_p90_ms", "{:.1f}"),
    ("images_per_s", "{:.2f}"),
    ("encoder_ms", "{:.1f}"),
    ("decoder_ms", "{:.1f}"),
    ("host_ms", "{:.1f}"),
    ("large_image_e2e_ms", "{:.1f}"),
    ("cold_start_s", "{:.2f}"),
    ("peak_rss_mb", "{:.0f}"),
    ("final_mask_iou_min", "{:.4f}"),
    ("logits_relative_error_max", "{:.1e}"),
    ("confident_pixel_iou_min", "{:.4f}"),
    ("speedup_vs_torch-cpu-fp32", "{:.2f}x"),
    ("speedup_vs_torch-cpu-bf16", "{:.2f}x"),
    ("speedup_vs_torch-fp32", "{:.2f}x"),
    ("speedup_vs_torch-bf16", "{:.2f}x"),
    ("http_overhead", "{:+.1%}"),
]


def table(rows: list[dict[str, object]]) -> str:
    header = "| " + " | ".join(name for name, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [fmt.format(row[name]) if name in row else "-" for name, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parent_main(args: argparse.Namespace) -> int:
    # The machines this runs on are shared: the load around the run says how far its figures can be trusted.
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="vreyesam-bench-") as tmp:
        args.workdir = Path(tmp)
        _write_workload(args.workdir, args.images, large=not args.short)
        rows = []
        names = _contestants(args.device, args.model, torch_cpu=args.torch_cpu_python is not None)
        if args.contestants:
            # Fidelity is always measured against torch-fp32, so it always runs.
            names = [
                "torch-fp32",
                *(name for name in names if name in args.contestants.split(",") and name != "torch-fp32"),
            ]
        failed: dict[str, str] = {}
        for name in names:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            try:
                rows.append(summarize(name, _run_worker(args, name), args.workdir))
            except subprocess.CalledProcessError as exc:
                # One contestant's failure (its traceback is above) must not lose the others' figures.
                failed[name] = f"exit status {exc.returncode}"
                if name == "torch-fp32":
                    raise  # every fidelity figure is measured against it
        add_ratios(rows)
    peaks = _matrix_peaks(args, rows)
    machine = {**_machine(), "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()}}
    print(f"{machine['cpu']}, {machine['cpu_count']} CPUs, load average before/after {load_before} / {os.getloadavg()}")
    print(table(rows))
    model = workload_model(args.model)
    verdicts = {name: verdict["passed"] for name, verdict in model["variants"].items()}  # type: ignore[attr-defined]
    print(f"model {model['weights']}: variants passed {verdicts}; auto serves {model['auto_on_this_cpu']} here")
    report = {
        "machine": machine,
        "model": model,
        "matrix_peak": peaks,
        "device": args.device,
        "images": args.images,
        "repeats": args.repeats,
        "rows": rows,
        "failed": failed,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if failed:
        print(f"failed contestants: {failed}", file=sys.stderr)
    return 1 if failed else 0


def _matrix_peaks(args: argparse.Namespace, rows: list[dict[str, object]]) -> dict[str, object]:
    """The CPU's matrix-product rates after the contestants (same threads), and each network's share of them."""
    if args.device != "cpu" or args.short:
        return {}
    from benchmarks import matrix_peak

    rates = {name: round(rate, 1) for name, rate in matrix_peak.matrix_rates(args.threads).items()}
    print(f"matrix product {matrix_peak.SIZE}x{matrix_peak.SIZE}: {rates} GFLOP/s")
    try:
        shares = matrix_peak.graph_shares(rows, args.model, rates)
    except ImportError:  # the work counter needs the onnx package
        return {"matrix_gflop_per_s": rates}
    for name, figures in shares["contestants"].items():
        print(f"  {name}: {figures}")
    return {"matrix_gflop_per_s": rates, **shares}


def _cpu_model() -> str:
    """Model name and the flags that decide the precision variants (bf16 units, AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    name = fields.get("model name\t", "unknown").strip()
    flags = set(fields.get("flags\t\t", "").split())
    return f"{name} ({', '.join(sorted(flags & {'avx512_bf16', 'amx_bf16', 'avx512_vnni'})) or 'no bf16/vnni'})"


def _machine() -> dict[str, object]:
    import platform

    import onnxruntime

    info: dict[str, object] = {
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "onnxruntime": onnxruntime.__version__,
    }
    try:
        import openvino

        info["openvino"] = openvino.__version__.split("-")[0]
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "worker"])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--weights", type=Path, help="the weights file, for a model exported from real weights")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--images", type=int, default=5, help="400x300 images (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per image after one warm-up")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = library default)")
    parser.add_argument("--short", action="store_true", help="CI mode: no large image; checks output only")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--contestants", help="comma-separated subset to run (torch-fp32 always runs)")
    parser.add_argument(
        "--serve-python",
        default=sys.executable,
        help="interpreter of the serving environment, for the HTTP contestant (default: this one)",
    )
    parser.add_argument(
        "--torch-cpu-python",
        help="interpreter of an environment with the CPU build of torch (`make torch-cpu-env`): adds the "
        "torch-cpu-fp32 / torch-cpu-bf16 contestants on --device cpu",
    )
    parser.add_argument("--contestant", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return worker_main(args) if args.mode == "worker" else parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
