"""Samplers sharing one signature: ``sampler(denoiser, constraint, noise, cond, *, steps, eta, gens,
show_progress, **options) -> SampleResult``."""

from fcs.samplers.common import SampleResult, ddim_step
from fcs.samplers.ddim import ddim
from fcs.samplers.dps import dps
from fcs.samplers.newton import JACOBIANS, learning_rates, newton
from fcs.samplers.replacement import replacement

SAMPLERS = {"newton": newton, "dps": dps, "replacement": replacement, "ddim": ddim}

__all__ = [
    "JACOBIANS", "SAMPLERS", "SampleResult", "ddim", "ddim_step", "dps", "learning_rates", "newton", "replacement",
]
