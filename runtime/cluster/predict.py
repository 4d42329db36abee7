"""`vreyesam predict --ray`: the batch command on a Ray cluster, with the same outputs and summary.csv.

Everything but the segmenting is the local command's (`tools.predict`): the inputs found, the --resume
decisions, the atomic writes, the summary, the progress bar, the messages and exit codes. The segmenting
runs on an actor pool (`batch`), one model copy per actor: VREYESAM_RAY_ACTORS of them (`--actors`), or as
many as the cluster's CPUs (GPUs with --device cuda) hold at VREYESAM_RAY_CPUS (VREYESAM_RAY_GPUS) each.
"""

from __future__ import annotations

import argparse
import logging
from contextlib import closing

from vreyesam.runtime.cluster.resources import add_resource_flags, with_resource_flags, without_secrets
from vreyesam.runtime.settings import SettingsError
from vreyesam.runtime.tools import predict as plain
from vreyesam.runtime.tools.inputs import InputFile, UsageError
from vreyesam.runtime.tools.outputs import Segmented


def configure(parser: argparse.ArgumentParser) -> None:
    plain.configure(parser)
    parser.add_argument("--actors", type=int, help="model copies in the pool (env VREYESAM_RAY_ACTORS; default: fit)")
    add_resource_flags(parser)


def run(args: argparse.Namespace) -> int:
    try:
        settings, inputs, batch = plain.prepare(args)
        settings = with_resource_flags(settings, args, ray_actors=args.actors)
    except (SettingsError, UsageError) as exc:
        plain.error(str(exc))
        return 2
    import ray

    from vreyesam.runtime.cluster.batch import segment_on_ray
    from vreyesam.runtime.cluster.connect import ClusterError, connected, startup_refusal

    planned = batch.plan(inputs)
    todo = [item for item, settled in planned if settled is None]
    env_vars = without_secrets(settings.environment())
    try:
        with (
            connected(args.ray_address, settings, log_to_driver=False, logging_level=logging.WARNING),
            closing(segment_on_ray(todo, settings, env_vars, batch.request)) as results,
        ):

            def segment(_: InputFile) -> Segmented:
                return next(results)  # the results come in the order of `todo`, which is `planned`'s

            return plain.finish(batch, len(inputs), lambda: plain.run_batch(batch, planned, segment))
    except ClusterError as exc:
        plain.error(str(exc))
    except ray.exceptions.RayError as exc:
        refusal = startup_refusal(exc)
        plain.error(
            f"the model cannot be loaded: {refusal}" if refusal else f"the cluster job failed ({type(exc).__name__})"
        )
    return 1
