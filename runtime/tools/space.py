"""`vreyesam space DIR`: a folder ready to push to a Hugging Face Space (Docker SDK) that keeps the weights private.

The folder holds what the Space builds and nothing else:
- `Dockerfile`, written by the one generator of the Space file (`.ci/images.sh print-space`, the same that
  writes the checkout's `Dockerfile` from Dockerfile.build and Dockerfile.serve): the builder exports the
  weights and, with the Space secret VREYESAM_MODEL_KEY mounted, encrypts the graphs; a real-weights build
  without that secret stops at once. The server reads the same secret from its environment at run time.
- the sources the Dockerfile copies (pyproject.toml and the vreyesam/, runtime/ and export/ packages: their
  Python files and the page's files), never a weight, model, key, environment or cache, and `.dockerignore`;
- `README.md`: the Space's front matter (`sdk: docker`, `app_port: 7860`) and the publishing steps.

The Dockerfiles and the generator are not part of an installed package, so this needs a source checkout:
the one this package runs from (an editable install), or `--source`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGES = ("vreyesam", "runtime", "export")  # the folders the Dockerfile copies, with pyproject.toml
TOP_FILES = ("pyproject.toml", ".dockerignore")
# What may be copied from the package folders: sources and the page's files; nothing else gets in.
SOURCE_SUFFIXES = frozenset({".py", ".html", ".js", ".css", ".png"})
SKIPPED_FOLDERS = frozenset({"__pycache__"})  # and every folder whose name starts with "."
KEPT_ON_FORCE = ".git"  # a clone of the Space repository stays a clone
GENERATOR = Path(".ci") / "images.sh"


class SpaceError(Exception):
    """The folder cannot be written; the message is one line for the user."""


def default_source() -> Path:
    """The checkout this package was imported from (runtime/ sits at its root in a source tree)."""
    return Path(__file__).resolve().parents[2]


def check_checkout(source: Path) -> None:
    missing = [name for name in (*TOP_FILES, *PACKAGES, str(GENERATOR)) if not (source / name).exists()]
    if missing:
        raise SpaceError(f"{source} is not a source checkout of this project (no {missing[0]}); pass --source CHECKOUT")


def space_dockerfile(source: Path) -> str:
    """The Space's `Dockerfile`, from the checkout's generator."""
    done = subprocess.run(  # noqa: S603 - the checkout's own generator, by path
        ["bash", str(source / GENERATOR), "print-space"],  # noqa: S607 - bash from PATH, as `make` runs it
        cwd=source,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.startswith("# syntax="):
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SpaceError(f"the Space Dockerfile could not be generated: {reason}")
    return done.stdout


def source_files(source: Path) -> list[Path]:
    """The files of the package folders that go into the Space, relative to `source`, sorted."""
    files = []
    for package in PACKAGES:
        for path in sorted((source / package).rglob("*")):
            relative = path.relative_to(source)
            if any(part in SKIPPED_FOLDERS or part.startswith(".") for part in relative.parts):
                continue
            if path.is_file() and not path.is_symlink() and path.suffix in SOURCE_SUFFIXES:
                files.append(relative)
    return files


def space_readme(title: str) -> str:
    return README_TEMPLATE.replace("{title}", title)


def write_space(out_dir: Path, source: Path, *, title: str = "VREyeSAM", force: bool = False) -> list[Path]:
    """Write the Space folder to `out_dir` (new or empty; with `force`, everything but .git is replaced).

    Returns the files written, relative to `out_dir`. Staged beside `out_dir` first, so a failure leaves
    `out_dir` as it was.
    """
    check_checkout(source)
    if out_dir.exists() and not out_dir.is_dir():
        raise SpaceError(f"{out_dir} exists and is not a folder")
    existing = [entry for entry in out_dir.iterdir() if entry.name != KEPT_ON_FORCE] if out_dir.is_dir() else []
    if existing and not force:
        raise SpaceError(f"{out_dir} is not empty: pass --force to replace its contents (a .git folder is kept)")
    dockerfile = space_dockerfile(source)
    files = source_files(source)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", dir=out_dir.parent) as staging_name:
        staging = Path(staging_name)
        (staging / "Dockerfile").write_text(dockerfile, encoding="utf-8")
        (staging / "README.md").write_text(space_readme(title), encoding="utf-8")
        for relative in (*(Path(name) for name in TOP_FILES), *files):
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / relative, staging / relative)
        for entry in existing:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        out_dir.mkdir(exist_ok=True)
        for entry in staging.iterdir():
            entry.rename(out_dir / entry.name)
    return sorted([Path("Dockerfile"), Path("README.md"), *(Path(name) for name in TOP_FILES), *files])


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, metavar="DIR", help="folder to write (new or empty; see --force)")
    parser.add_argument("--source", type=Path, help="the source checkout to take it from (default: this one)")
    parser.add_argument("--title", default="VREyeSAM", help="the Space's title in its README (default VREyeSAM)")
    parser.add_argument("--force", action="store_true", help="replace DIR's contents, keeping a .git folder")


def run(args: argparse.Namespace) -> int:
    source = (args.source or default_source()).resolve()
    try:
        written = write_space(args.out, source, title=args.title, force=args.force)
    except (SpaceError, OSError, subprocess.TimeoutExpired) as exc:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"vreyesam space: error: {message}", file=sys.stderr)
        return 1
    print(f"wrote a Space of {len(written)} files to {args.out}; publishing steps: {args.out / 'README.md'}")
    return 0


README_TEMPLATE = """\
---
title: {title}
emoji: 👁️
colorFrom: indigo
colorTo: gray
sdk: docker
app_port: 7860
pinned: false
license: mit
short_description: Iris segmentation with SAM2, served without PyTorch
---

# {title}: iris segmentation in VR headset eye images

VREyeSAM is SAM2 (Hiera-Small) fine-tuned to segment the iris in off-axis eye images from VR headsets
(IJCB 2025). This Space builds the weights into verified ONNX graphs and serves them without PyTorch:
a page for people at `/`, and the API at `POST /predict` (`GET /readyz` names the model).

```bash
curl -s -X POST -H "content-type: image/png" --data-binary @eye.png "https://OWNER-NAME.hf.space/predict?outputs=mask"
```

## Publishing it safely

Anyone can pull the image of a public Space (its "Run with Docker" button shows how), so the image must
not hold the weights in plaintext, even when the weights repository is private. The build therefore
encrypts the ONNX graphs (AES-256-GCM) under a key from the Space secret `VREYESAM_MODEL_KEY`, mounted
only while exporting; the server reads the same secret from its environment when it starts. Without that
secret a build with real weights stops at once with one line, before installing anything.

1. Create a Space with the **Docker** SDK (any visibility).
2. In its *Settings → Variables and secrets*:
   - secret **`VREYESAM_MODEL_KEY`**: 32 random bytes as 64 hex characters, made for example with
     `python3 -c "import secrets; print(secrets.token_hex(32))"` (or `vreyesam export --new-key FILE`).
     Keep it only there: whoever holds it and the image can decrypt the weights.
   - secret **`HF_TOKEN`**: a read token, if the weights repository is private or gated.
   - variable **`WEIGHTS_SHA256`**: the SHA256 shown on the Hub page of the weights file
     (`devnagaich/VREyeSAM`, `VREyeSAM_uncertainity_best.torch`); the build refuses an unpinned file.
   - optional variable `WEIGHTS` (`hf://OWNER/REPO/FILE@REVISION`) for another checkpoint.
3. Push this folder to the Space repository:
   ```bash
   git clone https://huggingface.co/spaces/OWNER/NAME && vreyesam space NAME --force
   cd NAME && git add -A && git commit -m "VREyeSAM Space" && git push
   ```
4. The first build installs CPU PyTorch and exports the graphs (several minutes); then `/readyz` answers
   200 and the page is at the Space's address. The log says `encrypting the ONNX graphs` during the build.

A demo without the weights: set the variables `RANDOM_WEIGHTS=1` and `VREYESAM_ALLOW_RANDOM_WEIGHTS=1`
(the page then shows "demo: random weights, masks are meaningless"); the secret is optional for it.
The variable `MODEL_KEY_REQUIRED=0` lets real weights build without the key: only for a private Space.

What the encryption does not protect: the running Space holds the key and the decrypted graphs in its
memory; whoever can change the Space's settings or code can read both; the masks the API answers are the
model's output by design.
"""
