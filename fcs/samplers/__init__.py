"""Samplers sharing one signature: ``sampler(denoiser, constraint, noise, cond, *, steps, eta, gens,
show_progress, **options) -> SampleResult``; each is a :class:`Method` of hooks over one outer loop."""

from fcs.samplers.ddim import ddim
from fcs.samplers.dps import dps
from fcs.samplers.loop import STEPS, Method, SampleResult, State, sample
from fcs.samplers.newton import JACOBIANS, learning_rates, newton
from fcs.samplers.replacement import replacement

SAMPLERS = {"newton": newton, "dps": dps, "replacement": replacement, "ddim": ddim}

__all__ = [
    "JACOBIANS", "SAMPLERS", "STEPS", "Method", "SampleResult", "State", "ddim", "dps", "learning_rates", "newton",
    "replacement", "sample",
]
