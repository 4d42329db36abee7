"""`vreyesam space DIR`: the folder a Hugging Face Space builds, from this checkout, with nothing else in it.

The image built from such a folder (served with the key, refused without it, no plaintext graph in any
layer) is checked by CI's image stage (`.ci/images.sh all`); here: what the folder holds, that its
Dockerfile is the one generator's, that it holds everything the Dockerfile copies and nothing that is not
source, and the command's refusals.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vreyesam.cli import main
from vreyesam.runtime.tools import space

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("space") / "my-space"
    assert main(["space", str(out)]) == 0
    return out


def _front_matter(readme: str) -> dict[str, str]:
    head = readme.split("---\n")[1]
    return dict(line.split(": ", 1) for line in head.splitlines())


def _files(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


def test_the_readme_configures_a_docker_space_and_says_how_to_publish(folder: Path) -> None:
    readme = (folder / "README.md").read_text()
    front = _front_matter(readme)
    assert front["sdk"] == "docker" and front["app_port"] == "7860" and front["title"] == "VREyeSAM"
    assert len(front["short_description"]) <= 60  # the Hub's limit
    for step in ("VREYESAM_MODEL_KEY", "HF_TOKEN", "WEIGHTS_SHA256", "git push", "RANDOM_WEIGHTS=1"):
        assert step in readme, step


def test_the_dockerfile_is_the_generators_and_the_checkouts(folder: Path) -> None:
    generated = subprocess.run(
        ["bash", str(ROOT / ".ci" / "images.sh"), "print-space"], capture_output=True, text=True, check=True
    ).stdout
    dockerfile = (folder / "Dockerfile").read_text()
    assert dockerfile == generated == (ROOT / "Dockerfile").read_text()
    assert "ARG MODEL_KEY_REQUIRED=1" in dockerfile  # real weights only encrypted, in a Space
    assert "--mount=type=secret,id=VREYESAM_MODEL_KEY" in dockerfile
    assert "ARG MODEL_KEY_REQUIRED=0" in (ROOT / "Dockerfile.build").read_text()  # the two-file path: optional


def test_the_folder_holds_what_the_dockerfile_copies(folder: Path) -> None:
    dockerfile = (folder / "Dockerfile").read_text()
    copied = {
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for source in line.split()[1:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "vreyesam", "runtime", "export", "requirements/"}
    for source in copied:
        assert (folder / source).exists(), source


def test_the_folder_holds_every_source_file_of_the_packages_and_nothing_else(folder: Path) -> None:
    expected = {"Dockerfile", "README.md", "pyproject.toml", ".dockerignore"}
    for package in space.PACKAGES:
        expected |= {
            str(path.relative_to(ROOT))
            for path in (ROOT / package).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        }
    expected |= {str(path.relative_to(ROOT)) for path in (ROOT / space.LOCKS).glob("*.txt")}
    assert _files(folder) == expected
    assert "runtime/http/page/index.html" in expected and "runtime/model/loader.py" in expected
    assert "requirements/serve-cpu.txt" in expected and "requirements/builder.txt" in expected
    for relative in expected - {"Dockerfile", "README.md"}:
        assert (folder / relative).read_bytes() == (ROOT / relative).read_bytes(), relative


def _checkout_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "checkout"
    for name in (*space.TOP_FILES, space.LOCKS, "Dockerfile.build", "Dockerfile.serve", ".ci"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name)
        else:
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy / name)
    for package in space.PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_weights_keys_and_caches_in_the_checkout_stay_out(tmp_path: Path) -> None:
    checkout = _checkout_copy(tmp_path)
    planted = [
        "runtime/model/encoder.onnx",
        "runtime/model/encoder.onnx.enc",
        "export/VREyeSAM_uncertainity_best.torch",
        "export/golden.npz",
        "runtime/secret.key",
        "runtime/.env",
        "runtime/__pycache__/space.cpython-311.pyc",
        "vreyesam/.cache/notes.py",
    ]
    for relative in planted:
        (checkout / relative).parent.mkdir(parents=True, exist_ok=True)
        (checkout / relative).write_bytes(b"not for a Space")
    out = tmp_path / "out"
    written = space.write_space(out, checkout)
    files = _files(out)
    assert not files & set(planted), files & set(planted)
    assert files == {str(path) for path in written}
    assert "runtime/model/loader.py" in files  # the model room's source is no model directory


def test_an_existing_folder_is_replaced_only_when_asked_and_keeps_its_git(tmp_path: Path, capsys) -> None:
    out = tmp_path / "clone"
    (out / ".git").mkdir(parents=True)
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / "app.py").write_text("an older Space\n")
    assert main(["space", str(out)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"vreyesam space: error: {out} is not empty: pass --force to replace its contents (a .git folder is kept)"
    ]
    assert (out / "app.py").exists()
    assert main(["space", str(out), "--force", "--title", "Iris demo"]) == 0
    assert not (out / "app.py").exists()
    assert (out / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert _front_matter((out / "README.md").read_text())["title"] == "Iris demo"
    assert re.match(r"wrote a Space of \d+ files to ", capsys.readouterr().out)


def test_without_a_source_checkout_it_says_so_in_one_line(tmp_path: Path, capsys) -> None:
    assert main(["space", str(tmp_path / "out"), "--source", str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"vreyesam space: error: {tmp_path} is not a source checkout of this project (no pyproject.toml); "
        "pass --source CHECKOUT"
    ]
    assert not (tmp_path / "out").exists()
