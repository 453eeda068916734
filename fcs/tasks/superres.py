"""Super-resolution ×s as a task: low-res uint8 RGB arrays in, s× larger arrays out.

Two ways to get the error vector in model space (``variant``):
    "decoder": e = −∇‖A(D(x̂0)) − y‖ through the VAE decoder (the paper's; exact direction)
    "encoder": e = E(back-projected D(x̂0)) − x̂0, VAE forwards only (no backward pass at all)
"""

from __future__ import annotations

import torch

from fcs.config import SamplerConfig
from fcs.constraints import EncoderSuperResolution, SuperResolution
from fcs.denoiser import Denoiser
from fcs.images import pad_to_multiple, rgb_to_tensor, tensor_to_rgb
from fcs.tasks.decode import sample_and_decode, task_result
from fcs.tasks.items import Items, TaskResult, group_by_size

SR_DEFAULTS = SamplerConfig(newton_steps=10, lr=0.1)  # the paper's super-resolution setting
SCALES = (2, 4, 8)
DEFAULT_SCALE = 4
VARIANTS = ("decoder", "encoder")


def run(
    denoiser: Denoiser,
    items: Items,
    config: SamplerConfig = SR_DEFAULTS,
    *,
    scale: int = DEFAULT_SCALE,
    variant: str = VARIANTS[0],
    show_progress: bool = False,
) -> list[TaskResult]:
    """Upscale uint8 RGB (h, w, 3) ``items.images`` by ``scale`` (2, 4 or 8); results are (s·h, s·w, 3).
    Masks are ignored."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    results: list[TaskResult | None] = [None] * len(items)
    for idx in group_by_size(items.images):
        group = items.take(idx)
        h, w = group.images[0].shape[:2]
        # the output side s·h must fit the model grid: pad the low-res input by edge replication
        low = pad_to_multiple(torch.stack([rgb_to_tensor(x) for x in group.images]),
                              max(1, denoiser.size_multiple // scale))
        low = low.to(denoiser.device)
        if variant == "decoder":
            constraint = SuperResolution(denoiser.decode, low, scale)
        else:
            constraint = EncoderSuperResolution(denoiser.decode, denoiser.encode, low, scale)
        f = denoiser.scale_factor
        shape = (denoiser.channels, low.shape[-2] * scale // f, low.shape[-1] * scale // f)
        out = sample_and_decode(denoiser, constraint, shape, group.prompts, group.seeds, config, show_progress)
        for k, i in enumerate(idx):
            results[i] = task_result(out, k, tensor_to_rgb(out.images[k, :, : h * scale, : w * scale]), len(idx))
    return results  # type: ignore[return-value]
