"""Inpainting as a task: arrays in, restored arrays and per-item metrics out.

The one place that turns user images into a constraint, runs a sampler and turns x̂0 back into
images. The diffusers-style pipeline class, the CLI and the Ray actor all call :func:`inpaint`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fcs.config import SamplerConfig
from fcs.constraints import LatentInpaint
from fcs.denoiser import Denoiser
from fcs.images import composite, pad_to_multiple, rgb_to_tensor, tensor_to_rgb
from fcs.sample import ItemResult, group_by_size, item_result, sample_and_decode


def check_pair(rgb: np.ndarray, mask: np.ndarray) -> None:
    """Raise ValueError naming the problem if an image/mask pair cannot be inpainted."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if mask.shape != rgb.shape[:2]:
        raise ValueError(
            f"mask is {mask.shape[1]}x{mask.shape[0]} but image is {rgb.shape[1]}x{rgb.shape[0]}; they must match"
        )
    if not np.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
        raise ValueError("mask values must be finite and in [0, 1]")


def inpaint(
    denoiser: Denoiser,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    prompts: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    config: SamplerConfig = SamplerConfig(),  # noqa: B008 - frozen dataclass, safe to share as a default
    show_progress: bool = False,
) -> list[ItemResult]:
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
    for rgb, mask in zip(images, masks, strict=True):
        check_pair(rgb, mask)
    results: list[ItemResult | None] = [None] * n
    for idx in group_by_size(images):
        group = _inpaint_group(
            denoiser,
            [images[i] for i in idx], [masks[i] for i in idx],
            [prompts[i] for i in idx], [seeds[i] for i in idx], config, show_progress,
        )
        for i, res in zip(idx, group, strict=True):
            results[i] = res
    return results  # type: ignore[return-value]


def _inpaint_group(denoiser, images, masks, prompts, seeds, config, show_progress) -> list[ItemResult]:
    h, w = images[0].shape[:2]
    multiple = denoiser.size_multiple
    image_t = pad_to_multiple(torch.stack([rgb_to_tensor(x) for x in images]), multiple)
    mask_t = pad_to_multiple(torch.from_numpy(np.stack(masks)).float()[:, None], multiple)
    constraint = LatentInpaint.from_pixels(denoiser, image_t, mask_t)
    out = sample_and_decode(denoiser, constraint, constraint.target.shape[1:], prompts, seeds, config, show_progress)
    results = []
    for k, (rgb, mask) in enumerate(zip(images, masks, strict=True)):
        generated = tensor_to_rgb(out.images[k, :, :h, :w])
        image = composite(rgb, generated, mask, config.feather) if config.composite else generated
        results.append(item_result(out, k, image, len(images)))
    return results
