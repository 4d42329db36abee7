"""Weights whose logits are as confident as a fine-tuned model's: the second standard benchmark workload.

    python -m benchmarks.confident_weights --out build-out/confident.pt [--images 4] [--steps 40]
    vreyesam export --weights build-out/confident.pt --out build-out/confident-model

SAM2 Hiera-S with the random initialisation of the test model (seed 0), whose image encoder's neck, prompt
encoder and mask decoder are then trained on synthetic eyes (`vreyesam synth`, near-infrared) to segment the
iris from the procedure's own uniformly sampled prompts, as VREyeSAM fine-tuned SAM2: binary cross-entropy of
the first multimask output against the iris mask at the logits' 256x256 size, Adam, the encoder's trunk
frozen (it runs once per image; its outputs are replayed to the neck). The random model's logits sit near
0; after training they are large and of either sign over most of the image, which is what makes
reduced-precision encoders harder to pass the export's gates. Rescaling a trained layer would not do: the
gates' relative errors are invariant to it.

Deterministic for its arguments on one machine (fixed seeds, CPU); the file's sha256 is printed, and the
export records it. Runs in the builder environment (torch, sam2).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vreyesam.export.model import build_random
from vreyesam.export.reference import TorchReference
from vreyesam.runtime.manifest import Preprocessing, ProcedureDefaults, sha256_hex
from vreyesam.runtime.model.preprocess import fit_image
from vreyesam.runtime.model.procedure import sample_points, to_model_frame
from vreyesam.runtime.tools.synth import generate

DECODER_PREFIXES = ("sam_prompt_encoder.", "sam_mask_decoder.")
NECK_PREFIX = "image_encoder.neck."


class FrozenTrunk(nn.Module):
    """Stands in for the image encoder's trunk, replaying its outputs for the image being trained on: the
    trunk (most of the encoder's work) runs once per image, and what comes after it can be trained."""

    def __init__(self, outputs: list[list[torch.Tensor]]) -> None:
        super().__init__()
        self.outputs = outputs
        self.current = 0

    def forward(self, _image: torch.Tensor) -> list[torch.Tensor]:
        return self.outputs[self.current]


def training_set(images: int, prep: Preprocessing) -> list[tuple[np.ndarray, torch.Tensor]]:
    """(fitted image, 256x256 float iris mask in the logits' frame) per synthetic near-infrared eye."""
    samples = []
    for _, image, mask in generate(seed=7, n=images, width=400, height=300, mode="nir"):
        fitted = fit_image(image, prep.fit_size)
        side = prep.low_res_size
        target = cv2.resize(mask.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST)
        samples.append((fitted, torch.from_numpy(target.astype(np.float32))))
    return samples


class Trainer:
    """`sam` with its trunk's outputs for `samples` computed once; trains what comes after the trunk."""

    def __init__(self, sam: nn.Module, samples: list[tuple[np.ndarray, torch.Tensor]]) -> None:
        self.sam, self.samples = sam, samples
        self.reference = TorchReference(sam, Preprocessing())
        trunk = sam.image_encoder.trunk
        with torch.no_grad():
            outputs = [trunk(self.reference.encoder_input(fitted)) for fitted, _ in samples]
        self.frozen = FrozenTrunk(outputs)
        self._placeholder = torch.zeros(1, 3, 1, 1)  # the replayed trunk ignores its input

    def features(self, index: int) -> tuple[torch.Tensor, ...]:
        self.frozen.current = index
        original, self.sam.image_encoder.trunk = self.sam.image_encoder.trunk, self.frozen
        try:
            return self.reference.encoder(self._placeholder)
        finally:
            self.sam.image_encoder.trunk = original

    def train(self, steps: int, prompts: int, rate: float, neck: bool) -> dict[str, float]:
        """Trains the prompt encoder and mask decoder (and the encoder's neck with `neck`) in place."""
        torch.manual_seed(0)
        prefixes = (*DECODER_PREFIXES, NECK_PREFIX) if neck else DECODER_PREFIXES
        trained = [p for name, p in self.sam.named_parameters() if name.startswith(prefixes)]
        for parameter in self.sam.parameters():
            parameter.requires_grad_(False)
        for parameter in trained:
            parameter.requires_grad_(True)
        optimiser = torch.optim.Adam(trained, lr=rate)
        fixed = None if neck else [self.features(index) for index in range(len(self.samples))]
        image_size = self.reference.prep.image_size
        losses = []
        for step in range(steps):
            index = step % len(self.samples)
            fitted, target = self.samples[index]
            points = sample_points(fitted.shape[:2], prompts, seed=step)
            coords = torch.from_numpy(to_model_frame(points, fitted.shape[:2], image_size))
            labels = torch.ones(prompts, 1, dtype=torch.int32)
            features = self.features(index) if fixed is None else fixed[index]
            logits, _ = self.reference.decoder(*features, coords, labels)
            loss = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        for parameter in self.sam.parameters():
            parameter.requires_grad_(False)
        return {"first_loss": losses[0], "last_loss": losses[-1]}

    @torch.no_grad()
    def confidence(self) -> dict[str, float]:
        """How confident the logits are with the procedure's default prompts: median |logit|, and the share
        of logits beyond +-4 (a probability outside 0.018..0.982)."""
        defaults = ProcedureDefaults()
        magnitudes = []
        for index, (fitted, _) in enumerate(self.samples):
            points = sample_points(fitted.shape[:2], defaults.points, defaults.seed)
            coords = to_model_frame(points, fitted.shape[:2], self.reference.prep.image_size)
            logits, _ = self.reference.decode(self.features(index), coords)
            magnitudes.append(logits.abs().flatten())
        every = torch.cat(magnitudes)
        return {"median_abs_logit": float(every.median()), "share_beyond_4": float((every > 4).float().mean())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--prompts", type=int, default=8, help="prompts per training step")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--neck", action=argparse.BooleanOptionalAction, default=True, help="train the encoder's neck too"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    sam = build_random(0)
    trainer = Trainer(sam, training_set(args.images, Preprocessing()))
    before = trainer.confidence()
    figures = trainer.train(args.steps, args.prompts, args.learning_rate, neck=args.neck)
    figures.update(trainer.confidence())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sam.state_dict(), args.out)
    print(
        f"random weights: median |logit| {before['median_abs_logit']:.3f}, beyond +-4 {before['share_beyond_4']:.1%}; "
        f"trained ({args.steps} steps, loss {figures['first_loss']:.3f} -> {figures['last_loss']:.3f}): "
        f"median |logit| {figures['median_abs_logit']:.3f}, beyond +-4 {figures['share_beyond_4']:.1%}; "
        f"{time.perf_counter() - started:.0f} s; wrote {args.out} (sha256 {sha256_hex(args.out)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
