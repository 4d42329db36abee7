"""The two exported graphs: one nn.Module wrapper each, and the ONNX export of both.

`ImageEncoder` and `PromptDecoder` follow Meta's flow exactly (`SAM2ImagePredictor.set_image`, then
`SAM2Base.sam_mask_decoder` with multimask output); the fidelity gate's torch side runs them.

The exported graphs move all per-image work into the encoder graph so the per-prompt decoder stays cheap:
`EncoderGraph` is `ImageEncoder` plus the part of the prompt decoder that does not depend on the prompt
(`decoder_graph.ImageSide`: the image tokens, the first block's projections of them, the upscaling's skip
features, each in the layout the decoder reads). `decoder_graph.DecoderGraph` is the rest for any number N
of single-point prompts, regrouped so that it is matrix work rather than layout glue, returning only what
the VREyeSAM procedure reads: the first multimask output and its score. The gate proves the split equal to
Meta's flow.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vreyesam.export.decoder_graph import DecoderGraph, ImageSide
from vreyesam.runtime.manifest import (
    DECODER_INPUTS,
    DECODER_LABELS,
    DECODER_OUTPUTS,
    DECODER_POINTS,
    DECODER_PROMPT_AXIS,
    ENCODER_BATCH_AXIS,
    ENCODER_OUTPUTS,
)

ENCODER_INPUTS = ("image",)
IMAGE_SIZE = 1024  # SAM2's square model input
# Per-image tensor shapes (batch axis left out) at SAM2's 1024x1024 input: feature maps of strides 16, 4, 8,
# then the decoder's image-side tensors (8 heads of 16 channels; see decoder_graph.ImageSide).
FEATURE_SHAPES = {
    "image_embed": (256, 64, 64),
    "high_res_feats_0": (32, 256, 256),
    "high_res_feats_1": (64, 128, 128),
    "image_tokens": (4096, 256),
    "token_to_image_keys": (8, 16, 4096),
    "token_to_image_values": (8, 4096, 16),
    "image_to_token_queries": (4096, 128),
    "upscale_skip_0": (4096, 4, 128),
    "upscale_skip_1": (4096, 256),
}


class ImageEncoder(nn.Module):
    """Bx3x1024x1024 normalised image -> image_embed Bx256x64x64, high-res feats Bx32x256x256, Bx64x128x128."""

    def __init__(self, sam_model: nn.Module) -> None:
        super().__init__()
        self.model = sam_model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        backbone_out = self.model.forward_image(image)
        _, vision_feats, _, _ = self.model._prepare_backbone_features(backbone_out)
        if self.model.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + self.model.no_mem_embed
        batch = image.shape[0]
        sizes = [
            FEATURE_SHAPES["high_res_feats_0"],
            FEATURE_SHAPES["high_res_feats_1"],
            FEATURE_SHAPES["image_embed"],
        ]
        # HWxBxC -> BxCxHxW, as SAM2ImagePredictor.set_image reshapes them.
        feats = [feat.permute(1, 2, 0).reshape(batch, *size) for feat, size in zip(vision_feats, sizes, strict=True)]
        return feats[2], feats[0], feats[1]


class PromptDecoder(nn.Module):
    """One image's features + N single-point prompts -> first multimask logits Nx256x256 and scores N.

    point_coords: Nx1x2 float (x, y) in the 1024x1024 model frame; point_labels: Nx1 int32 (1 = foreground).
    """

    def __init__(self, sam_model: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder = sam_model.sam_prompt_encoder
        self.mask_decoder = sam_model.sam_mask_decoder

    def forward(
        self,
        image_embed: torch.Tensor,
        high_res_feats_0: torch.Tensor,
        high_res_feats_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sparse, dense = self.prompt_encoder(points=(point_coords, point_labels), boxes=None, masks=None)
        low_res_masks, iou_predictions, _, _ = self.mask_decoder(
            image_embeddings=image_embed,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
            repeat_image=True,
            high_res_features=[high_res_feats_0, high_res_feats_1],
        )
        return low_res_masks[:, 0], iou_predictions[:, 0]


@contextmanager
def _constant_position_embedding(sam_model: nn.Module, image_size: int) -> Iterator[None]:
    """Trace Hiera's positional embedding as one precomputed constant instead of a bicubic `Resize` + `Tile`.

    Its inputs are weights and its size is fixed by the 1024x1024 input, so the value is a constant; left as
    a graph, every engine must fold a bicubic resize at load (OpenVINO's CPU plugin took ~100 s on it).
    The value is the one torch computes, and the trunk is restored afterwards (the gate runs torch).
    """
    trunk = sam_model.image_encoder.trunk
    with torch.no_grad():
        grid = trunk.patch_embed(torch.zeros(1, 3, image_size, image_size)).shape[1:3]
        position_embedding = trunk._get_pos_embed(tuple(grid))
    trunk._get_pos_embed = lambda hw: position_embedding
    try:
        yield
    finally:
        del trunk._get_pos_embed


class EncoderGraph(nn.Module):
    """The exported encoder: `ImageEncoder`'s three outputs, then `ImageSide`'s six."""

    def __init__(self, sam_model: nn.Module) -> None:
        super().__init__()
        self.image_encoder = ImageEncoder(sam_model)
        self.image_side = ImageSide(sam_model)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        embed, feats_0, feats_1 = self.image_encoder(image)
        return (embed, feats_0, feats_1, *self.image_side(embed, feats_0, feats_1))


@dataclass(frozen=True)
class ExportedGraphs:
    encoder: Path
    decoder: Path


def _example_inputs(n_prompts: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    feats = [torch.randn(1, *FEATURE_SHAPES[name], generator=generator) for name in DECODER_INPUTS[:-2]]
    coords = torch.randint(0, IMAGE_SIZE, (n_prompts, 1, 2), generator=generator).float()
    labels = torch.ones(n_prompts, 1, dtype=torch.int32)
    return (*feats, coords, labels)


def export_graphs(sam_model: nn.Module, out_dir: Path, opset: int) -> ExportedGraphs:
    """Trace both wrappers to ONNX (TorchScript exporter: its graphs are verified against torch here)."""
    encoder_path = out_dir / "encoder.onnx"
    decoder_path = out_dir / "decoder.onnx"
    with torch.no_grad(), warnings.catch_warnings(), _constant_position_embedding(sam_model, IMAGE_SIZE):
        # Known and reviewed: the legacy exporter's (and its internals') deprecation notices, and tracer
        # notes about Python branches on shapes fixed at 1024x1024 input (the gate checks the traced graph).
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            EncoderGraph(sam_model).eval(),
            (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),),
            str(encoder_path),
            input_names=list(ENCODER_INPUTS),
            output_names=list(ENCODER_OUTPUTS),
            dynamic_axes={name: {0: ENCODER_BATCH_AXIS} for name in (*ENCODER_INPUTS, *ENCODER_OUTPUTS)},
            opset_version=opset,
            dynamo=False,
        )
        # Traced with several prompts so that no prompt count is baked into the graph.
        torch.onnx.export(
            DecoderGraph(sam_model).eval(),
            _example_inputs(n_prompts=3),
            str(decoder_path),
            input_names=list(DECODER_INPUTS),
            output_names=list(DECODER_OUTPUTS),
            dynamic_axes={
                name: {0: DECODER_PROMPT_AXIS} for name in (DECODER_POINTS, DECODER_LABELS, *DECODER_OUTPUTS)
            },
            opset_version=opset,
            dynamo=False,
        )
    return ExportedGraphs(encoder=encoder_path, decoder=decoder_path)
