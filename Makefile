# ==== development: the README's two commands =========================================================
#   make run      set up, export the real weights from the Hugging Face Hub, serve on 127.0.0.1:8000
#   make demo     the offline choice: a model exported from RANDOM weights (masks are meaningless)
#   make test     the test suite, as CI runs it (builder stage, the torch-free serving stage with the page's
#                 browser tests, then the Ray stage and the manifest checks, each in its own environment)
#   make unit     the tests that need no exported model, no server process and no browser, in the serving
#                 environment (no torch, no root): ~1 minute once .venv-serve exists
#   make test-ray     the cluster paths: tests marked `ray` start real two-node Ray clusters (slow: ~8 min
#                     here) in .venv-ray, which has the `ray` extra; the serving stage lacks Ray and skips them
#   make test-deploy  deploy/'s manifests against the Kubernetes schema and checkov (.venv-deploy)
#   make setup    only create .venv-build (torch, sam2, torchvision) and .venv-serve (no torch)
#   make bench    benchmark against the PyTorch reference (bench-short: CI's quick output check)
PYTHON ?= python3
BUILD_VENV := .venv-build
SERVE_VENV := .venv-serve
BUILD_PY := $(BUILD_VENV)/bin/python
SERVE_PY := $(SERVE_VENV)/bin/python
RAY_VENV := .venv-ray
RAY_PY := $(RAY_VENV)/bin/python
DEPLOY_VENV := .venv-deploy
DEPLOY_PY := $(DEPLOY_VENV)/bin/python
MODEL_DIR ?= models/vreyesam
DEMO_DIR ?= models/demo
TEST_MODEL := build-out/test-model
HOST ?= 127.0.0.1
PORT ?= 8000
# ---- every test environment installs the hash locks of requirements/ (`make locks`): the lock of the image
# whose role it tests, plus test-<role>.txt with the test tools, resolved within the image lock's pins (so the
# tests run on the versions the image ships), each with --require-hashes --no-deps; then this project itself
# (--no-deps). The one package pinned by version, not hash, is the builder's torch: the model image's own
# (Dockerfile.build's TORCH_SPEC), its CPU build (requirements/locks.py says why).
BUILDER_TORCH := $(shell sed -n 's/^ARG TORCH_SPEC="\(torch==[^"+]*\)"$$/\1+cpu/p' Dockerfile.build)
LOCKED := --require-hashes --no-deps --only-binary :all:
# What the test model's export can depend on (.ci/export_inputs.py: the modules vreyesam.export imports,
# directly or not): an edit elsewhere (the HTTP edge, the tools, the cluster paths) does not re-export it.
EXPORT_INPUTS := $(shell $(PYTHON) .ci/export_inputs.py)
# Each test stage's scratch space (TMPDIR, so pytest's tmp_path too, and RAY_TMPDIR for Ray's stage) is a
# fresh folder of the clone's build folder, removed and made again when the stage starts: nothing a stage
# finds in the machine's /tmp from earlier work can change its result, and it leaves nothing there.
SCRATCH := $(CURDIR)/build-out/scratch
fresh_scratch = rm -rf $(SCRATCH)/$(1) && mkdir -p $(SCRATCH)/$(1)

.PHONY: setup run demo test unit test-builder test-serving browser-deps test-ray test-deploy bench bench-confident bench-short lint clean

# The builder's: the model image's lock and torch (the CPU build), the test tools and torchvision (Meta's
# predictor, the tests' reference), then sam2 and the other sdists, built without isolation.
$(BUILD_VENV)/.done: requirements/builder.txt requirements/builder-sdists.txt requirements/test-builder.txt
	rm -rf $(BUILD_VENV) && $(PYTHON) -m venv $(BUILD_VENV)
	$(BUILD_PY) -m pip install -q $(LOCKED) -r requirements/builder.txt -r requirements/test-builder.txt
	$(BUILD_PY) -m pip install -q --no-deps "$(BUILDER_TORCH)"
	SAM2_BUILD_CUDA=0 $(BUILD_PY) -m pip install -q --require-hashes --no-deps --no-build-isolation \
	  -r requirements/builder-sdists.txt
	$(BUILD_PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(BUILD_PY) -c "import torch; assert not torch.version.cuda, torch.__version__"
	touch $@

# The serving image's lock and the test tools; the environment must not have torch: the runtime is proven
# torch-free there.
$(SERVE_VENV)/.done: requirements/serve-cpu.txt requirements/test-serve.txt
	rm -rf $(SERVE_VENV) && $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_PY) -m pip install -q $(LOCKED) -r requirements/serve-cpu.txt -r requirements/test-serve.txt
	$(SERVE_PY) -m pip install -q --no-deps --no-build-isolation -e .
	! $(SERVE_PY) -c "import torch" 2>/dev/null
	touch $@

# The cluster paths': the Ray serving image's lock (Ray Serve, Ray Data) and the test tools.
$(RAY_VENV)/.done: requirements/serve-cpu-ray.txt requirements/test-ray.txt
	rm -rf $(RAY_VENV) && $(PYTHON) -m venv $(RAY_VENV)
	$(RAY_PY) -m pip install -q $(LOCKED) -r requirements/serve-cpu-ray.txt -r requirements/test-ray.txt
	$(RAY_PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# The manifest checkers only (kubernetes-validate, checkov): nothing of them reaches a serving environment.
$(DEPLOY_VENV)/.done: requirements/test-deploy.txt
	rm -rf $(DEPLOY_VENV) && $(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_PY) -m pip install -q $(LOCKED) -r requirements/test-deploy.txt
	$(DEPLOY_PY) -m pip install -q --no-deps --no-build-isolation .
	touch $@

setup: $(BUILD_VENV)/.done $(SERVE_VENV)/.done

run: setup
	@$(BUILD_VENV)/bin/vreyesam export --out $(MODEL_DIR) $(if $(wildcard $(MODEL_DIR)/manifest.json),--force,) \
	  || { echo; echo "Could not export the VREyeSAM weights from the Hugging Face Hub (see the line above)."; \
	       echo "Offline choice: 'make demo' serves a model exported from RANDOM weights (meaningless masks)."; exit 1; }
	$(SERVE_VENV)/bin/vreyesam serve --model $(MODEL_DIR) --host $(HOST) --port $(PORT)

$(DEMO_DIR)/manifest.json: $(BUILD_VENV)/.done
	$(BUILD_VENV)/bin/vreyesam export --out $(DEMO_DIR) --random-weights --seed 0 --force

demo: $(DEMO_DIR)/manifest.json $(SERVE_VENV)/.done
	@echo "DEMO: serving a model with RANDOM weights (SAM2 Hiera-S, seed 0) - not the VREyeSAM model."
	VREYESAM_ALLOW_RANDOM_WEIGHTS=1 $(SERVE_VENV)/bin/vreyesam serve --model $(DEMO_DIR) --host $(HOST) --port $(PORT)

# The test model is exported once by the builder environment and reused until what the export runs changes,
# signed (model.sig) with a key pair made for the tests (build-out/test-signing.key, .pub).
TEST_SIGNING_KEY := build-out/test-signing
$(TEST_SIGNING_KEY).key: $(BUILD_VENV)/.done
	rm -f $(TEST_SIGNING_KEY).key $(TEST_SIGNING_KEY).pub
	$(BUILD_VENV)/bin/vreyesam export --new-signing-key $(TEST_SIGNING_KEY)

$(TEST_MODEL)/manifest.json: $(BUILD_VENV)/.done $(EXPORT_INPUTS) $(TEST_SIGNING_KEY).key
	$(call fresh_scratch,export)
	TMPDIR=$(SCRATCH)/export $(BUILD_VENV)/bin/vreyesam export --out $(TEST_MODEL) --random-weights --seed 0 --force \
	  --sign-key $(TEST_SIGNING_KEY).key

test-builder: $(TEST_MODEL)/manifest.json
	$(call fresh_scratch,builder)
	TMPDIR=$(SCRATCH)/builder VREYESAM_TEST_MODEL_DIR=$(TEST_MODEL) VREYESAM_TEST_REQUIRE_TORCH=1 \
	  VREYESAM_TEST_MODEL_PUBLIC_KEY=$(CURDIR)/$(TEST_SIGNING_KEY).pub \
	  $(BUILD_PY) -m pytest tests/export tests/benchmarks

# The serving stage includes the page's browser tests (pytest marker `browser`: headless Chromium driven by
# selenium against real servers; screenshots in build-out/). They need Debian's chromium and chromium-driver,
# which `browser-deps` installs when they are missing (apt-get, as root, as CI runs). Elsewhere, skip them
# with: $(SERVE_PY) -m pytest tests --ignore=tests/export -m "not browser"
BROWSER_PACKAGES := chromium chromium-driver prometheus

browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v prometheus >/dev/null || { \
	  echo "installing $(BROWSER_PACKAGES) for the browser tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(BROWSER_PACKAGES) >/dev/null; }

test-serving: $(TEST_MODEL)/manifest.json $(SERVE_VENV)/.done browser-deps
	$(call fresh_scratch,serving)
	TMPDIR=$(SCRATCH)/serving VREYESAM_TEST_MODEL_DIR=$(TEST_MODEL) $(SERVE_PY) -m pytest tests --ignore=tests/export

# Ray's stage: every test of the cluster room, the two-node ones (marker `ray`) included. RAY_TMPDIR too is
# the stage's scratch, so that Ray's default folder (<RAY_TMPDIR>/ray, else <TMPDIR>/ray, else /tmp/ray) is
# never the machine's; each cluster keeps its files, Ray's address file included, in its test's folder
# (tests/runtime/cluster/ray_cluster.py), and the room's conftest.py fails the run if a default folder changed.
test-ray: $(TEST_MODEL)/manifest.json $(RAY_VENV)/.done browser-deps
	$(call fresh_scratch,ray)
	TMPDIR=$(SCRATCH)/ray RAY_TMPDIR=$(SCRATCH)/ray VREYESAM_TEST_MODEL_DIR=$(TEST_MODEL) \
	  $(RAY_PY) -m pytest --basetemp=$(SCRATCH)/ray/t tests/runtime/cluster tests/test_cli.py

test-deploy: $(DEPLOY_VENV)/.done
	$(call fresh_scratch,deploy)
	TMPDIR=$(SCRATCH)/deploy $(DEPLOY_PY) -m pytest -p no:cacheprovider tests/deploy

test: test-builder test-serving test-ray test-deploy

# The reference contestants run the builder's torch (the CPU build, what a user serving on a CPU installs);
# the HTTP contestant runs the torch-free serving venv.
bench: $(TEST_MODEL)/manifest.json $(SERVE_VENV)/.done
	$(BUILD_PY) -m benchmarks.bench --model $(TEST_MODEL) --serve-python $(SERVE_PY) --json build-out/bench.json

# The second workload: weights with confident logits (benchmarks/confident_weights.py: the test model's random
# initialisation with its prompt encoder and mask decoder trained on synthetic eyes), exported like any weights.
CONFIDENT_MODEL := build-out/confident-model
$(CONFIDENT_MODEL)/manifest.json: $(BUILD_VENV)/.done
	$(BUILD_PY) -m benchmarks.confident_weights --out build-out/confident.pt
	$(BUILD_VENV)/bin/vreyesam export --weights build-out/confident.pt --out $(CONFIDENT_MODEL) --force

bench-confident: $(CONFIDENT_MODEL)/manifest.json $(SERVE_VENV)/.done
	$(BUILD_PY) -m benchmarks.bench --model $(CONFIDENT_MODEL) --serve-python $(SERVE_PY) \
	  --weights build-out/confident.pt --json build-out/bench-confident.json

bench-short: $(TEST_MODEL)/manifest.json $(SERVE_VENV)/.done
	$(BUILD_PY) -m benchmarks.bench --model $(TEST_MODEL) --images 1 --repeats 1 --short --serve-python $(SERVE_PY) \
	  --json build-out/bench-short.json
	$(BUILD_PY) -c "import json; rows = json.load(open('build-out/bench-short.json'))['rows']; \
	  assert {r['contestant'] for r in rows} >= {'torch-fp32', 'torch-bf16', 'ort-cpu', 'http-cpu'}, rows; \
	  assert all(r['e2e_p50_ms'] > 0 and r['final_mask_iou_min'] >= 0.99 for r in rows), rows; print('bench output ok')"

# Marked `unit` by tests/conftest.py: every test that uses no model fixture and no browser, Ray or torch marker.
unit: $(SERVE_VENV)/.done
	$(call fresh_scratch,unit)
	TMPDIR=$(SCRATCH)/unit $(SERVE_PY) -m pytest -q -m unit -p no:cacheprovider tests --ignore=tests/export

lint: $(SERVE_VENV)/.done
	$(SERVE_VENV)/bin/ruff check . && $(SERVE_VENV)/bin/ruff format --check .

clean:
	rm -rf build-out build *.egg-info
# ==== end of development ==============================================================================

# ==== container images ==============================================================================
# Owned by the image stage (.ci/images.sh does the work). Docker engine when one answers, else buildah
# (vfs storage under /var/lib/vreyesam-ci, chroot isolation, a debootstrap'd Debian bookworm base).
# Variables (make VAR=value ...): TAG (latest), ENGINE (auto|docker|buildah), BASE_IMAGE,
# RANDOM_WEIGHTS=1 (demo/offline model), WEIGHTS, WEIGHTS_SHA256 (required for real weights), TORCH_SPEC;
# HF_TOKEN from the environment becomes the build secret HF_TOKEN (never a build arg).
#   make image-model      vreyesam-model:TAG      the exported model directory only (FROM scratch)
#   make image-serve      vreyesam-serve:TAG      CPU serving image built on vreyesam-model:TAG
#   make image-serve-gpu  vreyesam-serve-gpu:TAG  CUDA serving image (onnxruntime-gpu, several GB; CI builds it
#                                                 and checks it on a machine without a GPU)
#   make image-space      vreyesam-space:TAG      the Hugging Face Space, built from the folder `vreyesam space`
#                                                 writes (builder + serving; real weights need VREYESAM_MODEL_KEY)
#   make space-folder     build-out/space         that folder, ready to push to a Space (SPACE_DIR=...)
#   make hadolint         lint the three Dockerfiles; check `Dockerfile` matches its two sources
#   make space-dockerfile regenerate `Dockerfile` from Dockerfile.build + Dockerfile.serve
#   make images-ci        the whole CI image stage (root; builds, runs and checks everything; TAG=ci)
# Supply chain (docs/security.md "Supply chain"): the images install from hash-locked requirements/*.txt.
#   make locks            (re)write requirements/*.txt from pyproject.toml with uv (network: PyPI), keeping the
#                         current pins where the inputs allow (UPGRADE=1: newest versions). The builder's torch
#                         CPU wheel is found through LOCK_FIND_LINKS (default: pip's find-links)
#   make check-locks      fail when a lock no longer matches what it is made from (offline; CI's lint stage);
#                         RESOLVE=1 also re-resolves into a temporary folder and diffs (network)
#   make audit            pip-audit every lock: findings printed as a warning block, an unreachable service one
#                         warning line; exit 0 either way unless AUDIT_STRICT=1 (CI's audit stage)
IMAGES_SH := .ci/images.sh
LOCKS_VENV := .venv-locks
LOCKS_PY := requirements/locks.py

.PHONY: image-model image-serve image-serve-gpu image-space hadolint space-dockerfile space-folder images-ci \
	locks check-locks audit

# The tools (uv, pip-audit), installed from their own lock with --require-hashes.
$(LOCKS_VENV)/.done: requirements/tools.txt
	$(PYTHON) -m venv $(LOCKS_VENV)
	$(LOCKS_VENV)/bin/pip install -q --require-hashes --no-deps --only-binary :all: -r requirements/tools.txt
	touch $@

locks: $(LOCKS_VENV)/.done
	$(LOCKS_VENV)/bin/python $(LOCKS_PY) compile $(if $(UPGRADE),--upgrade)

check-locks:
	$(if $(RESOLVE),$(MAKE) --no-print-directory $(LOCKS_VENV)/.done && $(LOCKS_VENV)/bin/python $(LOCKS_PY) check \
	  --resolve,$(PYTHON) $(LOCKS_PY) check)

# No registry, no pip-audit: one warning line, as for an unreachable vulnerability service.
audit:
	@if $(MAKE) --no-print-directory $(LOCKS_VENV)/.done; then \
	  $(call fresh_scratch,audit) && TMPDIR=$(SCRATCH)/audit $(LOCKS_VENV)/bin/python $(LOCKS_PY) audit; \
	else echo "audit: WARNING: not audited: pip-audit could not be installed (requirements/tools.txt)"; fi

image-model:
	$(IMAGES_SH) model

image-serve:
	$(IMAGES_SH) serve

image-serve-gpu:
	$(IMAGES_SH) serve-gpu

image-space:
	$(IMAGES_SH) space

hadolint:
	$(IMAGES_SH) hadolint

space-dockerfile:
	$(IMAGES_SH) gen-space

SPACE_DIR ?= build-out/space
space-folder: $(SERVE_VENV)/.done
	$(SERVE_VENV)/bin/vreyesam space $(SPACE_DIR) --force

images-ci:
	$(IMAGES_SH) all
# ==== end of container images =======================================================================
