"""The confident-logits workload's weights: a strict SAM2 Hiera-S state dict, the random initialisation of
the test model but for the trained neck, prompt encoder and mask decoder, its training loss falling, and
the replayed trunk giving the encoder's own features."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import HAS_TORCH

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the workload's weights are made in the builder environment")


def test_only_the_prompt_side_is_trained_and_the_export_accepts_it(tmp_path: Path) -> None:
    import torch

    from benchmarks import confident_weights
    from vreyesam.export.model import build_random, load_state_dict_strict

    sam = build_random(0)
    trainer = confident_weights.Trainer(sam, confident_weights.training_set(1, confident_weights.Preprocessing()))
    replayed = trainer.features(0)
    whole = trainer.reference.features(trainer.samples[0][0])
    assert all(torch.equal(a, b) for a, b in zip(replayed, whole, strict=True))
    figures = trainer.train(steps=6, prompts=4, rate=1e-3, neck=True)
    assert figures["last_loss"] < figures["first_loss"]
    out = tmp_path / "confident.pt"
    torch.save(sam.state_dict(), out)
    loaded = torch.load(out, weights_only=True)
    load_state_dict_strict(build_random(0), loaded)  # what `vreyesam export --weights` checks
    original = build_random(0).state_dict()
    changed = {name for name, tensor in loaded.items() if not torch.equal(tensor, original[name])}
    trained = (*confident_weights.DECODER_PREFIXES, confident_weights.NECK_PREFIX)
    assert changed and all(name.startswith(trained) for name in changed)
    assert any(name.startswith(confident_weights.NECK_PREFIX) for name in changed)
