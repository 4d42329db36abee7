"""What one Serve replica or batch actor reserves from Ray, and the threads it runs inference on."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from vreyesam.runtime.settings import Settings, SettingsError, validate


def reserved(settings: Settings) -> dict[str, float]:
    """Ray's `num_cpus`/`num_gpus` for one model copy: GPUs only when the device is cuda (fractions share one).

    Ray hides the GPUs from an actor that reserved none, so `auto` resolves to the CPU there."""
    return {"num_cpus": settings.ray_cpus, "num_gpus": settings.ray_gpus if settings.device == "cuda" else 0.0}


def actor_settings(settings: Settings) -> Settings:
    """One model copy's settings: with VREYESAM_THREADS unset, one inference thread per reserved CPU, not one
    per core of the node (which would oversubscribe a node holding several copies)."""
    if settings.threads:
        return settings
    return replace(settings, threads=max(1, int(settings.ray_cpus)))


def without_secrets(env_vars: dict[str, str]) -> dict[str, str]:
    """Settings as variables, less the model key: Ray stores actor options and arguments in its state API.
    An encrypted model's key reaches a node through VREYESAM_MODEL_KEY_FILE (or its own environment)."""
    return {name: value for name, value in env_vars.items() if name != "VREYESAM_MODEL_KEY"}


def add_resource_flags(parser: argparse.ArgumentParser) -> None:
    """--ray-cpus and --ray-gpus: what each model copy reserves (over VREYESAM_RAY_CPUS, VREYESAM_RAY_GPUS)."""
    parser.add_argument("--ray-cpus", type=float, help="CPUs per model copy (env VREYESAM_RAY_CPUS, default 1)")
    parser.add_argument(
        "--ray-gpus", type=float, help="GPUs per model copy with --device cuda (env VREYESAM_RAY_GPUS, default 1)"
    )


def with_resource_flags(settings: Settings, args: argparse.Namespace, **overrides: Any) -> Settings:
    """The settings with the resource flags (and `overrides`) applied, validated like the environment's."""
    settings = settings.with_overrides(ray_cpus=args.ray_cpus, ray_gpus=args.ray_gpus, **overrides)
    validate(settings)
    if settings.ray_cpus <= 0 or settings.ray_gpus <= 0:
        raise SettingsError("--ray-cpus and --ray-gpus must be above 0")
    return settings
