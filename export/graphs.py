"""The two exported graphs: one nn.Module wrapper each, and the ONNX export of both.

`ImageEncoder` and `PromptDecoder` follow Meta's flow exactly (`SAM2ImagePredictor.set_image`, then
`SAM2Base.sam_mask_decoder` with multimask output); the fidelity gate's torch side runs them.

The exported graphs move all per-image work into the encoder graph so the per-prompt decoder stays cheap:
`EncoderGraph` is `ImageEncoder` plus the part of the prompt decoder that does not depend on the prompt
(the image tokens with the no-mask embedding added, and the three projections of them that the
transformer's first block computes before it mixes in the prompt: about a third of the decoder's time
per prompt). `DecoderGraph` is the rest for any number N of single-point prompts, returning only what the
VREyeSAM procedure reads: the first multimask output and its score. The gate proves the split equal to
Meta's flow.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vreyesam.runtime.manifest import DECODER_IMAGE_INPUTS, ENCODER_OUTPUTS

ENCODER_INPUTS = ("image",)
DECODER_INPUTS = (*DECODER_IMAGE_INPUTS, "point_coords", "point_labels")
DECODER_OUTPUTS = ("low_res_logits", "scores")
IMAGE_SIZE = 1024  # SAM2's square model input
# Feature-map sizes of SAM2 at 1024x1024 input (strides 16, 4, 8).
FEATURE_SHAPES = {
    "image_embed": (256, 64, 64),
    "high_res_feats_0": (32, 256, 256),
    "high_res_feats_1": (64, 128, 128),
    "image_tokens": (4096, 256),
    "token_to_image_keys": (4096, 128),
    "token_to_image_values": (4096, 128),
    "image_to_token_queries": (4096, 128),
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


def _flatten(feature_map: torch.Tensor) -> torch.Tensor:
    """BxCxHxW -> Bx(HW)xC, as the two-way transformer lays out image tokens."""
    return feature_map.flatten(2).permute(0, 2, 1)


def _attend(attention: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SAM2's `Attention.forward` after its input projections (q, k, v are already projected)."""
    q, k, v = (attention._separate_heads(x, attention.num_heads) for x in (q, k, v))
    return attention.out_proj(attention._recombine_heads(F.scaled_dot_product_attention(q, k, v)))


class DecoderImageInputs(nn.Module):
    """image_embed Bx256x64x64 -> what the prompt decoder computes from the image alone.

    image_tokens Bx4096x256: image embedding + no-mask dense embedding (masks are never given);
    token_to_image_keys/values and image_to_token_queries Bx4096x128: the first transformer block's
    projections of those tokens (its token-to-image keys and values, its image-to-token queries).
    """

    def __init__(self, sam_model: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder = sam_model.sam_prompt_encoder
        self.first_block = sam_model.sam_mask_decoder.transformer.layers[0]

    def forward(self, image_embed: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        tokens = _flatten(image_embed + dense)
        with_position = tokens + _flatten(self.prompt_encoder.get_dense_pe())
        block = self.first_block
        return (
            tokens,
            block.cross_attn_token_to_image.k_proj(with_position),
            block.cross_attn_token_to_image.v_proj(tokens),
            block.cross_attn_image_to_token.q_proj(with_position),
        )


class EncoderGraph(nn.Module):
    """The exported encoder: `ImageEncoder`'s three outputs, then `DecoderImageInputs`' four."""

    def __init__(self, sam_model: nn.Module) -> None:
        super().__init__()
        self.image_encoder = ImageEncoder(sam_model)
        self.decoder_inputs = DecoderImageInputs(sam_model)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        embed, feats_0, feats_1 = self.image_encoder(image)
        return (embed, feats_0, feats_1, *self.decoder_inputs(embed))


class DecoderGraph(nn.Module):
    """The exported decoder: SAM2's mask decoder for N single-point prompts, from the image-side tensors.

    Mirrors `MaskDecoder.predict_masks` and `TwoWayTransformer.forward` (with the first block's image-side
    projections taken as inputs), for SAM2 Hiera-S's configuration: object-score token, high-resolution
    features, multimask output of which only the first mask and its score are returned.
    """

    def __init__(self, sam_model: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder = sam_model.sam_prompt_encoder
        self.mask_decoder = sam_model.sam_mask_decoder
        if not (self.mask_decoder.pred_obj_scores and self.mask_decoder.use_high_res_features):
            raise ValueError("DecoderGraph expects SAM2 with object scores and high-resolution features")

    def _first_block(
        self, tokens: torch.Tensor, image_tokens: torch.Tensor, projected: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """TwoWayAttentionBlock.forward with skip_first_layer_pe, image-side projections given (batch 1)."""
        block = self.mask_decoder.transformer.layers[0]
        keys, values, image_queries = (x.expand(tokens.shape[0], -1, -1) for x in projected)
        queries = block.norm1(block.self_attn(q=tokens, k=tokens, v=tokens))
        cross = block.cross_attn_token_to_image
        queries = block.norm2(queries + _attend(cross, cross.q_proj(queries + tokens), keys, values))
        queries = block.norm3(queries + block.mlp(queries))
        back = block.cross_attn_image_to_token
        attended = _attend(back, image_queries, back.k_proj(queries + tokens), back.v_proj(queries))
        return queries, block.norm4(image_tokens + attended)

    def forward(
        self,
        image_tokens: torch.Tensor,
        token_to_image_keys: torch.Tensor,
        token_to_image_values: torch.Tensor,
        image_to_token_queries: torch.Tensor,
        high_res_feats_0: torch.Tensor,
        high_res_feats_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        decoder = self.mask_decoder
        sparse, _ = self.prompt_encoder(points=(point_coords, point_labels), boxes=None, masks=None)
        output_tokens = torch.cat(
            [decoder.obj_score_token.weight, decoder.iou_token.weight, decoder.mask_tokens.weight]
        )
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse), dim=1)

        transformer = decoder.transformer
        projected = (token_to_image_keys, token_to_image_values, image_to_token_queries)
        queries, keys = self._first_block(tokens, image_tokens, projected)
        image_pe = _flatten(self.prompt_encoder.get_dense_pe())
        for block in transformer.layers[1:]:
            queries, keys = block(queries=queries, keys=keys, query_pe=tokens, key_pe=image_pe)
        attended = transformer.final_attn_token_to_image(q=queries + tokens, k=keys + image_pe, v=keys)
        hs = transformer.norm_final_attn(queries + attended)

        prompts, channels = keys.shape[0], keys.shape[2]
        grid = self.prompt_encoder.image_embedding_size
        src = keys.transpose(1, 2).reshape(prompts, channels, grid[0], grid[1])
        dc1, ln1, act1, dc2, act2 = decoder.output_upscaling
        upscaled = act2(dc2(act1(ln1(dc1(src) + high_res_feats_1))) + high_res_feats_0)
        # Token 0 is the object score, 1 the IoU, 2.. the masks; multimask output starts at mask 1.
        hyper_in = decoder.output_hypernetworks_mlps[1](hs[:, 3])
        logits = (hyper_in[:, None, :] @ upscaled.flatten(2)).reshape(prompts, *upscaled.shape[2:])
        scores = decoder.iou_prediction_head(hs[:, 1])[:, 1]
        return logits, scores


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
            dynamic_axes={"image": {0: "batch"}, **{name: {0: "batch"} for name in ENCODER_OUTPUTS}},
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
            dynamic_axes={name: {0: "prompts"} for name in ("point_coords", "point_labels", *DECODER_OUTPUTS)},
            opset_version=opset,
            dynamo=False,
        )
    return ExportedGraphs(encoder=encoder_path, decoder=decoder_path)
