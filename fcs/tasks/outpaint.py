"""Outpainting as a task: extend each image by a border of generated pixels (inpainting of a larger canvas).

The canvas is the image with ``pad`` pixels added on every side, filled by edge replication so the
encoded known latents next to the border carry the image's own colours rather than a flat fill; the
border is the region to regenerate and the original pixels are composited back unchanged.
"""

from __future__ import annotations

import numpy as np

from fcs.config import SamplerConfig
from fcs.denoiser import Denoiser
from fcs.tasks import inpaint
from fcs.tasks.items import Items, TaskResult

DEFAULT_PAD = 32  # pixels added on each side


def canvas(image: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """(canvas uint8 (H + 2·pad, W + 2·pad, 3), mask float32 of the same size, 1 on the new border)."""
    if not isinstance(pad, int) or isinstance(pad, bool) or pad < 1:
        raise ValueError(f"pad must be a positive integer number of pixels, got {pad!r}")
    big = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    mask = np.ones(big.shape[:2], np.float32)
    mask[pad:-pad, pad:-pad] = 0
    return big, mask


def run(
    denoiser: Denoiser,
    items: Items,
    config: SamplerConfig = SamplerConfig(),  # noqa: B008 - frozen dataclass, safe to share as a default
    *,
    pad: int = DEFAULT_PAD,
    show_progress: bool = False,
) -> list[TaskResult]:
    """Extend uint8 RGB (H, W, 3) ``items.images`` to (H + 2·pad, W + 2·pad, 3); the centre is the input,
    unchanged when ``config.composite`` (the default). Masks are ignored."""
    pairs = [canvas(image, pad) for image in items.images]
    big = Items([c for c, _ in pairs], [m for _, m in pairs], items.prompts, items.seeds)
    return inpaint.run(denoiser, big, config, show_progress=show_progress)
