"""The PyTorch side of the export's fidelity gate and golden sample, without torchvision.

It runs Meta's SAM2 modules through the same wrappers that were traced to ONNX, with SAM2Transforms'
preprocessing done in torch: torchvision's tensor Resize is `F.interpolate(bilinear, antialias=True)`
and Normalize is (x - mean) / std, so torchvision (absent from the CPU builder) is not needed. The test
suite separately proves this path and the runtime equal to Meta's SAM2ImagePredictor.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vreyesam.export.graphs import ImageEncoder, PromptDecoder
from vreyesam.runtime.manifest import Preprocessing


class TorchReference:
    def __init__(self, sam_model: nn.Module, prep: Preprocessing) -> None:
        self.encoder = ImageEncoder(sam_model).eval()
        self.decoder = PromptDecoder(sam_model).eval()
        self.prep = prep

    def encoder_input(self, fitted_rgb: np.ndarray) -> torch.Tensor:
        """hxwx3 uint8 -> 1x3xSxS float32, as SAM2Transforms (ToTensor, Resize, Normalize)."""
        image = torch.from_numpy(np.ascontiguousarray(fitted_rgb)).permute(2, 0, 1).float().div(255.0)
        size = (self.prep.image_size, self.prep.image_size)
        resized = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.prep.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.prep.std).view(1, 3, 1, 1)
        return (resized - mean) / std

    @torch.no_grad()
    def features(self, fitted_rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.encoder(self.encoder_input(fitted_rgb))

    @torch.no_grad()
    def decode(self, features: tuple[torch.Tensor, ...], model_points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        coords = torch.from_numpy(np.asarray(model_points, dtype=np.float32))
        labels = torch.ones(coords.shape[0], 1, dtype=torch.int32)
        return self.decoder(*features, coords, labels)

    @staticmethod
    def masks(low_res_logits: torch.Tensor, fitted_hw: tuple[int, int], threshold: float) -> torch.Tensor:
        """Nx256x256 -> Nxhxw bool, as SAM2Transforms.postprocess_masks then `> mask_threshold`."""
        upscaled = F.interpolate(low_res_logits[:, None], size=fitted_hw, mode="bilinear", align_corners=False)
        return upscaled[:, 0] > threshold

    @staticmethod
    def binary(masks: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
        """VREyeSAM's score-weighted vote of the masks, thresholded (hxw bool)."""
        total = scores.sum()
        weights = scores / total if total > 0 else torch.full_like(scores, 1.0 / len(scores))
        probability = (masks.float() * weights[:, None, None]).sum(0).clamp(0, 1)
        return probability > threshold
