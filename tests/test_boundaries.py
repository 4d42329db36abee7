"""The architecture's contracts: `[tool.vreyesam.boundaries]` in pyproject.toml, checked over the source.

Every import statement of every module in runtime/ and export/ counts, wherever it stands (lazy imports in
functions and `TYPE_CHECKING` blocks too): a dependency is a dependency. The checker is tested on small
made-up packages first, so a rule that stops catching what it should fails here too.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME, EXPORT = "vreyesam.runtime", "vreyesam.export"


@dataclass(frozen=True)
class Contract:
    layers: tuple[str, ...]
    independent: tuple[str, ...]
    kernel: tuple[str, ...]
    export_surface: tuple[str, ...]
    runtime_forbidden: tuple[str, ...]
    confined: Mapping[str, list[str]]  # package -> the rooms (or room.module) that alone may import it

    @classmethod
    def from_pyproject(cls) -> Contract:
        table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["vreyesam"]["boundaries"]
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in table.items()})

    def room(self, module: str) -> str | None:
        """The room (or kernel module, or "surface") a runtime module belongs to; None for the package itself."""
        parts = module.split(".")
        return parts[2] if len(parts) > 2 and parts[:2] == ["vreyesam", "runtime"] else None


def module_sources(folder: Path, package: str) -> dict[str, str]:
    """Dotted module name -> source of every .py file under `folder`, mapped onto `package`."""
    sources = {}
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        sources[".".join([package, *parts])] = path.read_text(encoding="utf-8")
    return sources


def imports_of(module: str, source: str, known: set[str]) -> Iterator[str]:
    """Every module `source` imports; `from package import name` counts as `package.name` if that is a module."""
    package = module if module in {RUNTIME, EXPORT} else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if candidate in known else base


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(contract: Contract, sources: Mapping[str, str]) -> list[str]:
    """One line per import that breaks the contract."""
    known = set(sources)
    found = []
    for module, source in sources.items():
        for imported in set(imports_of(module, source, known)):
            problem = _check(contract, module, imported)
            if problem:
                found.append(f"{module} imports {imported}: {problem}")
    return sorted(found)


def _check(contract: Contract, module: str, imported: str) -> str | None:
    if _within(module, EXPORT):
        if _within(imported, RUNTIME) and imported not in contract.export_surface:
            return "the exporter reaches the runtime only through " + ", ".join(contract.export_surface)
        return None
    if not _within(module, RUNTIME):
        return None
    if any(_within(imported, name) for name in contract.runtime_forbidden):
        return "forbidden in the runtime"
    source_room, target_room = contract.room(module), contract.room(imported)
    for package, rooms in contract.confined.items():
        allowed = source_room in rooms or any(_within(module, f"{RUNTIME}.{room}") for room in rooms)
        if _within(imported, package) and not allowed:
            return f"{package} is imported only in {', '.join(rooms)}"
    if not _within(imported, RUNTIME) or target_room is None or target_room == source_room:
        return None
    if target_room == "surface":
        return "the surface is the exporter's door, not the runtime's"
    if source_room in contract.kernel and target_room not in contract.kernel:
        return "the kernel imports no room"
    if source_room in contract.independent and target_room not in contract.kernel:
        return f"{source_room} imports no other room"
    layers = contract.layers
    if source_room in layers and target_room in layers and layers.index(target_room) < layers.index(source_room):
        return f"{source_room} is below {target_room}"
    return None


CONTRACT = Contract.from_pyproject()


def test_the_runtime_and_the_exporter_keep_the_contract() -> None:
    sources = module_sources(ROOT / "runtime", RUNTIME) | module_sources(ROOT / "export", EXPORT)
    rooms = {CONTRACT.room(name) for name in sources} - {None}
    assert rooms == {*CONTRACT.layers, *CONTRACT.independent, *CONTRACT.kernel, "surface"}, rooms
    assert violations(CONTRACT, sources) == []


# The checker on made-up packages: each case must be caught (or, for the last ones, allowed).
@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("vreyesam.runtime.engines.x", "from vreyesam.runtime.model import loader", "engines is below model"),
        ("vreyesam.runtime.model.x", "import vreyesam.runtime.http.app", "model is below http"),
        ("vreyesam.runtime.http.x", "def f():\n    from vreyesam.runtime.tools import predict", "http is below tools"),
        ("vreyesam.runtime.media.x", "from vreyesam.runtime.model.segmenter import Prediction", "media imports no"),
        ("vreyesam.runtime.settings", "from vreyesam.runtime.media import decode", "the kernel imports no room"),
        ("vreyesam.runtime.model.x", "from vreyesam.runtime import surface", "the exporter's door"),
        ("vreyesam.runtime.model.x", "import torch.nn", "forbidden in the runtime"),
        ("vreyesam.runtime.tools.x", "from vreyesam.export.builder import export_model", "forbidden in the runtime"),
        ("vreyesam.export.x", "from vreyesam.runtime.model.loader import load_segmenter", "only through"),
        ("vreyesam.runtime.model.x", "from ..http import app", "model is below http"),
        ("vreyesam.runtime.tools.x", "def f():\n    import ray", "ray is imported only in cluster"),
        ("vreyesam.runtime.http.x", "from ray import serve", "ray is imported only in cluster"),
        ("vreyesam.runtime.tools.x", "from vreyesam.runtime.cluster import batch", "tools is below cluster"),
        ("vreyesam.runtime.model.x", "import cv2", "cv2 is imported only in media.opencv"),
        ("vreyesam.runtime.media.decode", "def f():\n    import cv2", "cv2 is imported only in media.opencv"),
        ("vreyesam.runtime.media.opencv", "import cv2", None),
        ("vreyesam.runtime.cluster.x", "from ray import serve", None),
        ("vreyesam.runtime.cluster.x", "from vreyesam.runtime.tools import outputs", None),
        ("vreyesam.runtime.tools.x", "from vreyesam.runtime.http import server", None),
        ("vreyesam.runtime.http.x", "from vreyesam.runtime.media.decode import decode_image", None),
        ("vreyesam.export.x", "from vreyesam.runtime import surface", None),
        ("vreyesam.runtime.media.x", "from vreyesam.runtime.settings import DecodeLimits", None),
    ],
)
def test_the_checker_catches_what_it_should(module: str, source: str, expected: str | None) -> None:
    stubs = {name: "" for name in ("vreyesam.runtime.surface", "vreyesam.runtime.http.app", "vreyesam.runtime.http")}
    stubs |= {
        "vreyesam.runtime.tools.predict": "",
        "vreyesam.runtime.http.server": "",
        "vreyesam.runtime.tools.outputs": "",
    }
    stubs |= {"vreyesam.runtime.cluster.batch": ""}
    found = violations(CONTRACT, {**stubs, module: source})
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0], found


def test_every_package_is_in_the_distribution() -> None:
    """A room missing from [tool.setuptools].packages works in a checkout but not in an installed image."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {"runtime": RUNTIME, "export": EXPORT, "vreyesam": "vreyesam"}
    found = {
        ".".join([package, *init.parent.relative_to(ROOT / folder).parts])
        for folder, package in folders.items()
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert found == listed
