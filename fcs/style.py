"""Style-guided generation as a task: a prompt plus a reference style image, under a Gram-matrix
loss on early CLIP vision features, with classifier-free guidance (default scale 3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fcs.config import SamplerConfig
from fcs.constraints import ImageLoss
from fcs.constraints.style import StyleLoss
from fcs.denoiser import Denoiser
from fcs.images import rgb_to_tensor, tensor_to_rgb
from fcs.sample import ItemResult, item_result, sample_and_decode

STYLE_DEFAULTS = SamplerConfig(guidance_scale=3.0)
DEFAULT_CLIP = "openai/clip-vit-base-patch32"  # the CLIP vision model whose early features define style
DEFAULT_SIZE = (512, 512)


def stylize(
    denoiser: Denoiser,
    clip: torch.nn.Module,
    references: Sequence[np.ndarray],
    prompts: Sequence[str],
    size: tuple[int, int] = DEFAULT_SIZE,
    seeds: Sequence[int] | None = None,
    config: SamplerConfig = STYLE_DEFAULTS,
    show_progress: bool = False,
) -> list[ItemResult]:
    """Generate one (H, W) = ``size`` image per prompt in the style of its reference (uint8 RGB).

    Items are independent (each has its own reference); the batch runs as one sampler call.
    """
    n = len(prompts)
    seeds = list(seeds) if seeds is not None else list(range(n))
    if not (len(references) == len(seeds) == n):
        raise ValueError(f"got {len(references)} references and {len(seeds)} seeds for {n} prompts; give one of each")
    h, w = size
    if h % denoiser.size_multiple or w % denoiser.size_multiple:
        raise ValueError(f"size {size} must be a multiple of {denoiser.size_multiple} for this model")
    refs = [rgb_to_tensor(r)[None].to(denoiser.device) for r in references]
    losses = [StyleLoss(clip, ref) for ref in refs]

    def loss(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([fn(images[k: k + 1]) for k, fn in enumerate(losses)])

    f = denoiser.scale_factor
    out = sample_and_decode(denoiser, ImageLoss(denoiser.decode, loss), (denoiser.channels, h // f, w // f),
                            prompts, seeds, config, show_progress)
    return [item_result(out, k, tensor_to_rgb(out.images[k]), n) for k in range(n)]
