"""Weights whose logits are as confident as a fine-tuned model's: the second standard benchmark workload.

    python -m benchmarks.confident_weights --out build-out/confident.pt [--images 4] [--steps 40]
    vreyesam export --weights build-out/confident.pt --out build-out/confident-model

SAM2 Hiera-S with the random initialisation of the test model (seed 0), whose prompt encoder and mask
decoder are then trained on synthetic eyes (`vreyesam synth`, near-infrared) to segment the iris from the
procedure's own uniformly sampled prompts, as VREyeSAM fine-tuned SAM2: binary cross-entropy of the first
multimask output against the iris mask at the logits' 256x256 size, Adam, the image encoder frozen (its
features are computed once). The random model's logits sit near 0; after training they are large and of
either sign over most of the image, which is what makes reduced-precision encoders harder to pass the
export's gates. Rescaling a trained layer would not do: the gates' relative errors are invariant to it.

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

from vreyesam.export.model import build_random
from vreyesam.export.reference import TorchReference
from vreyesam.runtime.manifest import Preprocessing, ProcedureDefaults, sha256_hex
from vreyesam.runtime.model.preprocess import fit_image
from vreyesam.runtime.model.procedure import sample_points, to_model_frame
from vreyesam.runtime.tools.synth import generate

TRAINED_PREFIXES = ("sam_prompt_encoder.", "sam_mask_decoder.")


def training_set(images: int, prep: Preprocessing) -> list[tuple[np.ndarray, torch.Tensor]]:
    """(fitted image, 256x256 float iris mask in the logits' frame) per synthetic near-infrared eye."""
    samples = []
    for _, image, mask in generate(seed=7, n=images, width=400, height=300, mode="nir"):
        fitted = fit_image(image, prep.fit_size)
        side = prep.low_res_size
        target = cv2.resize(mask.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST)
        samples.append((fitted, torch.from_numpy(target.astype(np.float32))))
    return samples


def train(
    sam: torch.nn.Module,
    reference: TorchReference,
    samples: list,
    features: list,
    steps: int,
    prompts: int,
    rate: float,
) -> dict[str, float]:
    """Trains `sam`'s prompt encoder and mask decoder in place (the encoder's `features` are fixed)."""
    torch.manual_seed(0)
    prep = reference.prep
    trained = [p for name, p in sam.named_parameters() if name.startswith(TRAINED_PREFIXES)]
    for parameter in sam.parameters():
        parameter.requires_grad_(False)
    for parameter in trained:
        parameter.requires_grad_(True)
    optimiser = torch.optim.Adam(trained, lr=rate)
    reference.decoder.train()
    first_loss = last_loss = 0.0
    for step in range(steps):
        index = step % len(samples)
        fitted, target = samples[index]
        points = sample_points(fitted.shape[:2], prompts, seed=step)
        coords = torch.from_numpy(to_model_frame(points, fitted.shape[:2], prep.image_size))
        labels = torch.ones(prompts, 1, dtype=torch.int32)
        logits, _ = reference.decoder(*features[index], coords, labels)
        loss = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        last_loss = float(loss.detach())
        first_loss = first_loss or last_loss
    reference.decoder.eval()
    for parameter in sam.parameters():
        parameter.requires_grad_(False)
    return {"first_loss": first_loss, "last_loss": last_loss}


@torch.no_grad()
def confidence(reference: TorchReference, samples: list, features: list) -> dict[str, float]:
    """How confident the logits are with the procedure's default prompts: median |logit|, and the share of
    logits beyond +-4 (a probability outside 0.018..0.982)."""
    defaults = ProcedureDefaults()
    magnitudes = []
    for (fitted, _), feature in zip(samples, features, strict=True):
        points = sample_points(fitted.shape[:2], defaults.points, defaults.seed)
        coords = to_model_frame(points, fitted.shape[:2], reference.prep.image_size)
        logits, _ = reference.decode(feature, coords)
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
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    started = time.perf_counter()
    sam = build_random(0)
    reference = TorchReference(sam, Preprocessing())
    samples = training_set(args.images, reference.prep)
    features = [reference.features(fitted) for fitted, _ in samples]  # the encoder stays frozen
    before = confidence(reference, samples, features)
    figures = train(sam, reference, samples, features, args.steps, args.prompts, args.learning_rate)
    figures.update(confidence(reference, samples, features))
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
