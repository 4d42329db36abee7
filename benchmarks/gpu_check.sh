#!/usr/bin/env bash
# How to benchmark on a GPU host: export a random-weights model (seed 0), probe each graph alone on the
# device (general and fixed-size sessions, CUDA graphs, copies between providers, operator profiles), the
# pipeline in process without and with CUDA graphs and with encoder batching of 4 and 16 images
# (benchmarks/graphs.py), benchmark this runtime against the PyTorch reference in the same run, e2e p50/p90
# per contestant (benchmarks/bench.py), then the server's images/s at 1, 8 and 32 clients without and with
# encoder batching and with CUDA graphs (benchmarks/throughput.py). JSON and the log go to --out-dir
# (default benchmarks/results/).
#
#   benchmarks/gpu_check.sh [all|export|measure|graphs|bench|throughput] [--device cuda|cpu] [--model DIR]
#                           [--out-dir DIR] [--images N] [--repeats N] [--runs N] [--quick]
#
#   export      the model only (to --model, default build-out/gpucheck/model)
#   measure     graphs, bench and throughput of an exported --model
#   graphs | bench | throughput   one of them (a device session with little time left can split the run)
#   all         export, then measure (the default)
#   --quick     a proof of the script, not figures: the smallest batches and one repeat (for --device cpu)
#
# Expected device time on an H100/H200 (the last full run took ~3 min after a 107 s export; these steps add
# fixed-size and captured sessions and two pipeline layouts): export ~2 min, graphs ~3 min, bench ~3 min,
# throughput ~2 min.
#
# Interpreters: BUILD_PYTHON runs the export, the probe and the torch reference; it needs torch (a CUDA
# build on a GPU host), sam2 and this project with onnxruntime-gpu (`pip install -e '.[gpu,serve]'`,
# then the builder's packages as in the Makefile's .venv-build: hydra-core, iopath, onnx, onnxscript,
# sam2 --no-deps). SERVE_PYTHON runs the HTTP contestant's server (default: the same interpreter).
# Without a GPU, `--device cpu` runs the same steps with the project's environments (`make setup`).
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf '[gpu-check] %s\n' "$*" >&2; }
die() { printf '[gpu-check] ERROR: %s\n' "$*" >&2; exit 1; }

default_python() {
    local venv=$1
    if [[ -x $ROOT/$venv/bin/python ]]; then echo "$ROOT/$venv/bin/python"; else command -v python3; fi
}
BUILD_PYTHON=${BUILD_PYTHON:-$(default_python .venv-build)}
SERVE_PYTHON=${SERVE_PYTHON:-$(default_python .venv-serve)}

machine() {
    "$BUILD_PYTHON" - <<'EOF'
import json, platform, subprocess
import onnxruntime
info = {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__}
try:
    info["cpu"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    flags = set(next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split())
    info["cpu_flags"] = sorted(flags & {"avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "amx_int8"})
except (OSError, StopIteration):
    pass
try:
    info["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20).stdout.strip()
except (OSError, subprocess.SubprocessError):
    info["gpu"] = None
print(json.dumps(info))
EOF
}

# One step: timed and logged; a failed step is reported and the steps after it still run.
FAILED=()
step() {
    local name=$1 t0=$SECONDS
    shift
    log "step $name"
    if "$@"; then
        log "step $name: $((SECONDS - t0)) s"
    else
        log "step $name FAILED (exit $?) after $((SECONDS - t0)) s"
        FAILED+=("$name")
    fi
}

main() {
    local what=all device=cuda model=$ROOT/build-out/gpucheck/model out_dir=$ROOT/benchmarks/results
    local images=5 repeats=5 runs=20 probe=(--layouts plain,cuda-graphs,batch-4,batch-16) clients=1,8,32
    local requests=96 batches=1,8 graphs=(--cuda-graphs)
    case ${1:-} in all | export | measure | graphs | bench | throughput) what=$1; shift ;; esac
    while (($#)); do
        case $1 in
            --device) device=$2; shift 2 ;;
            --model) model=$2; shift 2 ;;
            --out-dir) out_dir=$2; shift 2 ;;
            --images) images=$2; shift 2 ;;
            --repeats) repeats=$2; shift 2 ;;
            --runs) runs=$2; shift 2 ;;
            --quick)
                images=1 repeats=1 runs=2 probe=(--batches 1,2 --prompts 30 --clients 1,2 --layouts plain,batch-2)
                clients=2 requests=2 batches=1,2 graphs=()
                shift ;;
            *) die "unknown option $1 (usage: the comment at the top of $0)" ;;
        esac
    done
    [[ $device == cuda || $device == cpu ]] || die "--device must be cuda or cpu"
    mkdir -p "$out_dir"
    local t0=$SECONDS stamp
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    exec > >(tee -a "$out_dir/check-$device-$stamp.log") 2>&1
    log "machine: $(machine)"
    wants() { [[ $what == all || $what == "$1" || ($what == measure && $1 != export) ]]; }
    if wants export; then
        step export "$BUILD_PYTHON" -m vreyesam export --out "$model" --random-weights --seed 0 --force
    fi
    if [[ $what != export ]]; then
        [[ -f $model/manifest.json ]] || die "no model at $model: run '$0 export' first"
    fi
    if wants graphs; then
        step graphs "$BUILD_PYTHON" -m benchmarks.graphs --model "$model" --device "$device" --runs "$runs" \
            "${probe[@]}" --json "$out_dir/graphs-$device-$stamp.json"
    fi
    if wants bench; then
        local contestants="torch-bf16,ort-$device,ort-$device-fp16-encoder,http-$device"
        [[ $device == cuda ]] && contestants+=",ort-cuda+graphs,ort-cuda-fp16-encoder+graphs,http-cuda+graphs"
        step bench "$BUILD_PYTHON" -m benchmarks.bench --model "$model" --device "$device" --images "$images" \
            --repeats "$repeats" --serve-python "$SERVE_PYTHON" --json "$out_dir/bench-$device-$stamp.json" \
            --contestants "$contestants"
    fi
    if wants throughput; then
        step throughput "$SERVE_PYTHON" -m benchmarks.throughput --model "$model" --device "$device" \
            --layouts 1x0 --encoder-batches "$batches" "${graphs[@]}" --clients "$clients" --requests "$requests" \
            --json "$out_dir/throughput-$device-$stamp.json"
    fi
    log "done in $((SECONDS - t0)) s; failed steps: ${FAILED[*]:-none}; results in $out_dir"
    ((${#FAILED[@]} == 0))
}

main "$@"
