#!/usr/bin/env bash
# The device check: export a random-weights model (seed 0) and benchmark this runtime against the PyTorch
# reference in the same run, on a GPU machine (or, to prove the script, here on the CPU), JSON to
# benchmarks/results/.
#
#   benchmarks/gpu_check.sh prepare                 here, once: the wheels the GPU machine lacks, for its
#                                                   Python 3.12, in parts under .gpucheck/ (git-ignored)
#   benchmarks/gpu_check.sh unpack                  there, after the parts came over: install them
#   benchmarks/gpu_check.sh run [--device cuda|cpu] [--images N] [--repeats N] [--out FILE]
#
# The GPU machine has PyTorch (CUDA 13), onnx and a CPU-only onnxruntime, no network, and one call carries
# at most 64 MiB: onnxruntime-gpu comes over with ../shared/gpu/prepare.sh's five parts (its install.sh
# puts it in /tmp/ortgpu) and this project's other wheels with `prepare` (parts of at most 40 MiB, so each
# call keeps room for the working tree). The order of calls there:
#   1-5  the onnxruntime-gpu parts (the recipe), 6.. one `.gpucheck/pN` each (`cp .gpucheck/pN/* /tmp/gpucheck/`),
#   last `benchmarks/gpu_check.sh unpack && benchmarks/gpu_check.sh run --device cuda` (about 6 minutes).
# With `--device cpu` it runs here with the project's two environments (`make setup`), end to end.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PARTS=.gpucheck
STAGE=/tmp/gpucheck          # where the parts are gathered on the GPU machine
SITE=/tmp/gpucheck-site      # where they are installed there
ORTGPU=/tmp/ortgpu           # where the recipe's install.sh puts onnxruntime-gpu
PART_BYTES=$((40 * 1024 * 1024))
# What the GPU machine's Python lacks for the export (sam2 and its config tools, onnxscript), the server
# (web stack, OpenCV, Pillow, cryptography) and the torch reference (torchvision's transforms).
# Pure-Python source distributions (no wheel on PyPI): built here into py3 wheels.
SOURCES=(sam2==1.1.0 antlr4-python3-runtime==4.9.3 iopath==0.1.10)
WHEELS=(
    hydra-core omegaconf portalocker
    onnxscript onnx-ir ml_dtypes
    fastapi starlette pydantic pydantic-core annotated-types typing-inspection uvicorn h11 click anyio sniffio
    idna python-multipart httpx httpcore certifi tqdm cryptography cffi pycparser
    opencv-python-headless pillow torchvision==0.26.0
)

log() { printf '[gpu-check] %s\n' "$*" >&2; }
die() { printf '[gpu-check] ERROR: %s\n' "$*" >&2; exit 1; }

# NAME -> NAME==VERSION as this project's environments have it (the versions its tests ran with), else NAME.
pinned() {
    local name=$1 frozen
    frozen=$({ .venv-build/bin/pip freeze 2>/dev/null; .venv-serve/bin/pip freeze 2>/dev/null; } \
        | awk -F'==' -v n="$name" 'BEGIN { gsub(/[-_.]+/, "-", n); n = tolower(n) }
            { k = tolower($1); gsub(/[-_.]+/, "-", k); if (k == n && NF == 2) { print $0; exit } }')
    echo "${frozen:-$name}"
}

prepare() {
    [[ -x .venv-build/bin/pip && -x .venv-serve/bin/pip ]] || die "run 'make setup' first: the versions come from its environments"
    rm -rf "$PARTS" && mkdir -p "$PARTS/dl"
    grep -qx '/.gpucheck/' .git/info/exclude 2>/dev/null || echo '/.gpucheck/' >>.git/info/exclude
    # Source distributions become wheels here (sam2 without its CUDA extension).
    SAM2_BUILD_CUDA=0 python3 -m pip wheel -q --no-deps -w "$PARTS/dl" "${SOURCES[@]}"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$PARTS/dl" $(for name in "${WHEELS[@]}"; do pinned "$name"; done)
    tar -C "$PARTS/dl" -cf "$PARTS/wheels.tar" .
    split -b "$PART_BYTES" -d -a 1 "$PARTS/wheels.tar" "$PARTS/part"
    local part n=0
    for part in "$PARTS"/part*; do
        mkdir -p "$PARTS/p$n" && mv "$part" "$PARTS/p$n/"
        n=$((n + 1))
    done
    sha256sum "$PARTS/wheels.tar" | cut -c1-64 >"$PARTS/p$((n - 1))/wheels.sha256"
    rm -rf "$PARTS/dl" "$PARTS/wheels.tar"
    du -sh "$PARTS"/p* >&2
    log "ready: $n parts under $PARTS (one call each: cp $PARTS/pN/* $STAGE/)"
}

unpack() {
    [[ -f $STAGE/wheels.sha256 ]] || die "no $STAGE/wheels.sha256: copy every $PARTS/pN/* to $STAGE first"
    cat "$STAGE"/part* >"$STAGE/wheels.tar"
    echo "$(cat "$STAGE/wheels.sha256")  $STAGE/wheels.tar" | sha256sum -c --quiet
    mkdir -p "$STAGE/wheels" && tar -C "$STAGE/wheels" -xf "$STAGE/wheels.tar"
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$STAGE"/wheels/*.whl
    log "installed $(find "$STAGE/wheels" -name '*.whl' | wc -l) wheels into $SITE"
}

# A folder on PYTHONPATH in which `vreyesam` is this checkout, laid out as an installed package
# (vreyesam.runtime -> runtime/, vreyesam.export -> export/), for a Python without the project installed.
package_site() {
    local site=$1
    rm -rf "$site" && mkdir -p "$site/vreyesam"
    local f
    for f in __init__.py __main__.py cli.py; do ln -s "$ROOT/vreyesam/$f" "$site/vreyesam/$f"; done
    ln -s "$ROOT/runtime" "$site/vreyesam/runtime"
    ln -s "$ROOT/export" "$site/vreyesam/export"
}

machine() {
    python3 - <<'EOF'
import json, platform, subprocess
info = {"python": platform.python_version()}
try:
    info["cpu"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
    info["amx"], info["avx512_bf16"] = "amx_bf16" in flags, "avx512_bf16" in flags
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

run() {
    local device=cuda images=3 repeats=3 out=
    while (($#)); do
        case $1 in
            --device) device=$2; shift 2 ;;
            --images) images=$2; shift 2 ;;
            --repeats) repeats=$2; shift 2 ;;
            --out) out=$2; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    [[ $device == cuda || $device == cpu ]] || die "--device must be cuda or cpu"
    out=${out:-benchmarks/results/check-$device-$(date -u +%Y%m%dT%H%M%SZ).json}
    local work py serve_py
    work=$(mktemp -d /tmp/gpu-check.XXXXXX)
    if [[ $device == cuda ]]; then
        [[ -d $ORTGPU/onnxruntime ]] || die "onnxruntime-gpu is not in $ORTGPU: run the recipe's five calls first"
        [[ -d $SITE ]] || die "the project's wheels are not in $SITE: run '$0 unpack' first"
        package_site "$work/site"
        export PYTHONPATH="$ORTGPU:$SITE:$work/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
        py=python3
        serve_py=python3
        # CUDA and cuDNN come with the image's torch: load them before onnxruntime looks for them.
        python3 -c "import torch, onnxruntime as o; o.preload_dlls(); print('providers', o.get_available_providers())"
    else
        [[ -x .venv-build/bin/python && -x .venv-serve/bin/python ]] || die "run 'make setup' first"
        py=.venv-build/bin/python
        serve_py=.venv-serve/bin/python
    fi
    log "machine: $(machine)"
    local t0=$SECONDS
    "$py" -m vreyesam export --out "$work/model" --random-weights --seed 0 --force
    log "export: $((SECONDS - t0)) s"
    t0=$SECONDS
    mkdir -p "$(dirname "$out")"
    "$py" -m benchmarks.bench --model "$work/model" --device "$device" --images "$images" --repeats "$repeats" \
        --serve-python "$serve_py" --json "$out"
    log "benchmark: $((SECONDS - t0)) s; results in $out"
    rm -rf "$work"
}

case ${1:-} in
    prepare) prepare ;;
    unpack) unpack ;;
    run) shift; run "$@" ;;
    *) die "usage: $0 prepare | unpack | run [--device cuda|cpu] [--images N] [--repeats N] [--out FILE]" ;;
esac
