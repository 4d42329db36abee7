"""Where a test cluster's files go, checked against the installed Ray without starting one (fast).

Ray's address file follows `RAY_TMPDIR` (ray._common.utils.get_ray_address_file(None)), not the cluster's
`temp_dir`: ray_cluster.py sets one to the other and makes the folder. If a Ray release reads another
variable, or this run's scratch is too deep for Ray's sockets (AF_UNIX), it shows here, before the slow
cluster tests start.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("ray")

from ray._common.utils import get_default_ray_temp_dir, get_ray_address_file

from tests.runtime.cluster.ray_cluster import AF_UNIX_PATH_MAX, node_sockets, prepare_folder, ray_environment


def test_the_address_file_goes_to_the_clusters_own_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = prepare_folder(tmp_path / "cluster")
    for name, value in ray_environment(folder).items():
        monkeypatch.setenv(name, value)
    address_file = Path(get_ray_address_file(None))
    assert address_file.parent == Path(get_default_ray_temp_dir()) == folder / "ray"
    assert address_file.parent.is_dir()  # write_ray_address opens the file without making its folder


def test_a_folder_too_deep_for_the_sockets_is_refused_naming_the_limit(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * (AF_UNIX_PATH_MAX - len(os.fsencode(tmp_path))))
    with pytest.raises(OSError, match=f"AF_UNIX allows at most {AF_UNIX_PATH_MAX}"):
        node_sockets(deep, 0)


def test_this_runs_clusters_fit_their_sockets(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The cluster tests' folders (tmp_path_factory.mktemp("ray")) leave room for Ray's socket paths."""
    for path in node_sockets(prepare_folder(tmp_path_factory.mktemp("ray")), 99).values():
        assert len(os.fsencode(path)) <= AF_UNIX_PATH_MAX
