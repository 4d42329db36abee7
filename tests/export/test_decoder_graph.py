"""The regrouped decoder (`ImageSide` + `DecoderGraph`) against Meta's mask decoder flow, in torch.

The end-to-end parity tests hold the exported graphs to Meta's predictor on random weights, whose
LayerNorms are the identity (weight 1, bias 0) and whose logits are tiny. Here every parameter of the
prompt encoder and mask decoder is perturbed first, so a scale, a bias or a layout the regrouping got wrong
cannot hide behind an identity or a near-zero output.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import RANDOM_SEED
from vreyesam.export.decoder_graph import DecoderGraph, ImageSide
from vreyesam.export.graphs import FEATURE_SHAPES, PromptDecoder
from vreyesam.export.model import build_random
from vreyesam.runtime.manifest import DECODER_IMAGE_INPUTS


@pytest.fixture(scope="module")
def perturbed_sam() -> torch.nn.Module:
    sam = build_random(RANDOM_SEED).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in (sam.sam_prompt_encoder, sam.sam_mask_decoder):
            for parameter in module.parameters():
                parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return sam


def _features(seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    names = ("image_embed", "high_res_feats_0", "high_res_feats_1")
    return tuple(torch.randn(1, *FEATURE_SHAPES[name], generator=generator) for name in names)


@pytest.mark.parametrize("prompts", [1, 5])
def test_regrouped_decoder_equals_meta_flow(perturbed_sam: torch.nn.Module, prompts: int) -> None:
    features = _features(seed=prompts)
    generator = torch.Generator().manual_seed(prompts)
    coords = torch.randint(0, 1024, (prompts, 1, 2), generator=generator).float()
    labels = torch.ones(prompts, 1, dtype=torch.int32)
    with torch.no_grad():
        want_logits, want_scores = PromptDecoder(perturbed_sam)(*features, coords, labels)
        image_side = ImageSide(perturbed_sam)(*features)
        logits, scores = DecoderGraph(perturbed_sam)(*image_side, coords, labels)
    assert logits.shape == want_logits.shape == (prompts, 256, 256)
    scale = float(want_logits.abs().max())
    assert scale > 1.0  # confident enough that a wrong term would show
    assert float((logits - want_logits).abs().max()) / scale <= 1e-5
    np.testing.assert_allclose(scores.numpy(), want_scores.numpy(), rtol=0, atol=1e-5)


def test_image_side_shapes_are_the_contract(perturbed_sam: torch.nn.Module) -> None:
    with torch.no_grad():
        image_side = ImageSide(perturbed_sam)(*_features(seed=0))
    # ImageSide's outputs are the decoder's image-side inputs, in order.
    assert [tuple(t.shape[1:]) for t in image_side] == [FEATURE_SHAPES[name] for name in DECODER_IMAGE_INPUTS]
