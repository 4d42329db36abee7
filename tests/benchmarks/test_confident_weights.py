"""The confident-logits workload's weights: a strict SAM2 Hiera-S state dict, the random initialisation of
the test model but for the trained prompt encoder and mask decoder, its training loss falling."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import HAS_TORCH

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the workload's weights are made in the builder environment")


def test_only_the_prompt_side_is_trained_and_the_export_accepts_it(tmp_path: Path) -> None:
    import torch

    from benchmarks import confident_weights
    from vreyesam.export.model import build_random, load_state_dict_strict

    sam = confident_weights.build_random(0)
    reference = confident_weights.TorchReference(sam, confident_weights.Preprocessing())
    samples = confident_weights.training_set(1, reference.prep)
    features = [reference.features(fitted) for fitted, _ in samples]
    figures = confident_weights.train(sam, reference, samples, features, steps=6, prompts=4, rate=1e-3)
    assert figures["last_loss"] < figures["first_loss"]
    out = tmp_path / "confident.pt"
    torch.save(sam.state_dict(), out)
    loaded = torch.load(out, weights_only=True)
    load_state_dict_strict(build_random(0), loaded)  # what `vreyesam export --weights` checks
    original = build_random(0).state_dict()
    changed = {name for name, tensor in loaded.items() if not torch.equal(tensor, original[name])}
    assert changed and all(name.startswith(confident_weights.TRAINED_PREFIXES) for name in changed)
