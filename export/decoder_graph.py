"""The exported prompt decoder: SAM2's mask decoder regrouped so that the per-prompt graph is matrix work.

Meta's `MaskDecoder.predict_masks` and `TwoWayTransformer` run per prompt over 4096 image tokens of 256
channels; exported as written, a third of the CPU time went to memory-bound glue around the arithmetic:
head split/merge transposes of the 4096-token tensors, the image-to-token attention's output projection,
`LayerNorm2d` decomposed into seven element-wise ops over 64x128x128, NCHW <-> token-layout transposes
and two stride-2 transposed convolutions. The same arithmetic is regrouped here (the fidelity gate and the
parity tests hold the result to Meta's flow):

- Attention projections absorbed into the few prompt tokens (8: object score, IoU, four masks, the point
  and its padding point). Token-to-image: the scores `q Wk (x + pe)^T` are computed as `(q Wk) (x + pe)^T`
  (the key bias adds a constant per query row, which softmax cancels), and the values as `(P x) Wv + bv`
  (softmax rows sum to one), so the 4096-token tensors are never projected or split into heads.
  Image-to-token: the queries' projection is folded into a block-diagonal matrix of the token keys, and the
  output projection into the token values, so the scores and the update are one matrix product each over
  the image tokens, in channels-last layout.
- The first block's image-side projections come from the encoder graph (`ImageSide`), already in the
  head-major layout the attention reads.
- The upscaling in channels-last layout: a 2x2 stride-2 transposed convolution is one matrix product per
  input pixel (256 -> 2x2x64 and 64 -> 2x2x32, a `Gemm` with its bias), `LayerNorm2d` is one
  `LayerNormalization` over the last axis, and the high-resolution features come from the encoder graph
  already in that layout; only the final 256x256 logits are put back in row order.
- The final token-to-image attention only for the two tokens the procedure reads (IoU, first multimask).
"""

from __future__ import annotations

import torch
from torch import nn

GRID = 64  # image tokens per side at 1024x1024 input (stride 16)
# Output tokens are object score, IoU, four masks; the procedure reads the IoU and the first multimask token.
READ_TOKENS = [1, 3]


def flatten_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    """BxCxHxW -> Bx(HW)xC, as the two-way transformer lays out image tokens."""
    return feature_map.flatten(2).permute(0, 2, 1)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """Bx T x C -> B x heads x T x C/heads."""
    return x.unflatten(2, (heads, -1)).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """B x heads x T x D -> B x T x (heads D)."""
    return x.transpose(1, 2).flatten(2)


def _head_dim(attention: nn.Module) -> int:
    return int(attention.internal_dim // attention.num_heads)


def _token_to_image(
    attention: nn.Module, queries: torch.Tensor, keys: torch.Tensor, image_pe: torch.Tensor
) -> torch.Tensor:
    """SAM2's `Attention(q=queries, k=keys + image_pe, v=keys)` for a few query tokens over the image tokens.

    queries NxTxC; keys Nx4096xC; image_pe 1x4096xC. The key and value projections are applied on the query
    side (T tokens) instead of the image side (4096 tokens), and the positional part of the scores comes from
    the projected encoding (a constant HxDx4096), so `keys + image_pe` is never formed.
    """
    heads, dim = attention.num_heads, _head_dim(attention)
    q = _heads(attention.q_proj(queries), heads) * dim**-0.5  # N x H x T x D
    key_weight = attention.k_proj.weight.reshape(heads, dim, -1)  # H x D x C
    tokens = q.shape[2]
    scores = (q @ key_weight).flatten(1, 2) @ keys.transpose(1, 2)  # N x HT x 4096
    scores = scores + (q @ (key_weight @ image_pe.transpose(1, 2))).flatten(1, 2)
    mixed = (scores.softmax(-1) @ keys).unflatten(1, (heads, tokens))  # N x H x T x C
    value_weight = attention.v_proj.weight.reshape(heads, dim, -1).transpose(1, 2)  # H x C x D
    values = mixed @ value_weight + attention.v_proj.bias.reshape(heads, 1, dim)
    return attention.out_proj(_merge_heads(values))


def _image_to_token(
    attention: nn.Module,
    image_queries: torch.Tensor,
    token_keys: torch.Tensor,
    token_values: torch.Tensor,
    *,
    projected: bool,
) -> torch.Tensor:
    """SAM2's `Attention(q=image, k=token_keys, v=token_values)`: the image tokens attending to T tokens.

    image_queries: Nx4096xC image tokens (+ positional encoding), or, when `projected`, their query
    projection Nx4096x(HD) (the first block's, from the encoder graph). token_keys/values: NxTxC.
    Returns Nx4096xC.
    """
    heads, dim = attention.num_heads, _head_dim(attention)
    keys = attention.k_proj(token_keys).unflatten(2, (heads, dim)).permute(0, 2, 3, 1)  # N x H x D x T
    tokens = keys.shape[-1]
    # Block-diagonal (HD) x (HT): head h's keys in rows h*D.., columns h*T..; zero elsewhere.
    eye = torch.eye(heads, dtype=keys.dtype).reshape(1, heads, 1, heads, 1)
    block_keys = (keys.unsqueeze(3) * eye).reshape(-1, heads * dim, heads * tokens) * dim**-0.5
    if projected:
        scores = image_queries @ block_keys
    else:
        bias = (attention.q_proj.bias @ block_keys).unsqueeze(1)  # N x 1 x HT: per key, not cancelled
        scores = image_queries @ (attention.q_proj.weight.t() @ block_keys) + bias
    weights = scores.unflatten(2, (heads, tokens)).softmax(-1).flatten(2)  # N x 4096 x HT
    values = _heads(attention.v_proj(token_values), heads)  # N x H x T x D
    output_weight = attention.out_proj.weight.reshape(-1, heads, dim).permute(1, 2, 0)  # H x D x C
    # Each head's weights sum to one over its T tokens, so a row of `weights` sums to H: the output bias,
    # divided by H, rides on the T-token values instead of being added to all 4096 outputs.
    projected = values @ output_weight + attention.out_proj.bias / heads
    return weights @ projected.flatten(1, 2)


def _first_token_to_image(
    attention: nn.Module, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """The first block's token-to-image attention, keys 1xHxDx4096 (scaled) and values 1xHx4096xD given."""
    q = _heads(attention.q_proj(queries), attention.num_heads)
    return attention.out_proj(_merge_heads((q @ keys).softmax(-1) @ values))


class ImageSide(nn.Module):
    """The prompt decoder's per-image work, run once in the encoder graph.

    image_embed Bx256x64x64, high-res feats Bx32x256x256 and Bx64x128x128 ->
    image_tokens Bx4096x256 (embedding + no-mask dense embedding), the first block's token-to-image keys
    BxHxDx4096 (pre-scaled by D^-1/2) and values BxHx4096xD, its image-to-token queries Bx4096x(HD), and the
    high-resolution features in the channels-last layout the upscaling adds them in: upscale_skip_1
    Bx4096x(2*2*64) (high_res_feats_1) and upscale_skip_0 Bx4096x4x(2*2*32) (high_res_feats_0).
    """

    def __init__(self, sam_model: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder = sam_model.sam_prompt_encoder
        self.first_block = sam_model.sam_mask_decoder.transformer.layers[0]

    def forward(
        self, image_embed: torch.Tensor, high_res_feats_0: torch.Tensor, high_res_feats_1: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        tokens = flatten_tokens(image_embed + dense)
        with_position = tokens + flatten_tokens(self.prompt_encoder.get_dense_pe())
        cross, back = self.first_block.cross_attn_token_to_image, self.first_block.cross_attn_image_to_token
        keys = _heads(cross.k_proj(with_position), cross.num_heads).transpose(2, 3) * _head_dim(cross) ** -0.5
        values = _heads(cross.v_proj(tokens), cross.num_heads)
        return (
            tokens,
            keys,
            values,
            back.q_proj(with_position),
            _skip(high_res_feats_0, levels=2),
            _skip(high_res_feats_1, levels=1),
        )


def _skip(feature: torch.Tensor, levels: int) -> torch.Tensor:
    """BxCx(64*2^L)x(64*2^L) -> the feature as the upscaling adds it after its level L (1 or 2):
    Bx4096x(2*2*C) for L=1, Bx4096x4x(2*2*C) for L=2, pixels in the order the channels-last upscaling
    produces them: token (i, j), then per stride-2 level (coarse to fine) a (row bit, column bit) pair.
    A rearrangement only, exact in any precision the encoder runs in. No intermediate has more than six
    axes: OpenVINO's CPU plugin gave garbage for this layout built with one eight-axis transpose."""
    channels, side = feature.shape[1], 2**levels
    # batch, channels, i, sub-row, j, sub-column -> batch, i, j, sub-row, sub-column, channels
    grouped = feature.reshape(-1, channels, GRID, side, GRID, side).permute(0, 2, 4, 3, 5, 1)
    if levels == 1:
        return grouped.reshape(-1, GRID * GRID, 4 * channels)
    # sub-row = (di, di2) and sub-column = (dj, dj2) -> (di, dj), (di2, dj2)
    pairs = grouped.reshape(-1, 2, 2, 2, 2, channels).permute(0, 1, 3, 2, 4, 5)
    return pairs.reshape(-1, GRID * GRID, 4, 4 * channels)


def _per_pixel(convolution: nn.ConvTranspose2d, pixels: torch.Tensor) -> torch.Tensor:
    """A 2x2 stride-2 transposed convolution as one matrix product per input pixel: P x Cin -> P x (2*2*Cout),
    the 2x2 outputs of each pixel beside its channels (a `Gemm`, the bias included)."""
    weight = convolution.weight.permute(0, 2, 3, 1).flatten(1)  # Cin x (2*2*Cout)
    return torch.addmm(convolution.bias.repeat(4), pixels, weight)


class DecoderGraph(nn.Module):
    """The exported decoder: SAM2's mask decoder for N single-point prompts, from `ImageSide`'s tensors.

    Mirrors `MaskDecoder.predict_masks` and `TwoWayTransformer.forward` for SAM2 Hiera-S's configuration
    (object-score token, high-resolution features, multimask output), returning the first multimask
    output's 256x256 logits and its score, the only outputs the VREyeSAM procedure reads.
    """

    def __init__(self, sam_model: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder = sam_model.sam_prompt_encoder
        self.mask_decoder = sam_model.sam_mask_decoder
        if not (self.mask_decoder.pred_obj_scores and self.mask_decoder.use_high_res_features):
            raise ValueError("DecoderGraph expects SAM2 with object scores and high-resolution features")

    def _first_block(
        self, tokens: torch.Tensor, image_tokens: torch.Tensor, image_side: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """TwoWayAttentionBlock.forward with skip_first_layer_pe, its image-side projections given."""
        block = self.mask_decoder.transformer.layers[0]
        keys, values, image_queries = image_side
        queries = block.norm1(block.self_attn(q=tokens, k=tokens, v=tokens))
        attended = _first_token_to_image(block.cross_attn_token_to_image, queries + tokens, keys, values)
        queries = block.norm2(queries + attended)
        queries = block.norm3(queries + block.mlp(queries))
        back = _image_to_token(
            block.cross_attn_image_to_token, image_queries, queries + tokens, queries, projected=True
        )
        return queries, block.norm4(image_tokens + back)

    @staticmethod
    def _block(
        block: nn.Module, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """TwoWayAttentionBlock.forward (without skip_first_layer_pe), the cross attentions regrouped."""
        q = queries + query_pe
        queries = block.norm1(queries + block.self_attn(q=q, k=q, v=queries))
        attended = _token_to_image(block.cross_attn_token_to_image, queries + query_pe, keys, key_pe)
        queries = block.norm2(queries + attended)
        queries = block.norm3(queries + block.mlp(queries))
        back = _image_to_token(
            block.cross_attn_image_to_token, keys + key_pe, queries + query_pe, queries, projected=False
        )
        return queries, block.norm4(keys + back)

    def _upscaled(self, keys: torch.Tensor, skip_0: torch.Tensor, skip_1: torch.Tensor) -> torch.Tensor:
        """Nx4096x256 image tokens -> Nx4096x4x4x32 upscaled embedding, pixels in `_skip`'s order."""
        dc1, ln1, act1, dc2, act2 = self.mask_decoder.output_upscaling
        first = _per_pixel(dc1, keys.flatten(0, 1)).unflatten(0, (-1, GRID * GRID)) + skip_1
        first = first.unflatten(2, (4, dc1.out_channels))
        first = act1(nn.functional.layer_norm(first, (dc1.out_channels,), ln1.weight, ln1.bias, ln1.eps))
        second = _per_pixel(dc2, first.flatten(0, 2)).unflatten(0, (-1, GRID * GRID, 4)) + skip_0
        return act2(second).unflatten(3, (4, dc2.out_channels))

    def forward(
        self,
        image_tokens: torch.Tensor,
        token_to_image_keys: torch.Tensor,
        token_to_image_values: torch.Tensor,
        image_to_token_queries: torch.Tensor,
        upscale_skip_0: torch.Tensor,
        upscale_skip_1: torch.Tensor,
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
        image_side = (token_to_image_keys, token_to_image_values, image_to_token_queries)
        queries, keys = self._first_block(tokens, image_tokens, image_side)
        image_pe = flatten_tokens(self.prompt_encoder.get_dense_pe())
        for block in transformer.layers[1:]:
            queries, keys = self._block(block, queries, keys, tokens, image_pe)
        # The final attention, only for the two tokens read below (it is per token up to here).
        queries, tokens = queries[:, READ_TOKENS], tokens[:, READ_TOKENS]
        attended = _token_to_image(transformer.final_attn_token_to_image, queries + tokens, keys, image_pe)
        hs = transformer.norm_final_attn(queries + attended)

        upscaled = self._upscaled(keys, upscale_skip_0, upscale_skip_1)
        hyper_in = decoder.output_hypernetworks_mlps[1](hs[:, 1])
        logits = upscaled @ hyper_in[:, None, None, :, None]
        # (i, j, di, dj, di2, dj2) -> row 4i + 2di + di2, column 4j + 2dj + dj2, in two transposes of at most
        # five axes (see `_skip`): first (di, dj, di2, dj2) -> (di, di2, dj, dj2), then (j, rows) -> (rows, j).
        fine = logits.reshape(-1, 2, 2, 2, 2).transpose(2, 3).reshape(-1, GRID, GRID, 4, 4)
        size = GRID * 4
        logits = fine.transpose(2, 3).reshape(-1, size, size)
        scores = decoder.iou_prediction_head(hs[:, 0])[:, 1]
        return logits, scores
