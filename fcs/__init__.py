"""fcs: fast constrained sampling in pre-trained diffusion models (inexact Newton, arXiv 2410.18804).

Public API:
    Denoiser, Cond                     the contract every model family implements: x_t -> (ε̂, x̂0)
    UNetDenoiser, load_denoiser        SD 1.x/2.x and pixel UNets; load any model or built-in name
    Schedule                           x_t = α_t·x0 + σ_t·ε and the DDIM transition
    constraints.*                      LatentInpaint, PixelInpaint, SuperResolution, ImageLoss
    newton, dps, replacement, ddim     samplers with one shared signature (SAMPLERS registry)
    SamplerConfig                      the sampler's settings (steps, K, lr, guidance, preset fields)
    tasks, Items, TaskResult           tasks on arrays, one signature: tasks.<name>.run(den, Items, config, **options)
    inpaint                            tasks.inpaint.run: inpaint(den, Items(images, masks), config)
    FastConstrainedInpaintPipeline     a diffusers-style pipeline returning PIL images
"""

from fcs import constraints, tasks
from fcs.config import SamplerConfig
from fcs.denoiser import Cond, Denoiser
from fcs.families.unet import UNetDenoiser
from fcs.inpaint_pipeline import FastConstrainedInpaintPipeline, InpaintOutput
from fcs.loading import load_denoiser
from fcs.samplers import SAMPLERS, SampleResult, ddim, dps, newton, replacement
from fcs.schedule import Schedule
from fcs.tasks.items import Items, TaskResult

inpaint = tasks.inpaint.run

__all__ = [
    "SAMPLERS", "Cond", "Denoiser", "FastConstrainedInpaintPipeline", "InpaintOutput", "Items", "SampleResult",
    "SamplerConfig", "Schedule", "TaskResult", "UNetDenoiser", "constraints", "ddim", "dps", "inpaint", "load_denoiser",
    "newton", "replacement", "tasks",
]
__version__ = "0.1.0"
