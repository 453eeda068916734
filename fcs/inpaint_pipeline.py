"""A diffusers-style inpainting pipeline for single-machine users, in the shape of
``StableDiffusionInpaintPipeline`` but sampling with inexact Newton (no fine-tuned inpainting UNet).

    >>> pipe = FastConstrainedInpaintPipeline.from_pretrained("tiny")
    >>> out = pipe(image=img, mask_image=mask, num_inference_steps=20, newton_steps=5)
    >>> out.images[0].save("restored.png")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from fcs.config import SamplerConfig
from fcs.denoiser import Denoiser
from fcs.families import family
from fcs.images import Source, to_mask_array, to_rgb_array
from fcs.loading import load_denoiser, model_folder
from fcs.presets import choose_preset, with_preset
from fcs.tasks import Items, inpaint


@dataclass
class InpaintOutput:
    """PIL images at the input sizes, plus per-item UNet forwards and constraint residuals."""

    images: list[Image.Image]
    nfe: list[int]
    residual_init: list[float]
    residual_final: list[float]


class FastConstrainedInpaintPipeline:
    """Training-free inpainting with any SD (or pixel-space) checkpoint; a thin shell over
    `fcs.tasks.inpaint.run`."""

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser

    @classmethod
    def from_pretrained(cls, model: str, device: str | None = "auto",
                        dtype: Any = "auto") -> FastConstrainedInpaintPipeline:
        """Load a hub id, a local diffusers folder, or a built-in name ('tiny')."""
        return cls(load_denoiser(model, device=device, dtype=dtype))

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
        image: Source | Sequence[Source],
        mask_image: Source | Sequence[Source],
        prompt: str | Sequence[str] = "",
        num_inference_steps: int | None = None,
        newton_steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | Sequence[int] = 0,
        config: SamplerConfig | None = None,
        preset: str | None = None,
        show_progress: bool = False,
    ) -> InpaintOutput:
        """Inpaint one image or a list. Masks: white = regenerate, black = keep.

        Settings: ``config`` (a full SamplerConfig) or ``preset`` (:data:`fcs.presets.PRESETS`, e.g.
        "cg"), not both; the explicit arguments override either. Neither: the model folder's
        recommended preset (``sampler.json``), else paper.
        """
        if config is not None and preset is not None:
            raise ValueError("give config or preset, not both (a config already holds every setting)")
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        masks = list(mask_image) if isinstance(mask_image, (list, tuple)) else [mask_image]
        n = len(images)
        prompts = [prompt] * n if isinstance(prompt, str) else list(prompt)
        seeds = [seed + i for i in range(n)] if isinstance(seed, int) else list(seed)
        overrides = {"steps": num_inference_steps, "newton_steps": newton_steps, "guidance_scale": guidance_scale}
        given = {k: v for k, v in overrides.items() if v is not None}
        if config is None:
            config = with_preset(SamplerConfig(), choose_preset(preset, model_folder(self.denoiser.name)))
        config = SamplerConfig.from_dict({**config.to_dict(), **given})
        results = inpaint.run(
            self.denoiser, Items([to_rgb_array(x) for x in images], [to_mask_array(m) for m in masks], prompts, seeds),
            config, show_progress=show_progress,
        )
        for res in results:
            if res.error:
                raise RuntimeError(res.error)
        return InpaintOutput(
            images=[Image.fromarray(r.image) for r in results], nfe=[r.nfe for r in results],
            residual_init=[r.residual_init for r in results], residual_final=[r.residual_final for r in results],
        )
