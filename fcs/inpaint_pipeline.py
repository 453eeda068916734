"""A diffusers-style inpainting pipeline for single-machine users: a drop-in for a script written for
``StableDiffusionInpaintPipeline`` / ``AutoPipelineForInpainting``, sampling with inexact Newton (no
fine-tuned inpainting UNet).

    >>> pipe = FastConstrainedInpaintPipeline.from_pretrained("photo")
    >>> generator = torch.Generator("cpu").manual_seed(0)
    >>> image = pipe(prompt="", image=init_image, mask_image=mask_image, generator=generator).images[0]

``__call__`` takes diffusers' arguments (``generator``, ``output_type`` 'pil'/'np'/'pt',
``num_images_per_prompt``, ``height``/``width``, ``eta``, ``return_dict``, ``strength=1.0``) plus ours
(``seed``, ``newton_steps``, ``config``, ``preset``; ``tuning=`` a record of ``fcs tune restore`` at
``from_pretrained``); diffusers arguments this sampler cannot honour fail
with the reason (:data:`fcs.diffusers_args.UNSUPPORTED`). The translation lives in
:mod:`fcs.diffusers_args`; the work in :func:`fcs.inpaint.inpaint`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fcs.config import SamplerConfig
from fcs.denoiser import Denoiser
from fcs.diffusers_args import batch_inputs, check_call, format_images, resize, seeds_for
from fcs.families import family
from fcs.loading import load_denoiser, model_folder
from fcs.tasks import Items, inpaint
from fcs.tuning import record as records
from fcs.tuning.apply import sampler_for

TASK = "restore"  # the job task whose tuning records apply here


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

    def __init__(self, denoiser: Denoiser, tuning: str | dict | None = None) -> None:
        self.denoiser = denoiser
        self.tuning = records.read(tuning) if isinstance(tuning, (str, Path)) else tuning
        self._where = str(tuning) if isinstance(tuning, (str, Path)) else "tuning record"
        if self.tuning is not None:  # refused now, naming both, if made for another model or task
            records.check(self.tuning, self._where, task=TASK, model=denoiser.name)

    @classmethod
    def from_pretrained(cls, model: str, device: str | None = "auto", dtype: Any = "auto",
                        torch_dtype: Any = None, tuning: str | dict | None = None) -> FastConstrainedInpaintPipeline:
        """Load a hub id, a local diffusers folder, or a built-in name ('tiny', 'photo').
        ``torch_dtype`` is diffusers' name for ``dtype``. ``tuning``: a tuning record (the path of
        ``fcs tune restore``'s ``tuning.json``, or the record itself) whose chosen settings calls use."""
        if torch_dtype is not None and dtype != "auto":
            raise ValueError("give dtype or torch_dtype, not both (the same setting)")
        return cls(load_denoiser(model, device=device, dtype=dtype if torch_dtype is None else torch_dtype),
                   tuning=tuning)

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
        both; the explicit arguments override either. Neither: the ``tuning`` record given to
        ``from_pretrained``, else the model folder's own, else the default preset (:meth:`settings`).
        ``return_dict=False``: ``(images, None)`` as diffusers returns.
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

    def settings(self, preset: str | None = None, **explicit: Any) -> SamplerConfig:
        """The settings a call uses: ``explicit`` SamplerConfig fields over ``preset``, else over the
        ``tuning`` record, else the model folder's own record, else the default preset
        (:func:`fcs.tuning.apply.sampler_for`)."""
        config, _ = sampler_for(SamplerConfig(), task=TASK, model=self.denoiser.name, preset=preset,
                                record=self.tuning, where=self._where, folder=model_folder(self.denoiser.name),
                                explicit=explicit)
        return config

    def _config(self, config: SamplerConfig | None, preset: str | None, **overrides: Any) -> SamplerConfig:
        """``config``, else :meth:`settings` for ``preset``; non-None overrides win."""
        if config is not None and preset is not None:
            raise ValueError("give config or preset, not both (a config already holds every setting)")
        given = {k: v for k, v in overrides.items() if v is not None}
        if config is None:
            return self.settings(preset, **given)
        return SamplerConfig.from_dict({**config.to_dict(), **given})
