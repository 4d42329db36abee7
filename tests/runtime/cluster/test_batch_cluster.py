"""`vreyesam predict --ray` on a real two-node Ray cluster: the local command's files, and a lost node.

The cluster (a head and a worker, each its own raylet) is started once for the module; the local command's
outputs over the same folder are the reference. The commands run as separate processes joining the
cluster as drivers, as a user would run them.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

pytest.importorskip("ray")

from tests.runtime.cluster.ray_cluster import TwoNodes, two_node_cluster
from tests.server_harness import vreyesam_env
from vreyesam.runtime.tools.summary import TIMED_STAGES
from vreyesam.runtime.tools.synth import generate

pytestmark = pytest.mark.ray

FAST = ["--points", "3", "--seed", "7", "--device", "cpu", "--precision", "fp32", "--allow-random-weights"]
IMAGES = 8
TIMINGS = {f"{stage}_ms" for stage in TIMED_STAGES}  # wall times: the one thing that differs run to run


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """IMAGES synthetic eyes (160x120 PNG) in in/; in/broken/ holds the same plus a file that is not an image."""
    root = tmp_path_factory.mktemp("batch") / "in"
    (root / "broken").mkdir(parents=True)
    for index, (_, image, _) in enumerate(generate(seed=11, n=IMAGES, width=160, height=120)):
        ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        assert ok
        (root / f"eye{index:02d}.png").write_bytes(data.tobytes())
        if index < 3:
            (root / "broken" / f"eye{index:02d}.png").write_bytes(data.tobytes())
    (root / "broken" / "notes.png").write_text("not an image\n")
    return root


def _predict(
    *args: str | Path, env: dict[str, str] | None = None, timeout_s: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vreyesam", "predict", *map(str, args)],
        env=vreyesam_env(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.fixture(scope="module")
def local(images: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local command's outputs over in/ and in/broken/ (the reference)."""
    out = tmp_path_factory.mktemp("local")
    for name, folder in (("all", images), ("broken", images / "broken")):
        result = _predict(folder, "--out", out / name, "--model", model_dir, *FAST)
        assert result.returncode == (1 if name == "broken" else 0), result.stderr
    return out


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    # The head has room for a second model copy, so the job can go on when the worker is lost.
    with two_node_cluster(tmp_path_factory.mktemp("ray"), head_cpus=2, worker_cpus=1) as cluster:
        yield cluster


def rows(out: Path) -> list[dict[str, str]]:
    with (out / "summary.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def without_timings(table: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{key: value for key, value in row.items() if key not in TIMINGS} for row in table]


def files(out: Path) -> dict[str, bytes]:
    return {path.relative_to(out).as_posix(): path.read_bytes() for path in sorted(out.rglob("*.png"))}


def test_the_job_writes_the_local_commands_files_byte_for_byte(
    nodes: TwoNodes, images: Path, local: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _predict(
        images / "broken", "--out", out, "--model", model_dir, *FAST, "--ray", "--actors", "2", env=nodes.env
    )
    reference = _predict(images / "broken", "--out", tmp_path / "again", "--model", model_dir, *FAST)
    assert result.returncode == 1, result.stderr  # a bad file, reported and skipped, as locally
    assert result.stdout.split(";")[0] == reference.stdout.split(";")[0] == "4 images: 3 ok, 0 skipped, 1 failed"
    expected = f"vreyesam predict: {images / 'broken' / 'notes.png'}: unsupported image format"
    assert [line for line in result.stderr.splitlines() if "notes.png" in line] == [
        line for line in reference.stderr.splitlines() if line.startswith(expected)
    ]
    assert "Traceback" not in result.stderr
    assert files(out) == files(local / "broken") and len(files(out)) == 9
    assert without_timings(rows(out)) == without_timings(rows(local / "broken"))
    assert not list(out.rglob("*.tmp"))


def test_resume_on_the_cluster_segments_only_what_is_missing(
    nodes: TwoNodes, images: Path, local: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = _predict(images / "broken", "--out", out, "--model", model_dir, *FAST, "--ray", env=nodes.env)
    assert first.returncode == 1, first.stderr
    (out / "probability" / "eye01.png").unlink()
    again = _predict(images / "broken", "--out", out, "--model", model_dir, *FAST, "--ray", "--resume", env=nodes.env)
    assert again.returncode == 1, again.stderr
    assert again.stdout.startswith("4 images: 1 ok, 2 skipped, 1 failed")
    assert files(out) == files(local / "broken")
    assert [row["status"] for row in rows(out)] == ["skipped", "ok", "skipped", "failed"]


def test_a_model_the_actors_cannot_load_is_one_line_and_exit_1(
    nodes: TwoNodes, images: Path, model_dir: Path, tmp_path: Path
) -> None:
    tampered = tmp_path / "model"
    shutil.copytree(model_dir, tampered)
    golden = tampered / "golden.npz"
    golden.write_bytes(golden.read_bytes() + b"\0")  # no longer the file the manifest pins
    result = _predict(images / "broken", "--out", tmp_path / "out", "--model", tampered, *FAST, "--ray", env=nodes.env)
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("vreyesam predict: error:")]
    assert len(errors) == 1 and errors[0].startswith("vreyesam predict: error: the model cannot be loaded: "), (
        result.stderr
    )
    assert str(tampered) not in errors[0] and "Traceback" not in result.stderr


def _worker_pids(raylet_pid: int) -> list[int]:
    """The processes the raylet started (its workers, the actors among them)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == raylet_pid:
            found.append(int(stat.parent.name))
    return found


def _is_model_actor(pid: int) -> bool:
    try:
        return b"SegmentActor" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class InodeWatch(threading.Thread):
    """Samples the inode of every output file while the job runs: a file written twice gets a second one."""

    def __init__(self, out: Path) -> None:
        super().__init__(daemon=True)
        self.out, self.seen, self.stop = out, dict[str, set[int]](), threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for path in self.out.rglob("*.png"):
                try:
                    self.seen.setdefault(path.relative_to(self.out).as_posix(), set()).add(path.stat().st_ino)
                except OSError:
                    continue
            time.sleep(0.02)


def test_killing_the_worker_node_mid_job_loses_and_duplicates_nothing(
    nodes: TwoNodes, images: Path, local: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "vreyesam", "predict", str(images), "--out", str(out), "--model", str(model_dir)]
    job = subprocess.Popen(
        [*command, *FAST, "--ray", "--actors", "2"],
        env=vreyesam_env(nodes.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watch = InodeWatch(out)
    watch.start()
    raylet = nodes.worker.all_processes["raylet"][0].process.pid
    try:
        deadline = time.monotonic() + 300
        # Mid-job: the worker node holds a loaded model copy and some images are written, not all.
        while len(list((out / "binary").glob("*.png")) if (out / "binary").is_dir() else []) < 2:
            assert job.poll() is None and time.monotonic() < deadline, "the job ended or stalled before the kill"
            time.sleep(0.05)
        assert any(_is_model_actor(pid) for pid in _worker_pids(raylet)), "no model copy ran on the worker node"
        written_before = len(list((out / "binary").glob("*.png")))
        nodes.kill_worker()
        stdout, stderr = job.communicate(timeout=400)
    finally:
        watch.stop.set()
        watch.join(timeout=5)
        if job.poll() is None:
            job.kill()
            job.wait(timeout=30)
        nodes.add_worker()
    assert written_before < IMAGES, "the job ended before the node was lost"
    assert job.returncode == 0, stderr[-3000:]
    # Ray's core also reports the lost node on the driver's terminal, before and after the command's line.
    summary = [line for line in stdout.splitlines() if line.startswith(f"{IMAGES} images:")]
    assert len(summary) == 1 and summary[0].startswith(f"{IMAGES} images: {IMAGES} ok, 0 skipped, 0 failed"), stdout
    assert files(out) == files(local / "all")  # every image, byte for byte
    table = rows(out)
    assert [row["input"] for row in table] == [f"eye{index:02d}.png" for index in range(IMAGES)]
    assert {row["status"] for row in table} == {"ok"}
    assert all(len(inodes) == 1 for inodes in watch.seen.values()), watch.seen  # none written twice
    assert not list(out.rglob("*.tmp"))
