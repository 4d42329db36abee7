"""The cluster room's guard: no Ray folder outside the tests' own scratch is created or written to.

A cluster that finds Ray's default folder (/tmp/ray) left by earlier work writes its address file there and
passes; on a fresh machine the same cluster fails (FileNotFoundError). So every folder Ray would use when
nothing points it elsewhere is looked at before the first test of this folder, after each test and at the
end of the session, and the run fails, naming what appeared or changed, if any of them did: /tmp/ray,
<the temp folder>/ray and Ray's own default for this run's environment
(`ray._common.utils.get_default_ray_temp_dir()`: RAY_TMPDIR, else TMPDIR, else /tmp, + "/ray"). The
clusters of tests/runtime/cluster/ray_cluster.py keep everything in the folder each test gives them, so none
of these is touched.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# entry name -> modification time (ns), "." the folder's own (an entry made and removed again changes it);
# None: the folder does not exist
Snapshot = dict[str, int] | None


def ray_default_folders() -> set[Path]:
    """The folders Ray writes to when nothing points it elsewhere, for this process's environment."""
    folders = {Path("/tmp/ray"), Path(tempfile.gettempdir()) / "ray"}  # watched, never written
    if importlib.util.find_spec("ray") is not None:
        from ray._common.utils import get_default_ray_temp_dir

        folders.add(Path(get_default_ray_temp_dir()))
    return folders


def snapshot(folder: Path) -> Snapshot:
    if not folder.is_dir():
        return None
    return {".": folder.stat().st_mtime_ns} | {entry.name: entry.lstat().st_mtime_ns for entry in folder.iterdir()}


def changes(folder: Path, before: Snapshot, after: Snapshot, *, churn: bool = True) -> list[str]:
    if after is None:
        return []
    if before is None:
        return [f"{folder} was created, holding {sorted(after.keys() - {'.'}) or 'nothing'}"]
    found = [f"{folder / name} appeared" for name in sorted(after.keys() - before.keys())]
    found += [f"{folder / name} went away" for name in sorted(before.keys() - after.keys())]
    found += [
        f"{folder / name} was written"
        for name in sorted(before.keys() & after.keys() - {"."})
        if after[name] != before[name]
    ]
    if churn and not found and after["."] != before["."]:
        found.append(f"{folder} had an entry made and removed again (Ray's address file lives as long as a cluster)")
    return found


class Watch:
    """The default folders as they were before the first test, and what was reported about them since."""

    def __init__(self) -> None:
        self.folders = sorted(ray_default_folders())
        self.before = {folder: snapshot(folder) for folder in self.folders}
        self.reported: list[str] = []
        self.reported_folders: set[Path] = set()

    def news(self) -> list[str]:
        new = []
        for folder in self.folders:
            # once a folder was reported, its entry going away again (a cluster shut down) is no news
            found = changes(folder, self.before[folder], snapshot(folder), churn=folder not in self.reported_folders)
            new += [line for line in found if line not in self.reported]
            self.reported_folders.update([folder] if found else [])
        self.reported += new
        return new


def fail(found: list[str]) -> None:
    pytest.fail(
        "Ray wrote outside the tests' scratch (a cluster must keep every file, its address file "
        "ray_current_cluster included, in the folder its test gives it; see ray_cluster.py):\n  " + "\n  ".join(found),
        pytrace=False,
    )


@pytest.fixture(scope="session")
def _ray_watch() -> Iterator[Watch]:
    watch = Watch()
    yield watch
    reported_earlier = bool(watch.reported)  # then the run has failed already
    found = watch.news()  # after the last cluster shut down: what no test's check saw
    if found and not reported_earlier:
        fail(found)


@pytest.fixture(autouse=True)
def _ray_stays_in_the_scratch(_ray_watch: Watch) -> Iterator[None]:
    """Checked after every test of the folder (a cluster's address file exists while its module runs), each
    finding reported once; and at the end of the session."""
    yield
    found = _ray_watch.news()
    if found:
        fail(found)
