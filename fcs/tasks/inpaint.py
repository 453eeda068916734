"""Inpainting as a task: images and masks in, restored images and per-item metrics out.

The one place that turns user images and masks into a constraint, runs a sampler and turns x̂0
back into images. The diffusers-style pipeline class, the CLI and the Ray actor all call :func:`run`.
"""

from __future__ import annotations

import numpy as np
import torch

from fcs.config import SamplerConfig
from fcs.constraints import LatentInpaint
from fcs.denoiser import Denoiser
from fcs.images import composite, pad_to_multiple, rgb_to_tensor, tensor_to_rgb
from fcs.tasks.decode import sample_and_decode, task_result
from fcs.tasks.items import Items, TaskResult, group_by_size


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


def run(
    denoiser: Denoiser,
    items: Items,
    config: SamplerConfig = SamplerConfig(),  # noqa: B008 - frozen dataclass, safe to share as a default
    *,
    show_progress: bool = False,
) -> list[TaskResult]:
    """Inpaint a batch; items of equal size share one sampler call, others run in their own group.

    ``items.masks``: float (H, W) in [0, 1], 1 = regenerate, one per image. Item i's result depends
    only on its own inputs and seed, not on the rest of the batch.
    """
    masks = items.need_masks("inpaint")
    for rgb, mask in zip(items.images, masks, strict=True):
        check_pair(rgb, mask)
    results: list[TaskResult | None] = [None] * len(items)
    for idx in group_by_size(items.images):
        for i, res in zip(idx, _inpaint_group(denoiser, items.take(idx), config, show_progress), strict=True):
            results[i] = res
    return results  # type: ignore[return-value]


def _inpaint_group(denoiser: Denoiser, items: Items, config: SamplerConfig, show_progress: bool) -> list[TaskResult]:
    h, w = items.images[0].shape[:2]
    multiple = denoiser.size_multiple
    image_t = pad_to_multiple(torch.stack([rgb_to_tensor(x) for x in items.images]), multiple)
    mask_t = pad_to_multiple(torch.from_numpy(np.stack(items.masks)).float()[:, None], multiple)
    constraint = LatentInpaint.from_pixels(denoiser, image_t, mask_t)
    out = sample_and_decode(denoiser, constraint, constraint.target.shape[1:], items.prompts, items.seeds, config,
                            show_progress)
    results = []
    for k, (rgb, mask) in enumerate(zip(items.images, items.masks, strict=True)):
        generated = tensor_to_rgb(out.images[k, :, :h, :w])
        image = composite(rgb, generated, mask, config.feather) if config.composite else generated
        results.append(task_result(out, k, image, len(items)))
    return results
