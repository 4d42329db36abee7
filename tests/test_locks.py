"""The hash-locked requirements of the images and the test environments (requirements/, `make locks`),
checked without a network.

Every lock pins every package with `==` and its sha256 hashes, covers every dependency of its extras in
pyproject.toml (a test environment's lock with the image lock it adds to), and records the fingerprint of
what it was made from (stale -> `make locks`); every `pip install` in the Dockerfiles and in the Makefile's
test environments installs locks with --require-hashes, save two named exceptions.
What needs the network (re-resolving, the audit service) is `make check-locks RESOLVE=1` and `make audit`;
the images themselves are built and their SBOMs checked by `.ci/images.sh all`.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = ("Dockerfile.build", "Dockerfile.serve", "Dockerfile")


def _load_locks():
    spec = importlib.util.spec_from_file_location("vreyesam_locks", ROOT / "requirements" / "locks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


locks = _load_locks()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
LOCK_FILES = [file for lock in locks.LOCKS for file in lock.files]


def _name(requirement: str) -> str:
    return locks.requirement_name(requirement)


def _entries(file: str) -> list[tuple[str, str, list[str]]]:
    return locks.blocks((ROOT / "requirements" / file).read_text(encoding="utf-8"))


def _names(lock) -> set[str]:
    """What the lock installs: its own entries and those of the image lock it adds to."""
    base = {name for file in locks.lock_named(lock.base).files for name, _, _ in _entries(file)} if lock.base else set()
    return base | {name for file in lock.files for name, _, _ in _entries(file)}


def _run_lines(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (ROOT / dockerfile).read_text(encoding="utf-8")
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


@pytest.mark.parametrize("file", LOCK_FILES)
def test_every_line_of_a_lock_is_pinned_with_hashes(file: str) -> None:
    text = (ROOT / "requirements" / file).read_text(encoding="utf-8")
    entries = _entries(file)
    assert entries, file
    for name, version, lines in entries:
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), (name, version)
        assert locks.hashes(lines), f"{file}: {name}=={version} has no --hash"
        assert all(h for h in locks.hashes(lines)), name
    # nothing but pins, their hashes and comments: no index, find-links or unpinned line slips in
    for line in text.splitlines():
        stripped = line.strip()
        assert (
            not stripped
            or stripped.startswith("#")
            or locks.PIN.match(line)
            or re.fullmatch(r"--hash=sha256:[0-9a-f]{64}( \\)?", stripped)
        ), f"{file}: {line!r}"
    assert len({name for name, _, _ in entries}) == len(entries), f"{file}: a package twice"


@pytest.mark.parametrize("lock", [lock for lock in locks.LOCKS if lock.extras is not None], ids=lambda lock: lock.name)
def test_a_lock_covers_every_dependency_of_its_extras(lock) -> None:
    project = PYPROJECT["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in lock.extras:
        wanted |= {_name(r) for r in project["optional-dependencies"][extra]}
    wanted |= {_name(r) for r in PYPROJECT["build-system"]["requires"]}  # the project is built without isolation
    wanted -= set(lock.unhashed)
    missing = wanted - _names(lock)
    assert not missing, f"{lock.name}: {sorted(missing)} not locked: run `make locks`"


def test_the_builder_lock_holds_sam2_and_the_sdists_apart_and_leaves_torch_to_its_version_pin() -> None:
    builder = locks.lock_named("builder")
    sdists = {name for name, _, _ in _entries("builder-sdists.txt")}
    assert sdists == set(builder.sdists) == {"sam2", "antlr4-python3-runtime", "iopath"}
    assert not sdists & {name for name, _, _ in _entries("builder.txt")}
    assert "torch" not in _names(builder)
    # torch's own dependencies (as the CPU build declares them) are locked
    assert {"filelock", "sympy", "networkx", "jinja2", "fsspec", "typing-extensions"} <= _names(builder)
    assert not any(name.startswith(("nvidia-", "triton")) for name in _names(builder)), "the CUDA build's packages"
    assert re.fullmatch(r"torch==[0-9.]+", locks.TORCH_SPEC)


@pytest.mark.parametrize("lock", locks.LOCKS, ids=lambda lock: lock.name)
def test_no_lock_is_stale(lock) -> None:
    assert locks.problems(lock, PYPROJECT) == []


def test_a_changed_extra_makes_its_locks_stale_and_no_other() -> None:
    changed = copy.deepcopy(PYPROJECT)
    changed["project"]["optional-dependencies"]["serve"].append("orjson>=3")
    stale = {lock.name for lock in locks.LOCKS if locks.problems(lock, changed)}
    assert stale == {"serve-cpu", "serve-gpu", "serve-cpu-ray", "test-serve", "test-ray"}
    problem = locks.problems(locks.lock_named("serve-cpu"), changed)[0]
    assert "requirements/serve-cpu.txt is stale" in problem and "make locks" in problem
    # an edit elsewhere in pyproject.toml (another extra, a comment, spacing) changes nothing
    changed = copy.deepcopy(PYPROJECT)
    changed["project"]["optional-dependencies"]["ray"].append("hypothesis")
    assert {lock.name for lock in locks.LOCKS if locks.problems(lock, changed)} == {"serve-cpu-ray", "test-ray"}
    changed = copy.deepcopy(PYPROJECT)
    changed["project"]["optional-dependencies"]["serve"][0] = (
        " " + changed["project"]["optional-dependencies"]["serve"][0]
    )
    assert not any(locks.problems(lock, changed) for lock in locks.LOCKS)


def test_every_pip_install_in_the_dockerfiles_is_hash_locked() -> None:
    """Two named exceptions: this project itself (`.`, --no-deps: nothing resolved) and torch (TORCH_SPEC,
    pinned by version: requirements/locks.py says why)."""
    for dockerfile in DOCKERFILES:
        installs = [
            command.strip()
            for line in _run_lines(dockerfile)
            for command in re.split(r"&&|;", line)
            if re.search(r"\bpip install\b", command)
        ]
        assert installs, dockerfile
        for command in installs:
            if command.endswith('pip install "${TORCH_SPEC}"'):
                continue
            if command.endswith(" ."):
                assert "--no-deps" in command and "--no-build-isolation" in command, command
                continue
            assert "--require-hashes" in command and "--no-deps" in command, f"{dockerfile}: {command}"
            lock = re.search(r"-r \"?([^\s\"]+)", command)
            assert lock, f"{dockerfile}: {command}"
            if lock.group(1) == "${lock}":  # Dockerfile.serve's lock of RUNTIME and EXTRAS (next test)
                continue
            assert lock.group(1).startswith("requirements/") and (ROOT / lock.group(1)).is_file(), command
            if not lock.group(1).endswith("-sdists.txt"):
                assert "--only-binary :all:" in command, command


def _make_recipe_installs() -> list[str]:
    """Every `pip install` of the Makefile's environment recipes, continuation lines joined."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    locked = re.search(r"^LOCKED := (.+)$", text, re.MULTILINE)
    assert locked, "the Makefile defines LOCKED"
    lines = [line.replace("$(LOCKED)", locked.group(1)) for line in text.splitlines() if line.startswith("\t")]
    return [line.strip() for line in lines if re.search(r"\bpip install\b", line) and "$(LOCKS_VENV)" not in line]


def test_every_test_environment_installs_the_locks() -> None:
    """The test environments install the image locks and their own with --require-hashes; two named exceptions:
    this project itself (--no-deps) and the builder's torch, the model image's own version pin (--no-deps)."""
    installs = _make_recipe_installs()
    assert len(installs) >= 10, installs
    for command in installs:
        if command.endswith(("-e .", " .")) or '"$(BUILDER_TORCH)"' in command:
            assert "--no-deps" in command, command
            continue
        assert "--require-hashes" in command and "--no-deps" in command, command
        files = re.findall(r"-r (requirements/\S+)", command)
        assert files and all((ROOT / file).is_file() for file in files), command
    # Each test lock goes in beside the image lock it was resolved within.
    for lock in (lock for lock in locks.LOCKS if lock.base):
        together = [c for c in installs if f"requirements/{lock.name}.txt" in c]
        assert together and all(f"requirements/{lock.base}.txt" in c for c in together), lock.name
    builder_torch = re.search(r'ARG TORCH_SPEC="([^"]+)"', (ROOT / "Dockerfile.build").read_text(encoding="utf-8"))
    assert builder_torch and builder_torch.group(1) == locks.TORCH_SPEC  # one torch pin for the builder


def _local_wheel(folder: Path, name: str = "floating_demo", version: str = "1.0") -> None:
    """A minimal wheel in `folder` (pip installs from it with --no-index: no network)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/RECORD": "",
    }
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


@pytest.mark.parametrize(
    ("line", "refusal"),
    [("floating-demo>=1", "versions pinned with =="), ("floating-demo==1.0", "Hashes are required")],
)
def test_a_floating_or_unhashed_requirement_is_refused(tmp_path: Path, line: str, refusal: str) -> None:
    """What --require-hashes does for every environment: a requirement that is not pinned with ==, or pinned
    without its hashes, is refused (here offline, from a local wheel)."""
    _local_wheel(tmp_path)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(line + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index"]
    command += ["--find-links", str(tmp_path), "--require-hashes", "--no-deps", "-r", str(requirements)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "PIP_CONFIG_FILE": os.devnull}
    )
    assert done.returncode != 0, done.stdout
    assert refusal in done.stderr, done.stderr


def test_a_test_lock_holds_only_what_its_image_lock_lacks() -> None:
    for lock in (lock for lock in locks.LOCKS if lock.base):
        own = {name for name, _, _ in _entries(f"{lock.name}.txt")}
        image = {name for file in locks.lock_named(lock.base).files for name, _, _ in _entries(file)}
        assert own and not own & image, (lock.name, sorted(own & image))


def test_the_serving_image_finds_a_lock_for_each_image_ci_builds() -> None:
    rule = "lock=\"requirements/serve-${RUNTIME}${EXTRAS:+-$(printf '%s' \"${EXTRAS}\" | tr ',' '-')}.txt\""
    assert rule in (ROOT / "Dockerfile.serve").read_text(encoding="utf-8")
    for runtime, extras in (("cpu", ""), ("gpu", ""), ("cpu", "ray")):
        assert (ROOT / "requirements" / locks.lock_for_image(runtime, extras)).is_file(), (runtime, extras)


def test_the_build_context_lets_the_locks_in() -> None:
    assert "!requirements/*.txt" in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()


def test_the_sboms_are_made_reproducibly_in_build_stages_only() -> None:
    for dockerfile, out in (("Dockerfile.build", "/out/sbom.cdx.json"), ("Dockerfile.serve", "/staging/vreyesam/")):
        text = " ".join(_run_lines(dockerfile))
        assert "cyclonedx-py environment --output-reproducible --of JSON" in text
        assert out in text and "ARG SOURCE_DATE_EPOCH=" in text
    # The serving image's final stage runs nothing: the generator's venv (/opt/sbom) cannot reach it.
    final = (ROOT / "Dockerfile.serve").read_text(encoding="utf-8").split("AS serve\n", 1)[1]
    assert not re.search(r"^RUN ", final, re.MULTILINE) and "/opt/sbom" not in final


def test_the_audit_tells_a_network_failure_from_findings() -> None:
    kind, lines = locks.classify_audit(1, None, "requests.exceptions.ConnectionError: Max retries exceeded\n")
    assert kind == "unreachable" and "ConnectionError" in lines[0]
    report = {
        "dependencies": [
            {
                "name": "jinja2",
                "version": "3.1.2",
                "vulns": [{"id": "GHSA-h5c8", "fix_versions": ["3.1.3"], "aliases": []}],
            },
            {"name": "idna", "version": "3.20", "vulns": []},
        ]
    }
    kind, lines = locks.classify_audit(1, report, "")
    assert kind == "vulnerable" and lines == ["jinja2==3.1.2: GHSA-h5c8; fixed in: 3.1.3"]
    skipped = {"dependencies": [{"name": "idna", "skip_reason": "Dependency not found on PyPI"}]}
    assert locks.classify_audit(0, skipped, "")[0] == "unaudited"  # a service that knows nothing audits nothing
    assert (
        locks.classify_audit(0, {"dependencies": [{"name": "idna", "version": "3.20", "vulns": []}]}, "")[0] == "clean"
    )
    assert locks.classify_audit(2, None, "usage: pip-audit ...\nerror: bad flag\n")[0] == "failed"
