"""The `vreyesam` command: a subcommand whose extra is not installed says so in one line and exits 2.

Run in an interpreter that really lacks the packages (no stand-in): `python -S` over a site folder that
links every installed package except the ones left out, as `pip install 'vreyesam[cpu]'` alone would.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from vreyesam.cli import MISSING_DEPENDENCY, SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[1]


def _site_without(tmp_path: Path, left_out: set[str]) -> Path:
    """A folder to put on PYTHONPATH: the installed packages but `left_out`, and this checkout's vreyesam."""
    site = tmp_path / "site"
    site.mkdir(parents=True)
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        top = entry.name.split("-")[0].split(".")[0].lower()
        if top in left_out or entry.suffix == ".pth" or entry.name.startswith(("__editable__", "vreyesam")):
            continue
        (site / entry.name).symlink_to(entry)
    package = site / "vreyesam"
    package.mkdir()
    for name in ("__init__.py", "__main__.py", "cli.py"):
        (package / name).symlink_to(ROOT / "vreyesam" / name)
    (package / "runtime").symlink_to(ROOT / "runtime")
    (package / "export").symlink_to(ROOT / "export")
    return site


def _run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-S", "-m", "vreyesam", *args],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        cwd=site.parent,  # not the checkout: `-m` puts the working directory first on sys.path
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("command", "left_out", "missing"),
    [
        ("serve", {"fastapi", "starlette", "uvicorn", "python_multipart", "multipart"}, "fastapi"),
        ("predict", {"tqdm"}, "tqdm"),
    ],
)
def test_a_missing_extra_is_one_line_and_exit_2(tmp_path: Path, command: str, left_out: set[str], missing: str) -> None:
    site = _site_without(tmp_path, left_out)
    result = _run(site, command, "--model", str(tmp_path), str(tmp_path))
    assert result.returncode == MISSING_DEPENDENCY, result.stderr
    assert result.stderr.splitlines() == [
        f"vreyesam {command}: error: the Python package '{missing}' is missing; "
        "install the extras it needs: pip install 'vreyesam[cpu,serve]'"
    ]
    assert result.stdout == ""
    # The same kind of folder with nothing left out runs the command (its help, here).
    complete = _run(_site_without(tmp_path / "complete", set()), command, "--help")
    assert complete.returncode == 0, complete.stderr


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="the builder environment has torch")
def test_export_without_torch_names_its_extra() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vreyesam", "export", "--out", "model"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == MISSING_DEPENDENCY
    assert result.stderr.splitlines() == [
        "vreyesam export: error: the Python package 'torch' is missing; "
        "install the extras it needs: pip install 'vreyesam[export]'"
    ]


@pytest.mark.parametrize("command", ["serve", "predict"])
def test_the_ray_flag_without_the_ray_extra_names_it(tmp_path: Path, command: str) -> None:
    site = _site_without(tmp_path, {"ray"})
    result = _run(site, command, "--ray", "--model", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == MISSING_DEPENDENCY, result.stderr
    assert result.stderr.splitlines() == [
        f"vreyesam {command}: error: the Python package 'ray' is missing; "
        "install the extras it needs: pip install 'vreyesam[cpu,serve,ray]'"
    ]
    # Without the flag the command does not need Ray at all.
    assert _run(site, command, "--help").returncode == 0


def test_every_subcommand_names_an_extra_of_the_package() -> None:
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for command in SUBCOMMANDS.values():
        for variant in (command, command.on_ray):
            # A command of the standard library alone (space) needs no extra.
            assert variant is None or not variant.needs or set(variant.extras.split(",")) <= extras, variant
