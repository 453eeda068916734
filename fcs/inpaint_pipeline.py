"""A diffusers-style inpainting pipeline for single-machine users: a drop-in for a script written for
``StableDiffusionInpaintPipeline`` / ``AutoPipelineForInpainting``, sampling with inexact Newton (no
fine-tuned inpainting UNet).

    >>> pipe = FastConstrainedInpaintPipeline.from_pretrained("photo")
    >>> generator = torch.Generator("cpu").manual_seed(0)
    >>> image = pipe(prompt="", image=init_image, mask_image=mask_image, generator=generator).images[0]

``__call__`` takes diffusers' arguments (``generator``, ``output_type`` 'pil'/'np'/'pt',
``num_images_per_prompt``, ``height``/``width``, ``eta``, ``return_dict``, ``strength=1.0``) plus ours
(``seed``, ``newton_steps``, ``config``, ``preset``); diffusers arguments this sampler cannot honour fail
with the reason (:data:`fcs.diffusers_args.UNSUPPORTED`). The translation lives in
:mod:`fcs.diffusers_args`; the work in :func:`fcs.inpaint.inpaint`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from fcs.config import SamplerConfig
from fcs.denoiser import Denoiser
from fcs.diffusers_args import batch_inputs, check_call, format_images, resize, seeds_for
from fcs.families import family
from fcs.loading import load_denoiser, model_folder
from fcs.presets import choose_preset, with_preset
from fcs.tasks import Items, inpaint


@dataclass
class InpaintOutput:
    """diffusers' ``StableDiffusionPipelineOutput`` fields (``images`` in the requested output_type;
    ``nsfw_content_detected`` is None: no safety checker runs), plus per-image UNet forwards and
    constraint residuals."""

    images: list[Image.Image] | np.ndarray | torch.Tensor
    nsfw_content_detected: list[bool] | None
    nfe: list[int]
    residual_init: list[float]
    residual_final: list[float]


class FastConstrainedInpaintPipeline:
    """Training-free inpainting with any SD (or pixel-space) checkpoint; a thin shell over
    `fcs.tasks.inpaint.run`."""

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser

    @classmethod
    def from_pretrained(cls, model: str, device: str | None = "auto", dtype: Any = "auto",
                        torch_dtype: Any = None) -> FastConstrainedInpaintPipeline:
        """Load a hub id, a local diffusers folder, or a built-in name ('tiny', 'photo').
        ``torch_dtype`` is diffusers' name for ``dtype``."""
        if torch_dtype is not None and dtype != "auto":
            raise ValueError("give dtype or torch_dtype, not both (the same setting)")
        return cls(load_denoiser(model, device=device, dtype=dtype if torch_dtype is None else torch_dtype))

    @classmethod
    def from_pipe(cls, pipe: Any) -> FastConstrainedInpaintPipeline:
        """Reuse the components of an existing diffusers pipeline of any supported family (no copy)."""
        name = getattr(pipe, "name_or_path", type(pipe).__name__)
        return cls(family(type(pipe).__name__).from_pipe(pipe, name=name))

    def to(self, device: str) -> FastConstrainedInpaintPipeline:
        self.denoiser.to(device)
        return self

    def __call__(
        self,
        prompt: str | Sequence[str] | None = None,
        image: Any = None,
        mask_image: Any = None,
        height: int | None = None,
        width: int | None = None,
        strength: float = 1.0,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | Sequence[str] | None = None,
        num_images_per_prompt: int = 1,
        eta: float | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        newton_steps: int | None = None,
        seed: int | Sequence[int] | None = None,
        config: SamplerConfig | None = None,
        preset: str | None = None,
        show_progress: bool = False,
        **unsupported: Any,
    ) -> InpaintOutput | tuple:
        """Inpaint one image or a batch. Masks: white = regenerate, black = keep.

        Images and masks: PIL images, paths, bytes, uint8 arrays, float arrays/tensors in [0, 1]
        (images (H, W, C) / (C, H, W), masks (H, W)), batches of them, or lists; a single image, mask or
        prompt is shared by all. Each is repeated ``num_images_per_prompt`` times. Noise: ``seed``
        (image i gets seed + i; default 0) or ``generator`` (one drawn in turn, or one per image).
        Settings: ``config`` (a full SamplerConfig) or ``preset`` (:data:`fcs.presets.PRESETS`), not
        both; the explicit arguments override either. Neither: the model folder's recommended preset
        (``sampler.json``), else paper. ``return_dict=False``: ``(images, None)`` as diffusers returns.
        """
        check_call(unsupported, strength, negative_prompt, output_type, num_images_per_prompt)
        config = self._config(config, preset, steps=num_inference_steps, newton_steps=newton_steps,
                              guidance_scale=guidance_scale, eta=eta)
        images, masks, prompts = batch_inputs(image, mask_image, prompt, num_images_per_prompt)
        images, masks = resize(images, masks, height, width, self.denoiser.size_multiple)
        seeds = seeds_for(len(images), seed, generator)
        results = inpaint.run(self.denoiser, Items(images, masks, prompts, seeds), config, show_progress=show_progress)
        for res in results:
            if res.error:
                raise RuntimeError(res.error)
        out = InpaintOutput(
            images=format_images([r.image for r in results], output_type), nsfw_content_detected=None,
            nfe=[r.nfe for r in results], residual_init=[r.residual_init for r in results],
            residual_final=[r.residual_final for r in results],
        )
        return out if return_dict else (out.images, out.nsfw_content_detected)

    def _config(self, config: SamplerConfig | None, preset: str | None, **overrides: Any) -> SamplerConfig:
        """``config``, else ``preset``, else the model's recommended preset; non-None overrides win."""
        if config is not None and preset is not None:
            raise ValueError("give config or preset, not both (a config already holds every setting)")
        if config is None:
            config = with_preset(SamplerConfig(), choose_preset(preset, model_folder(self.denoiser.name)))
        given = {k: v for k, v in overrides.items() if v is not None}
        return SamplerConfig.from_dict({**config.to_dict(), **given})
