"""The source files an export can depend on: every module of this project that `vreyesam.export` imports,
directly or through others (statically, lazy imports included), with their packages' __init__ files.

    python3 .ci/export_inputs.py      # one path per line, relative to the checkout

The Makefile re-exports the test model when one of these changes, and only then: an edit to the HTTP
edge, the command line or the cluster paths cannot change what the export writes.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"vreyesam.export": ROOT / "export", "vreyesam.runtime": ROOT / "runtime", "vreyesam": ROOT / "vreyesam"}


def module_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files.setdefault(".".join([package, *parts]), path)
    return files


def imported(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for name in names:
            parts = name.split(".")
            # The module and every package above it (their __init__ runs first).
            found.update(".".join(parts[:end]) for end in range(1, len(parts) + 1) if ".".join(parts[:end]) in known)
    return found


def main() -> int:
    known = module_files()
    todo = [name for name in known if name == "vreyesam.export" or name.startswith("vreyesam.export.")]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imported(name, known[name], known) - seen)
    print("\n".join(sorted(str(known[name].relative_to(ROOT)) for name in seen)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
