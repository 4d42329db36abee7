#!/usr/bin/env python3
"""The hash-locked requirements of the images and the test environments: generated from pyproject.toml,
checked, audited (`make locks`).

    python3 requirements/locks.py compile [--upgrade] [NAME ...]   write the locks (`make locks`; uv, network)
    python3 requirements/locks.py check [--resolve]                 fail on a stale lock (`make check-locks`)
    python3 requirements/locks.py audit [--strict]                   pip-audit every lock (`make audit`)
    python3 requirements/locks.py sbom-check FILE [PACKAGE ...]     a CycloneDX JSON SBOM listing PACKAGEs

The tool is uv (`uv pip compile --generate-hashes`, pinned in requirements/tools.txt), not pip-tools:
- it resolves for the images' target (Python 3.11, linux x86_64, manylinux_2_28) whatever the machine it
  runs on; pip-compile resolves for the interpreter and platform that run it;
- it needs no sdist built to lock it: sam2's metadata is declared here (it is installed without its
  dependencies), where pip-compile would build sam2 to read it, and sam2's build requires torch;
- it does not read pip's configuration, so this host's mirrors and torch constraint never shape a lock
  (the builder's CPU torch wheel is offered explicitly: LOCK_FIND_LINKS, below);
- it is one wheel with no dependencies, and resolves all the locks in seconds.

Each lock records, in its header, the sha256 of what it was made from (`inputs-sha256`): the dependency
lists of its extras in pyproject.toml (with the core dependencies and the build system's requirements), its
other inputs, the target and this file's format. `check` recomputes it offline (stdlib only) and fails when
it differs, naming `make locks`; `check --resolve` also re-resolves into a temporary folder, seeded with the
current pins, and diffs (network). A new release upstream makes no lock stale: `compile` keeps the current
pins unless an input changed or `--upgrade` is given.

A test environment installs the lock of the image whose role it tests and a lock of its own that adds the
test tools (`Lock.base`): that lock is resolved within the image lock's pins and lists only what the image
lock lacks, so the tests run on exactly the versions the image ships (the serving tests on serve-cpu.txt,
the cluster tests on serve-cpu-ray.txt, the builder tests on builder.txt with the same torch).

torch is the one builder package not locked by hash: the builder installs the CPU build (2.13.0+cpu), which
no registry reachable here publishes (it is one file in a local find-links folder; PyPI's torch 2.13.0 is the
CUDA 13 build, which needs 20 more packages: nvidia-*, cuda-*, triton), and the Space's builder on Hugging
Face installs PyPI's build: one hash list cannot serve both. Dockerfile.build pins it by version
(TORCH_SPEC); its dependencies are resolved against the CPU build and hash-locked in builder.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "requirements"
FORMAT = 1  # bump when what a lock records, or how, changes: every lock is then stale
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-manylinux_2_28"  # glibc 2.28+: Debian bookworm (CI's base, 2.36) and python:3.11-slim
UV_OPTIONS = ("--generate-hashes", "--no-header", "--annotation-style", "split")


@dataclass(frozen=True)
class Lock:
    name: str
    purpose: str
    extras: tuple[str, ...] | None = None  # the project's core dependencies + these extras; None: not the project
    inputs: tuple[str, ...] = ()  # more requirement lines
    in_file: str | None = None  # requirements/<in_file>: more inputs (sam2 and wheel; the tools' pins)
    unhashed: tuple[str, ...] = ()  # resolved (their dependencies are locked) but pinned elsewhere by version
    sdists: tuple[str, ...] = ()  # moved to <name>-sdists.txt: no wheel, built without isolation after torch
    base: str | None = None  # the lock this one adds to: resolved within its pins, listing only what it lacks

    @property
    def files(self) -> tuple[str, ...]:
        if self.sdists and self.base is None:
            return (f"{self.name}.txt", f"{self.name}-sdists.txt")
        return (f"{self.name}.txt",)


def _dockerfile_arg(name: str, dockerfile: str = "Dockerfile.build") -> str:
    text = (ROOT / dockerfile).read_text(encoding="utf-8")
    match = re.search(rf'^ARG {name}="([^"]+)"$', text, re.MULTILINE)
    if not match:
        raise SystemExit(f'{dockerfile} has no line ARG {name}="..."')
    return match.group(1)


TORCH_SPEC = _dockerfile_arg("TORCH_SPEC")
# The builder tests' reference (Meta's SAM2ImagePredictor) imports torchvision: the release made for TORCH_SPEC,
# installed without its dependencies beside the CPU build of torch (tests/torchvision_import.py).
TORCHVISION_SPEC = "torchvision==0.28.0"

LOCKS = (
    Lock(
        "builder",
        "Dockerfile.build's builder stage (the model image): the `export` extra; torch by version (TORCH_SPEC)",
        extras=("export",),
        inputs=(TORCH_SPEC,),
        in_file="builder.in",
        unhashed=("torch",),
        sdists=("antlr4-python3-runtime", "iopath", "sam2"),
    ),
    # The serving images ship the `trace` extra: OpenTelemetry traces turn on from the environment alone.
    Lock(
        "serve-cpu",
        "Dockerfile.serve, RUNTIME=cpu (the CPU serving image, the Space)",
        extras=("cpu", "serve", "trace"),
    ),
    Lock(
        "serve-gpu",
        "Dockerfile.serve, RUNTIME=gpu (onnxruntime-gpu, its CUDA wheels)",
        extras=("gpu", "serve", "trace"),
    ),
    Lock(
        "serve-cpu-ray",
        "Dockerfile.serve, RUNTIME=cpu EXTRAS=ray (Ray Serve, KubeRay)",
        extras=("cpu", "serve", "trace", "ray"),
    ),
    Lock(
        "sbom", "the SBOM generator (cyclonedx-bom) of the images' build stages, in no final image", in_file="sbom.in"
    ),
    Lock("tools", "the host's tools: uv (locks), pip-audit (audit); .venv-locks", in_file="tools.in"),
    # The test environments (Makefile): each image lock of the role it tests, plus one of these.
    Lock(
        "test-builder",
        "the builder tests (.venv-build): the test tools and torchvision (Meta's predictor, the reference)",
        extras=("export", "test"),
        inputs=(TORCH_SPEC, TORCHVISION_SPEC),
        in_file="builder.in",
        unhashed=("torch",),
        sdists=("antlr4-python3-runtime", "iopath", "sam2"),
        base="builder",
    ),
    Lock(
        "test-serve",
        "the serving tests (.venv-serve): the test tools, traces and the load report",
        extras=("cpu", "serve", "trace", "report", "test"),
        base="serve-cpu",
    ),
    Lock(
        "test-ray",
        "the cluster tests (.venv-ray): the test tools",
        extras=("cpu", "serve", "trace", "ray", "test"),
        base="serve-cpu-ray",
    ),
    Lock(
        "test-deploy",
        "the manifest checks (.venv-deploy): kubernetes-validate, checkov, pytest",
        extras=("manifests",),
        in_file="test-deploy.in",
    ),
)


def lock_named(name: str) -> Lock:
    for lock in LOCKS:
        if name in (lock.name, *lock.files):
            return lock
    raise SystemExit(f"no lock named {name}: {', '.join(lock.name for lock in LOCKS)}")


def lock_for_image(runtime: str, extras: str) -> str:
    """The lock file Dockerfile.serve installs for RUNTIME and EXTRAS (the same rule as its RUN step)."""
    return f"serve-{runtime}{'-' + extras.replace(',', '-') if extras else ''}.txt"


# ------------------------------------------------------------------------------------------------- inputs
def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return canonical_name(match.group(1))


def _normal(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement.split("#", 1)[0])


def read_pyproject(path: Path | None = None) -> dict:
    return tomllib.loads((path or ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def project_requirements(lock: Lock, pyproject: dict) -> dict[str, list[str]]:
    """What the lock takes from pyproject.toml, by section: the core dependencies, each extra, the build system."""
    if lock.extras is None:
        return {}
    project = pyproject["project"]
    sections = {"dependencies": list(project.get("dependencies", []))}
    optional = project.get("optional-dependencies", {})
    for extra in lock.extras:
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r} (lock {lock.name})")
        sections[f"extra {extra}"] = list(optional[extra])
    sections["build-system"] = list(pyproject.get("build-system", {}).get("requires", []))
    return sections


def in_file_requirements(lock: Lock) -> list[str]:
    if lock.in_file is None:
        return []
    lines = (HERE / lock.in_file).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.split("#", 1)[0].strip()]


def base_lock(lock: Lock) -> Lock | None:
    return lock_named(lock.base) if lock.base else None


def base_entries(lock: Lock) -> dict[str, str]:
    """name -> version of every package the lock's base lock holds (its files as they are now)."""
    base = base_lock(lock)
    if base is None:
        return {}
    pins: dict[str, str] = {}
    for file in base.files:
        path = HERE / file
        if path.exists():
            pins.update({name: version for name, version, _ in blocks(path.read_text(encoding="utf-8"))})
    return pins


def inputs_sha256(lock: Lock, pyproject: dict | None = None) -> str:
    """The fingerprint of everything the lock is made from (offline: pyproject.toml, the .in file, this file,
    and the pins of the lock it adds to)."""
    sections = project_requirements(lock, pyproject if pyproject is not None else read_pyproject())
    record = {
        "format": FORMAT,
        "lock": lock.name,
        "target": [PYTHON_VERSION, PLATFORM, *UV_OPTIONS],
        "project": {key: sorted(_normal(r) for r in value) for key, value in sections.items()},
        "inputs": sorted(_normal(r) for r in (*lock.inputs, *in_file_requirements(lock))),
        "unhashed": sorted(lock.unhashed),
        "sdists": sorted(lock.sdists),
        **({"base": sorted(base_entries(lock).items())} if lock.base else {}),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ parsing
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)(?:\s*\\)?$")


def blocks(text: str) -> list[tuple[str, str, list[str]]]:
    """A lock's entries: (canonical name, version, the entry's lines), comments between entries dropped."""
    entries: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        match = PIN.match(line)
        if match:
            entries.append((canonical_name(match.group(1)), match.group(2), [line]))
        elif line.startswith((" ", "\t")) and entries:
            entries[-1][2].append(line)
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"unexpected line in a lock: {line!r}")
    return entries


def hashes(entry_lines: list[str]) -> list[str]:
    return re.findall(r"--hash=sha256:([0-9a-f]{64})", "\n".join(entry_lines))


def recorded_sha256(text: str) -> str | None:
    match = re.search(r"^# inputs-sha256: ([0-9a-f]{64})$", text, re.MULTILINE)
    return match.group(1) if match else None


# ---------------------------------------------------------------------------------------------- compiling
def tool(name: str) -> str:
    """A tool of the venv running this file (.venv-locks), else of PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: run `make locks` (it installs requirements/tools.txt into .venv-locks)")
    return found


def find_links() -> list[str]:
    """Where the builder's CPU torch wheel is found: LOCK_FIND_LINKS, else pip's find-links (this host's mirror)."""
    value = os.environ.get("LOCK_FIND_LINKS")
    if value is None:
        value = os.environ.get("PIP_FIND_LINKS", "")
        if not value:
            got = subprocess.run(
                [sys.executable, "-m", "pip", "config", "get", "global.find-links"], capture_output=True, text=True
            )
            value = got.stdout.strip() if got.returncode == 0 else ""
    return value.split()


def header(lock: Lock, file: str, sha: str, uv_version: str) -> str:
    sdists = file.endswith("-sdists.txt")
    base = base_lock(lock)
    base_files = [name for name in base.files if not name.endswith("-sdists.txt")] if base else []
    together = "".join(f"-r requirements/{name} " for name in base_files)
    install = (
        "pip install --require-hashes --no-deps --no-build-isolation -r requirements/" + file
        if sdists
        else f"pip install --require-hashes --no-deps --only-binary :all: {together}-r requirements/" + file
    )
    lines = [
        f"# requirements/{file}: GENERATED by `make locks` (requirements/locks.py, {uv_version}). Do not edit.",
        f"# For: {lock.purpose}.",
    ]
    if lock.extras is not None:
        extras = ", ".join(lock.extras)
        lines.append(f"# From pyproject.toml: the core dependencies, the extras {extras}, the build system")
    if lock.inputs:
        lines.append(f"# With: {', '.join(lock.inputs)} (torch: Dockerfile.build's TORCH_SPEC)")
    if lock.in_file:
        lines.append(f"# With: requirements/{lock.in_file}")
    if base is not None:
        on = " and ".join(f"requirements/{name}" for name in base.files)
        lines.append(f"# Adds to: {on} (resolved within its pins; lists only what it lacks: install both)")
    lines += [
        f"# Target: Python {PYTHON_VERSION}, {PLATFORM}. Every line pinned (==) with its sha256 hashes.",
        f"# Install: {install}",
    ]
    if sdists:
        lines.append(f"# (after requirements/{lock.name}.txt and torch: these are sdists, built without isolation)")
    for name in lock.unhashed:
        lines.append(f"# Not here: {name}, pinned by version in Dockerfile.build ({TORCH_SPEC}); see locks.py")
    lines.append(f"# inputs-sha256: {sha}")
    return "\n".join(lines) + "\n"


def compile_lock(lock: Lock, out_dir: Path, *, upgrade: bool = False, pyproject_path: Path | None = None) -> list[Path]:
    """Resolve `lock` with uv into out_dir (seeded with the pins in requirements/), return the files written."""
    uv = tool("uv")
    uv_version = subprocess.run(  # noqa: S603 (our own tool, our own arguments)
        [uv, "--version"], capture_output=True, text=True, check=True
    ).stdout.split()
    uv_version = " ".join(uv_version[:2])
    pyproject_path = pyproject_path or ROOT / "pyproject.toml"
    sha = inputs_sha256(lock, read_pyproject(pyproject_path))
    with tempfile.TemporaryDirectory(prefix="locks-") as work_name:
        work = Path(work_name)
        args = [uv, "pip", "compile", *UV_OPTIONS, "--python-version", PYTHON_VERSION, "--python-platform", PLATFORM]
        if lock.extras is not None:
            shutil.copyfile(pyproject_path, work / "pyproject.toml")
            args.append("pyproject.toml")
            for extra in lock.extras:
                args += ["--extra", extra]
            build_system = read_pyproject(pyproject_path).get("build-system", {}).get("requires", [])
        else:
            build_system = []
        extra_inputs = [*lock.inputs, *build_system, *in_file_requirements(lock)]
        if extra_inputs:
            (work / "build-inputs.in").write_text("\n".join(extra_inputs) + "\n", encoding="utf-8")
            args.append("build-inputs.in")
        pins = base_entries(lock)
        if pins:  # within the image lock's pins (constraints: uv resolves nothing of them anew)
            (work / "base-pins.txt").write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
            args += ["--constraint", "base-pins.txt"]
        if "sam2" in lock.sdists:  # installed --no-deps: declared without dependencies, so uv never builds it
            version = next(r for r in in_file_requirements(lock) if requirement_name(r) == "sam2")
            version = version.split("#", 1)[0].split("==", 1)[1].strip()
            (work / "uv.toml").write_text(
                f'[[dependency-metadata]]\nname = "sam2"\nversion = "{version}"\nrequires-dist = []\n', encoding="utf-8"
            )
            args += ["--config-file", "uv.toml"]
        else:
            args.append("--no-config")
        if lock.unhashed:
            for link in find_links():
                args += ["--find-links", link]
        seed = "".join(
            (HERE / name).read_text(encoding="utf-8") for name in lock.files if (HERE / name).exists() and not upgrade
        )
        (work / "out.txt").write_text(seed, encoding="utf-8")  # uv prefers the pins of an existing output file
        args += ["-o", "out.txt"] + (["--upgrade"] if upgrade else [])
        run = subprocess.run(args, cwd=work, capture_output=True, text=True)  # noqa: S603 (built here)
        if run.returncode != 0:
            sys.stderr.write(run.stderr)
            raise SystemExit(f"uv could not lock {lock.name}")
        entries = blocks((work / "out.txt").read_text(encoding="utf-8"))
    for name, version, _ in entries:
        if name == "torch" and "torch" in lock.unhashed and "+cpu" not in version:
            raise SystemExit(
                f"{lock.name}: resolved torch {version}, not the CPU build: offer the torch CPU wheel with "
                "LOCK_FIND_LINKS=<folder holding it> (the builder's torch dependencies are those of the CPU build)"
            )
    if pins:
        added = [e for e in entries if e[0] not in pins and e[0] not in lock.unhashed]
        moved = [f"{n} {v} (base {pins[n]})" for n, v, _ in entries if n in pins and pins[n] != v]
        if moved:
            raise SystemExit(f"{lock.name}: resolved outside its base lock's pins: {moved}")
        if any(name in lock.sdists for name, _, _ in added):
            raise SystemExit(f"{lock.name}: an sdist its base lock lacks: {[e[0] for e in added]}")
        entries = added
    main = [e for e in entries if e[0] not in lock.unhashed and e[0] not in lock.sdists]
    parts = {f"{lock.name}.txt": main}
    if lock.sdists and lock.base is None:
        parts[f"{lock.name}-sdists.txt"] = [e for e in entries if e[0] in lock.sdists]
        missing = set(lock.sdists) - {e[0] for e in parts[f"{lock.name}-sdists.txt"]}
        if missing:
            raise SystemExit(f"{lock.name}: {sorted(missing)} no longer resolved: update Lock.sdists in locks.py")
    written = []
    for file, file_entries in parts.items():
        body = "".join("\n".join(lines) + "\n" for _, _, lines in file_entries)
        path = out_dir / file
        path.write_text(header(lock, file, sha, uv_version) + body, encoding="utf-8")
        written.append(path)
    return written


def do_compile(names: list[str], upgrade: bool, pyproject: Path | None) -> int:
    targets = [lock_named(name) for name in names] if names else list(LOCKS)
    for lock in targets:
        for path in compile_lock(lock, HERE, upgrade=upgrade, pyproject_path=pyproject):
            count = len(blocks(path.read_text(encoding="utf-8")))
            print(f"wrote {path.relative_to(ROOT)} ({count} packages)")
    return 0


# ------------------------------------------------------------------------------------------------ checking
def problems(lock: Lock, pyproject: dict) -> list[str]:
    """What is wrong with the lock's files, offline: missing, stale (inputs changed), unpinned or unhashed."""
    found = []
    sha = inputs_sha256(lock, pyproject)
    for file in lock.files:
        path = HERE / file
        if not path.exists():
            found.append(f"requirements/{file} is missing: run `make locks`")
            continue
        text = path.read_text(encoding="utf-8")
        recorded = recorded_sha256(text)
        if recorded != sha:
            what = "records no inputs-sha256" if recorded is None else "is stale: what it is made from changed"
            found.append(f"requirements/{file} {what} (inputs-sha256 now {sha[:12]}): run `make locks`")
        for name, version, lines in blocks(text):
            if not hashes(lines):
                found.append(f"requirements/{file}: {name}=={version} has no --hash")
            if name in base_entries(lock):
                found.append(f"requirements/{file}: {name} is its base lock's to pin, not this lock's")
    return found


def do_check(resolve: bool) -> int:
    pyproject = read_pyproject()
    found = [problem for lock in LOCKS for problem in problems(lock, pyproject)]
    expected = {file for lock in LOCKS for file in lock.files}
    strays = sorted(p.name for p in HERE.glob("*.txt") if p.name not in expected)
    found += [f"requirements/{name} is no lock of locks.py: remove it" for name in strays]
    if not found and resolve:
        with tempfile.TemporaryDirectory(prefix="locks-check-") as out_name:
            for lock in LOCKS:
                for path in compile_lock(lock, Path(out_name)):
                    old = (HERE / path.name).read_text(encoding="utf-8")
                    old = re.sub(r"\(requirements/locks.py, [^)]*\)", "", old)
                    new = re.sub(r"\(requirements/locks.py, [^)]*\)", "", path.read_text(encoding="utf-8"))
                    if old != new:
                        found.append(f"requirements/{path.name} differs from a fresh resolution: run `make locks`")
    for problem in found:
        print(f"check-locks: {problem}", file=sys.stderr)
    if found:
        return 1
    print(f"check-locks: {len(expected)} locks match pyproject.toml" + (" and a fresh resolution" if resolve else ""))
    return 0


# -------------------------------------------------------------------------------------------------- audit
NETWORK_ERRORS = re.compile(
    r"ConnectionError|ConnectTimeout|ReadTimeout|ProxyError|MaxRetryError|NewConnectionError|NameResolutionError"
    r"|Temporary failure in name resolution|Name or service not known|Network is unreachable|timed out"
    r"|SSLError|HTTPError|ServiceError|Service unavailable|50[234] "
)


def classify_audit(returncode: int, report: dict | None, stderr: str) -> tuple[str, list[str]]:
    """pip-audit's outcome for one lock -> (kind, lines): kind is `clean`, `vulnerable`, `unaudited` (the
    service answered but knew none of the packages), `unreachable` (a network failure) or `failed`."""
    if report is not None:
        deps = report.get("dependencies", [])
        vulnerable = [d for d in deps if d.get("vulns")]
        skipped = [d for d in deps if d.get("skip_reason")]
        if vulnerable:
            lines = []
            for dep in vulnerable:
                for vuln in dep["vulns"]:
                    fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version"
                    aliases = ", ".join(vuln.get("aliases") or [])
                    lines.append(
                        f"{dep['name']}=={dep.get('version')}: {vuln.get('id')}"
                        f"{' (' + aliases + ')' if aliases else ''}; fixed in: {fixed}"
                    )
            if skipped:
                lines.append(f"({len(skipped)} of {len(deps)} packages could not be audited)")
            return "vulnerable", lines
        if deps and len(skipped) == len(deps):
            return "unaudited", [f"the service knew none of its {len(deps)} packages ({skipped[0]['skip_reason']})"]
        note = [f"{len(skipped)} of {len(deps)} packages could not be audited"] if skipped else []
        return "clean", note
    if NETWORK_ERRORS.search(stderr):
        last = [line for line in stderr.strip().splitlines() if line.strip()][-1:]
        return "unreachable", [last[0][:300] if last else "no answer"]
    tail = [line for line in stderr.strip().splitlines() if line.strip()][-3:]
    return "failed", tail or [f"pip-audit exited {returncode}"]


def run_pip_audit(file: str, service: str, work: Path) -> tuple[str, list[str]]:
    out = work / (file + ".json")
    command = [tool("pip-audit"), "-r", str(HERE / file), "--require-hashes", "--disable-pip"]
    command += ["--vulnerability-service", service, "--progress-spinner", "off", "--timeout", "20"]
    command += ["-f", "json", "-o", str(out)]
    run = subprocess.run(command, capture_output=True, text=True)  # noqa: S603 (our own tool, our arguments)
    report = json.loads(out.read_text(encoding="utf-8")) if out.exists() and out.stat().st_size else None
    return classify_audit(run.returncode, report, run.stderr)


def do_audit(strict: bool) -> int:
    """Audit every lock. Findings are printed as a warning block and do not fail (a new advisory must not turn
    an unchanged commit red) unless --strict / AUDIT_STRICT=1. An unreachable (or failing) service is one
    warning line, and the other locks are not tried; a service that knows none of a lock's packages (this host's
    PyPI proxy serves no per-release JSON), one line for that lock, or one in all. pip-audit failing otherwise
    (a usage error, a lock it cannot read) fails: that is this step broken, not the world changed."""
    service = os.environ.get("AUDIT_SERVICE", "pypi")
    files = [file for lock in LOCKS for file in lock.files]
    outcomes: dict[str, tuple[str, list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="audit-") as work_name:
        for file in files:
            outcomes[file] = run_pip_audit(file, service, Path(work_name))
            if outcomes[file][0] == "unreachable":
                print(
                    f"audit: WARNING: not audited ({len(files)} locks): the {service} vulnerability service could not"
                    f" be reached: {outcomes[file][1][0][:240]}"
                )
                return 0
    if all(kind == "unaudited" for kind, _ in outcomes.values()):
        first = next(iter(outcomes.values()))[1][0]
        print(
            f"audit: WARNING: not audited ({len(files)} locks): the {service} vulnerability service answered,"
            f" but {first}"
        )
        return 0
    for file, (kind, lines) in outcomes.items():
        if kind == "clean":
            print(f"audit: requirements/{file}: no known vulnerabilities" + (f" ({lines[0]})" if lines else ""))
        elif kind == "unaudited":
            print(f"audit: WARNING: requirements/{file} not audited: {lines[0]}")
        elif kind == "failed":
            print(f"audit: ERROR: requirements/{file}: pip-audit failed: " + " | ".join(lines))
    vulnerable = {file: lines for file, (kind, lines) in outcomes.items() if kind == "vulnerable"}
    if vulnerable:
        print("audit: " + "=" * 100)
        print(
            "audit: WARNING: known vulnerabilities in the locked dependencies (`make locks UPGRADE=1`, or raise the"
            " bound in pyproject.toml, then `make locks`):"
        )
        for file, lines in vulnerable.items():
            print(f"audit:   requirements/{file}")
            for line in lines:
                print(f"audit:     {line}")
        print("audit: " + "=" * 100)
    if any(kind == "failed" for kind, _ in outcomes.values()):  # not the service, not a finding: this step broken
        return 1
    return 1 if strict and vulnerable else 0


# ---------------------------------------------------------------------------------------------------- SBOM
def sbom_check(path: Path, expected: list[str]) -> int:
    """FILE parses as a CycloneDX JSON document whose components (or root component) include every expected
    package."""
    try:
        bom = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"sbom-check: {path}: not JSON: {exc}", file=sys.stderr)
        return 1
    if bom.get("bomFormat") != "CycloneDX" or not str(bom.get("specVersion", "")).startswith("1."):
        print(f"sbom-check: {path}: not a CycloneDX document", file=sys.stderr)
        return 1
    components = {canonical_name(c.get("name", "")): c.get("version") for c in bom.get("components", [])}
    root = bom.get("metadata", {}).get("component", {})
    components.setdefault(canonical_name(root.get("name", "")), root.get("version"))  # the project itself
    missing = [name for name in expected if canonical_name(name) not in components]
    if missing:
        print(f"sbom-check: {path}: does not list {', '.join(missing)}", file=sys.stderr)
        return 1
    listed = ", ".join(f"{name} {components[canonical_name(name)]}" for name in expected)
    print(
        f"CycloneDX {bom['specVersion']}, {root.get('name')} {root.get('version')}: {len(components)} components"
        f" ({listed})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compile", help="(re)write the locks with uv")
    p.add_argument("names", nargs="*", help="only these locks (default: all)")
    p.add_argument("--upgrade", action="store_true", help="newest versions, not the current pins")
    p.add_argument("--pyproject", type=Path, help="lock from this copy of pyproject.toml (default: the checkout's)")
    p = sub.add_parser("check", help="fail when a lock no longer matches its inputs")
    p.add_argument("--resolve", action="store_true", help="also re-resolve into a temporary folder and diff")
    p = sub.add_parser("audit", help="pip-audit every lock")
    p.add_argument(
        "--strict",
        action="store_true",
        default=os.environ.get("AUDIT_STRICT") == "1",
        help="exit 1 on known vulnerabilities (default: print them, exit 0; AUDIT_STRICT=1)",
    )
    p = sub.add_parser("sbom-check", help="check a CycloneDX JSON SBOM lists the given packages")
    p.add_argument("file", type=Path)
    p.add_argument("packages", nargs="*")
    args = parser.parse_args(argv)
    if args.command == "compile":
        return do_compile(args.names, args.upgrade, args.pyproject)
    if args.command == "check":
        return do_check(args.resolve)
    if args.command == "audit":
        return do_audit(args.strict)
    return sbom_check(args.file, args.packages)


if __name__ == "__main__":
    sys.exit(main())
