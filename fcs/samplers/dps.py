"""Diffusion posterior sampling (Chung et al., 2023): a baseline that backpropagates through the model.

Per step: x̂0 = tweedie(x_t) with autograd on; g = ∇_{x_t} residual(x̂0); x_{t'} = DDIM(x̂0, ε) − ζ·g.
Cost: S model forwards plus S model backward passes, at training-level activation memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fcs.constraints.base import Constraint
from fcs.denoiser import Cond
from fcs.samplers.loop import STEPS, Method, SampleResult, State, sample
from fcs.schedule import Schedule


class DPS(Method):
    """Predict with autograd, then subtract ζ·∇_{x_t} residual after the transition."""

    name = "dps"

    def __init__(self, step_size: float) -> None:
        self.step_size, self.grad = step_size, None

    def predict(self, denoiser, constraint, state: State) -> None:
        with torch.enable_grad():
            x_in = state.x.detach().requires_grad_(True)
            eps, x0 = denoiser.predict(x_in, state.t, state.cond)
            (self.grad,) = torch.autograd.grad(constraint.residual(x0).sum(), x_in)
        self.backward_passes += 1
        state.eps, state.x0 = eps.detach(), x0.detach()

    def after_transition(self, constraint, state: State, gens) -> None:
        state.x = state.x - self.step_size * self.grad


def dps(
    denoiser,
    constraint: Constraint,
    noise: Tensor,
    cond: Cond | None = None,
    *,
    steps: int | Schedule = STEPS,
    eta: float = 0.0,
    gens: Sequence[torch.Generator] | None = None,
    show_progress: bool = False,
    step_size: float = 1.0,
    spacing: str = "model",
    solver: str = "ddim",
) -> SampleResult:
    """DPS with the shared sampler signature; ``step_size`` is ζ (per item, on the residual norm).

    noise: x_T (B, C, h, w). Returns the final x̂0 and per-item NFE / residual trace.
    """
    return sample(denoiser, constraint, noise, cond, DPS(step_size), steps=steps, eta=eta, gens=gens,
                  show_progress=show_progress, spacing=spacing, solver=solver)
