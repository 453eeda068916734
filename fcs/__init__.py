"""fcs: fast constrained sampling in pre-trained diffusion models (inexact Newton, arXiv 2410.18804).

Public API:
    Denoiser, load_denoiser            a diffusers model as x_t -> (ε, x̂0), plus VAE and text
    constraints.*                      LatentInpaint, PixelInpaint, SuperResolution, ImageLoss
    newton, dps, replacement, ddim     samplers with one shared signature (SAMPLERS registry)
    SamplerConfig, inpaint             the inpainting task on arrays (one ItemResult per item)
    FastConstrainedInpaintPipeline     a diffusers-style pipeline returning PIL images
"""

from fcs import constraints
from fcs.config import SamplerConfig
from fcs.denoiser import Denoiser
from fcs.inpaint import inpaint
from fcs.inpaint_pipeline import FastConstrainedInpaintPipeline, InpaintOutput
from fcs.loading import load_denoiser
from fcs.sample import ItemResult
from fcs.samplers import SAMPLERS, SampleResult, ddim, dps, newton, replacement

__all__ = [
    "SAMPLERS", "Denoiser", "FastConstrainedInpaintPipeline", "InpaintOutput", "ItemResult", "SampleResult",
    "SamplerConfig", "constraints", "ddim", "dps", "inpaint", "load_denoiser", "newton", "replacement",
]
__version__ = "0.1.0"
