"""The Ray Data job behind `vreyesam predict --ray`: an actor pool segments, the driver alone writes.

Each actor loads and self-tests the model once (its constructor), then runs the local command's own
per-image work, `tools.outputs.segment_file`: the file's bytes through the one per-image function
(`model.segment`: decoded, segmented, rendered to PNG bytes), summarised in a row. Those come back to the
driver, which records them with the local command's `Batch` (atomic files, summary.csv) in input order
(Ray Data's `preserve_order`): the outputs and the summary are the local command's, byte for byte.

When a worker node dies, Ray Data restarts its actors and retries their tasks, and what only that node held
is recomputed from lineage. The ordered stream yields exactly one result per input and does not move past
a lost one, and only the driver writes: no input is written twice, none is lost. The inputs and the model
directory must be readable at the same path on every node (a shared volume); outputs need only the driver's.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray
import ray.data

from vreyesam.runtime.cluster.connect import StartupRefused
from vreyesam.runtime.cluster.resources import actor_settings, reserved
from vreyesam.runtime.model.artifacts import ModelLoadError
from vreyesam.runtime.model.segment import SegmentRequest
from vreyesam.runtime.settings import Settings, load_settings
from vreyesam.runtime.tools.inputs import InputFile
from vreyesam.runtime.tools.outputs import KINDS, OVERLAY, Segmented, segment_file
from vreyesam.runtime.tools.predict import load_model
from vreyesam.runtime.vocabulary import OutputKind

# A block is one scheduling unit (one actor call, retried whole); a few images per block at most keeps a
# lost node's rework and the ordered stream's wait small, without a task per image for huge runs.
MAX_BLOCKS = 20_000
_ALL_KINDS: tuple[OutputKind, ...] = (*KINDS, OVERLAY)


def _column(kind: OutputKind) -> str:
    return f"png_{kind}"


class SegmentActor:
    """One model copy in the pool: loaded once, then one input per call."""

    def __init__(self, env_vars: dict[str, str], request: SegmentRequest) -> None:
        # The driver's settings over the node's environment (which may hold what the driver did not send).
        settings = actor_settings(load_settings({**os.environ, **env_vars}))
        try:
            self._segmenter = load_model(settings)
        except ModelLoadError as exc:
            raise StartupRefused(str(exc)) from None
        self._request, self._limits = request, settings.decode_limits

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        item = InputFile(Path(row["path"]), Path(row["relative"]))
        result = segment_file(self._segmenter, item, self._request, self._limits)
        pngs = {_column(kind): result.pngs.get(kind, b"") for kind in _ALL_KINDS}
        return {"row": json.dumps(result.row), "seconds": result.seconds, **pngs}


def actor_count(settings: Settings, inputs: int) -> int:
    """VREYESAM_RAY_ACTORS, else as many model copies as the cluster's CPUs (or GPUs) hold; at most one per input."""
    if settings.ray_actors:
        return max(1, min(settings.ray_actors, inputs))
    need = reserved(settings)
    total = ray.cluster_resources()
    fits = total.get("GPU", 0.0) / need["num_gpus"] if need["num_gpus"] else total.get("CPU", 0.0) / need["num_cpus"]
    return max(1, min(int(fits), inputs))


def segment_on_ray(
    todo: list[InputFile], settings: Settings, env_vars: dict[str, str], request: SegmentRequest
) -> Iterator[Segmented]:
    """The results of `todo`, in its order, segmented by a pool of actors (call inside `connect.connected`)."""
    if not todo:
        return
    # The command reports for itself, one line each (a failed job too): Ray Data's own log would add tracebacks.
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the driver records in input order, as locally
    context.enable_progress_bars = False  # the command's own progress bar counts images
    # Ray Data's default scheduling of the actors is SPREAD: one copy per node before two on one, so a lost
    # node costs the least; and an actor whose model fails to load ends the job at once.
    items = [{"path": str(item.path.resolve()), "relative": item.relative.as_posix()} for item in todo]
    dataset = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
    segmented = dataset.map(
        SegmentActor,
        fn_constructor_kwargs={"env_vars": env_vars, "request": request},
        compute=ray.data.ActorPoolStrategy(size=actor_count(settings, len(todo))),
        **reserved(settings),
    )
    for out in segmented.iter_rows():
        pngs = {kind: out[_column(kind)] for kind in _ALL_KINDS if out[_column(kind)]}
        yield Segmented(row=json.loads(out["row"]), pngs=pngs, seconds=float(out["seconds"]))
