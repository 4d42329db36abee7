"""The distribution a non-editable install gets (the container images' `pip install .`): every module of the
three packages, rooms included, and the page's files, which the server reads from the installed package.
Built for real, with pip, from this checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from vreyesam.runtime.tools.space import SOURCE_SUFFIXES  # what the sources are: Python and the page's files

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"vreyesam": "vreyesam", "runtime": "vreyesam/runtime", "export": "vreyesam/export"}


def test_the_wheel_holds_every_module_and_the_page(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("vreyesam-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for folder, installed in PACKAGES.items():
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts:
                expected.add(f"{installed}/{path.relative_to(ROOT / folder).as_posix()}")
    assert "vreyesam/runtime/http/page/index.html" in expected and "vreyesam/runtime/model/loader.py" in expected
    assert expected <= names, sorted(expected - names)
