"""Super-resolution ×s as a task: low-res uint8 RGB arrays in, s× larger arrays out.

Two ways to get the error vector in model space (``variant``):
    "decoder": e = −∇‖A(D(x̂0)) − y‖ through the VAE decoder (the paper's; exact direction)
    "encoder": e = E(back-projected D(x̂0)) − x̂0, VAE forwards only (no backward pass at all)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fcs.config import SamplerConfig
from fcs.constraints import EncoderSuperResolution, SuperResolution
from fcs.denoiser import Denoiser
from fcs.images import pad_to_multiple, rgb_to_tensor, tensor_to_rgb
from fcs.sample import ItemResult, group_by_size, item_result, sample_and_decode

SR_DEFAULTS = SamplerConfig(newton_steps=10, lr=0.1)  # the paper's super-resolution setting
SCALES = (2, 4, 8)
DEFAULT_SCALE = 4
VARIANTS = ("decoder", "encoder")


def superres(
    denoiser: Denoiser,
    images: Sequence[np.ndarray],
    scale: int = DEFAULT_SCALE,
    prompts: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    config: SamplerConfig = SR_DEFAULTS,
    variant: str = "decoder",
    show_progress: bool = False,
) -> list[ItemResult]:
    """Upscale uint8 RGB (h, w, 3) arrays by ``scale`` (2, 4 or 8); results are (s·h, s·w, 3)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    n = len(images)
    prompts = list(prompts) if prompts is not None else [""] * n
    seeds = list(seeds) if seeds is not None else list(range(n))
    if not (len(prompts) == len(seeds) == n):
        raise ValueError(f"got {n} images, {len(prompts)} prompts and {len(seeds)} seeds; give one of each per image")
    results: list[ItemResult | None] = [None] * n
    for idx in group_by_size(images):
        h, w = images[idx[0]].shape[:2]
        # the output side s·h must fit the model grid: pad the low-res input by edge replication
        low = pad_to_multiple(torch.stack([rgb_to_tensor(images[i]) for i in idx]),
                              max(1, denoiser.size_multiple // scale))
        low = low.to(denoiser.device)
        if variant == "decoder":
            constraint = SuperResolution(denoiser.decode, low, scale)
        else:
            constraint = EncoderSuperResolution(denoiser.decode, denoiser.encode, low, scale)
        f = denoiser.scale_factor
        shape = (denoiser.channels, low.shape[-2] * scale // f, low.shape[-1] * scale // f)
        out = sample_and_decode(denoiser, constraint, shape, [prompts[i] for i in idx], [seeds[i] for i in idx],
                                config, show_progress)
        for k, i in enumerate(idx):
            results[i] = item_result(out, k, tensor_to_rgb(out.images[k, :, : h * scale, : w * scale]), len(idx))
    return results  # type: ignore[return-value]
