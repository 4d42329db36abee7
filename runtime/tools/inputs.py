"""The inputs of `vreyesam predict`: image files and folders of images, in a stable order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vreyesam.runtime.vocabulary import IMAGE_SUFFIXES


class UsageError(Exception):
    """Nothing can be started; the message is printed as one line and the exit code is 2."""


@dataclass(frozen=True)
class InputFile:
    path: Path  # where to read it: the INPUT joined with `relative`
    relative: Path  # relative to the INPUT it came from; the file name for a file INPUT

    @property
    def stem(self) -> str:
        return self.path.stem


def find_inputs(inputs: Sequence[Path], recursive: bool = False, exclude: Path | None = None) -> list[InputFile]:
    """Candidate images of the INPUTs, in order: a file as given, a folder's images sorted by path.

    A folder's files are chosen by suffix (IMAGE_SUFFIXES, any case), leaving out hidden files and folders
    and anything under `exclude` (the output folder, which a recursive walk would otherwise read back).
    A file named explicitly is taken whatever its suffix: decoding judges it by its bytes.
    Raises UsageError for an INPUT that does not exist.
    """
    excluded = exclude.resolve() if exclude is not None else None
    found: list[InputFile] = []
    for given in map(Path, inputs):
        if given.is_dir():
            found += _folder_images(given, recursive, excluded)
        elif given.is_file():
            found.append(InputFile(given, Path(given.name)))
        else:
            raise UsageError(f"input {given} does not exist")
    return found


def _folder_images(folder: Path, recursive: bool, exclude: Path | None) -> list[InputFile]:
    images = []
    for path in folder.rglob("*") if recursive else folder.iterdir():
        relative = path.relative_to(folder)
        if path.suffix.lower() not in IMAGE_SUFFIXES or any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and not (exclude is not None and path.resolve().is_relative_to(exclude)):
            images.append(InputFile(path, relative))
    return sorted(images, key=lambda image: image.relative.as_posix())
