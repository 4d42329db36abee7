"""Build SAM2 Hiera-S from the `sam2` package's config and load the VREyeSAM weights into it, strictly.

The VREyeSAM checkpoint is a full state dict of the whole SAM2 model (the reference loads it with a
strict `load_state_dict` over the base model), so it alone defines every weight: the base checkpoint
`sam2_hiera_small.pt` is not needed. The model is built without any checkpoint and then loaded from the
VREyeSAM state dict, which must match the architecture key for key and shape for shape.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

SAM2_CONFIG = "configs/sam2/sam2_hiera_s.yaml"


class WeightsError(Exception):
    """The weights cannot be used; the message is one line naming the problem."""


def build_sam2_hiera_s() -> nn.Module:
    """SAM2 Hiera-S exactly as `build_sam2(SAM2_CONFIG, ...)` builds it, on the CPU, in eval mode."""
    # Imported here: sam2 initialises hydra at import time, which only the builder needs.
    from sam2.build_sam import build_sam2

    return build_sam2(SAM2_CONFIG, ckpt_path=None, device="cpu", mode="eval")


def build_random(seed: int) -> nn.Module:
    """SAM2 Hiera-S with its constructor's random initialisation under a fixed seed (offline tests, demos)."""
    torch.manual_seed(seed)
    return build_sam2_hiera_s()


def load_state_dict_strict(model: nn.Module, state: object) -> None:
    """Load a full state dict, refusing anything that is not an exact match for the architecture."""
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]  # the layout of Meta's own SAM2 checkpoints
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError("weights file is not a state dict of tensors")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"weights do not match SAM2 Hiera-S: {len(missing)} missing and {len(unexpected)} unexpected keys"
            + (f" (first missing: {missing[0]})" if missing else "")
            + (f" (first unexpected: {unexpected[0]})" if unexpected else "")
        )
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        raise WeightsError(
            f"weights do not match SAM2 Hiera-S: {len(wrong)} tensors have the wrong shape (first: {wrong[0]} "
            f"{tuple(state[wrong[0]].shape)} != {tuple(expected[wrong[0]].shape)})"
        )
    model.load_state_dict(state, strict=True)
