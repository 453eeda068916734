"""Model families behind the :class:`fcs.denoiser.Denoiser` contract, chosen by the pipeline class
that a diffusers folder's ``model_index.json`` names."""

from __future__ import annotations

import importlib

from fcs.families.unet import UNetDenoiser

# model_index.json "_class_name" -> the Denoiser class ("module:name", imported when used)
FAMILIES = {
    "StableDiffusionPipeline": "fcs.families.unet:UNetDenoiser",  # SD 1.x / 2.x, ε or v
    "DDIMPipeline": "fcs.families.unet:UNetDenoiser",  # pixel-space UNets
    "DDPMPipeline": "fcs.families.unet:UNetDenoiser",
    "StableDiffusionXLPipeline": "fcs.families.sdxl:SDXLDenoiser",
    "StableDiffusion3Pipeline": "fcs.families.sd3:SD3Denoiser",  # SD3 and SD3.5
    "FluxPipeline": "fcs.families.flux:FluxDenoiser",  # FLUX.1 dev and schnell
}


def family(class_name: str):
    """The Denoiser class for a diffusers pipeline class name; a clear error for any other."""
    if class_name not in FAMILIES:
        raise ValueError(
            f"model class {class_name!r} is not supported; fcs runs base (not inpainting-finetuned) checkpoints "
            f"of: {', '.join(FAMILIES)}")
    module, name = FAMILIES[class_name].split(":")
    return getattr(importlib.import_module(module), name)


__all__ = ["FAMILIES", "UNetDenoiser", "family"]
