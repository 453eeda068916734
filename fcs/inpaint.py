"""Inpainting as a task: arrays in, restored arrays and per-item metrics out.

The one place that turns user images into a constraint, runs a sampler and turns x̂0 back into
images. The diffusers-style pipeline class, the CLI and the Ray actor all call :func:`inpaint`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from fcs import noise
from fcs.config import SamplerConfig
from fcs.constraints import LatentInpaint
from fcs.denoiser import Denoiser
from fcs.images import composite, pad_to_multiple, rgb_to_tensor, tensor_to_rgb
from fcs.samplers import SAMPLERS


@dataclass
class InpaintResult:
    """One item's outcome. ``image`` is uint8 (H, W, 3) at the input size, None on error."""

    image: np.ndarray | None
    nfe: int
    residual_init: float
    residual_final: float
    sample_s: float
    batch_size: int
    error: str | None = None


def check_pair(rgb: np.ndarray, mask: np.ndarray) -> None:
    """Raise ValueError naming the problem if an image/mask pair cannot be inpainted."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]} but image is {rgb.shape[1]}x{rgb.shape[0]}; they must match")
    if not np.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
        raise ValueError("mask values must be finite and in [0, 1]")


def inpaint(
    denoiser: Denoiser,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    prompts: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    config: SamplerConfig = SamplerConfig(),
    show_progress: bool = False,
) -> list[InpaintResult]:
    """Inpaint a batch; items of equal size share one sampler call, others run in their own group.

    Args:
        images: uint8 RGB arrays (H, W, 3). masks: float arrays (H, W) in [0, 1], 1 = regenerate.
        prompts: one per item ('' = unconditional); seeds: one per item (default 0, 1, ...).
    Item i's result depends only on its own inputs and seed, not on the rest of the batch.
    """
    n = len(images)
    prompts = list(prompts) if prompts is not None else [""] * n
    seeds = list(seeds) if seeds is not None else list(range(n))
    if not (len(masks) == len(prompts) == len(seeds) == n):
        raise ValueError("images, masks, prompts and seeds must have the same length")
    for rgb, mask in zip(images, masks):
        check_pair(rgb, mask)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, rgb in enumerate(images):
        groups.setdefault(rgb.shape[:2], []).append(i)
    results: list[InpaintResult | None] = [None] * n
    for idx in groups.values():
        group = _inpaint_group(
            denoiser.with_guidance(config.guidance_scale),
            [images[i] for i in idx], [masks[i] for i in idx],
            [prompts[i] for i in idx], [seeds[i] for i in idx], config, show_progress,
        )
        for i, res in zip(idx, group):
            results[i] = res
    return results  # type: ignore[return-value]


def _inpaint_group(denoiser, images, masks, prompts, seeds, config, show_progress) -> list[InpaintResult]:
    h, w = images[0].shape[:2]
    multiple = denoiser.size_multiple
    image_t = pad_to_multiple(torch.stack([rgb_to_tensor(x) for x in images]), multiple)
    mask_t = pad_to_multiple(torch.from_numpy(np.stack(masks)).float()[:, None], multiple)
    started = time.perf_counter()
    constraint = LatentInpaint.from_pixels(denoiser, image_t, mask_t)
    gens = noise.generators(seeds)
    x_T = noise.randn(constraint.target.shape[1:], gens, denoiser.device)
    cond = denoiser.encode_prompt(prompts)
    sampler = SAMPLERS[config.method]
    result = sampler(
        denoiser, constraint, x_T, cond,
        steps=config.steps, eta=config.eta, gens=gens, show_progress=show_progress, **config.sampler_options(),
    )
    with torch.no_grad():
        decoded = denoiser.decode(result.x0)[..., :h, :w].cpu().expand(-1, 3, -1, -1)  # grey models -> RGB
    if denoiser.device.type == "cuda":
        torch.cuda.synchronize()
    per_item_s = (time.perf_counter() - started) / len(images)
    out = []
    for k, (rgb, mask) in enumerate(zip(images, masks)):
        res = InpaintResult(
            image=None, nfe=int(result.nfe[k]), residual_init=float(result.residual_init[k]),
            residual_final=float(result.residual_final[k]), sample_s=per_item_s, batch_size=len(images),
        )
        if not torch.isfinite(decoded[k]).all():
            res.error = "sample: output is not finite (NaN or Inf); try fp32 or jacobian='jvp'"
        else:
            generated = tensor_to_rgb(decoded[k])
            res.image = composite(rgb, generated, mask, config.feather) if config.composite else generated
        out.append(res)
    return out
