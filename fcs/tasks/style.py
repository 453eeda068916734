"""Style-guided generation as a task: a prompt plus a reference style image per item, under a
Gram-matrix loss on early CLIP vision features (:class:`fcs.constraints.Style`), with
classifier-free guidance (default scale 3).

The CLIP vision model is an option, ``clip=``, loaded by the caller once and reused across calls
(:func:`fcs.constraints.style.load_clip_vision`; the pipeline loads it once per actor).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fcs.config import SamplerConfig
from fcs.constraints.style import Style
from fcs.denoiser import Denoiser
from fcs.images import rgb_to_tensor, tensor_to_rgb
from fcs.tasks.decode import sample_and_decode, task_result
from fcs.tasks.items import Items, TaskResult

STYLE_DEFAULTS = SamplerConfig(guidance_scale=3.0)
DEFAULT_CLIP = "openai/clip-vit-base-patch32"  # the CLIP vision model whose early features define style
DEFAULT_SIZE = (512, 512)


def run(
    denoiser: Denoiser,
    items: Items,
    config: SamplerConfig = STYLE_DEFAULTS,
    *,
    clip: torch.nn.Module,
    size: Sequence[int] = DEFAULT_SIZE,
    show_progress: bool = False,
) -> list[TaskResult]:
    """Generate one (H, W) = ``size`` image per item from its prompt in the style of its reference
    ``items.images[i]`` (uint8 RGB, any size). ``clip``: a transformers
    ``CLIPVisionModel`` (required; e.g. ``load_clip_vision(DEFAULT_CLIP, device)``).

    Items are independent (each has its own reference); the batch runs as one sampler call.
    """
    h, w = size
    if h % denoiser.size_multiple or w % denoiser.size_multiple:
        raise ValueError(f"size {tuple(size)} must be a multiple of {denoiser.size_multiple} for this model")
    refs = [rgb_to_tensor(r).to(denoiser.device) for r in items.images]
    f = denoiser.scale_factor
    out = sample_and_decode(denoiser, Style(denoiser.decode, clip, refs), (denoiser.channels, h // f, w // f),
                            items.prompts, items.seeds, config, show_progress)
    return [task_result(out, k, tensor_to_rgb(out.images[k]), len(items)) for k in range(len(items))]
