"""fcs: fast constrained sampling in pre-trained diffusion models (inexact Newton, arXiv 2410.18804).

Public API:
    Denoiser, Cond                     the contract every model family implements: x_t -> (ε̂, x̂0)
    UNetDenoiser, load_denoiser        SD 1.x/2.x and pixel UNets; load any model or built-in name
    Schedule                           x_t = α_t·x0 + σ_t·ε and the DDIM transition
    constraints.*                      LatentInpaint, PixelInpaint, SuperResolution, ImageLoss
    newton, dps, replacement, ddim     samplers with one shared signature (SAMPLERS registry)
    SamplerConfig, inpaint             the inpainting task on arrays (one ItemResult per item)
    FastConstrainedInpaintPipeline     a diffusers-style pipeline returning PIL images
"""

from fcs import constraints
from fcs.config import SamplerConfig
from fcs.denoiser import Cond, Denoiser
from fcs.families.unet import UNetDenoiser
from fcs.inpaint import inpaint
from fcs.inpaint_pipeline import FastConstrainedInpaintPipeline, InpaintOutput
from fcs.loading import load_denoiser
from fcs.sample import ItemResult
from fcs.samplers import SAMPLERS, SampleResult, ddim, dps, newton, replacement
from fcs.schedule import Schedule

__all__ = [
    "SAMPLERS", "Cond", "Denoiser", "FastConstrainedInpaintPipeline", "InpaintOutput", "ItemResult", "SampleResult",
    "SamplerConfig", "Schedule", "UNetDenoiser", "constraints", "ddim", "dps", "inpaint", "load_denoiser", "newton",
    "replacement",
]
__version__ = "0.1.0"
