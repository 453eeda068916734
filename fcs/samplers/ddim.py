"""Plain DDIM that ignores the constraint: the unconstrained reference (residuals still recorded)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fcs.denoiser import Cond
from fcs.samplers.loop import STEPS, Method, SampleResult, sample
from fcs.schedule import Schedule


@torch.no_grad()
def ddim(
    denoiser,
    constraint,
    noise: Tensor,
    cond: Cond | None = None,
    *,
    steps: int | Schedule = STEPS,
    eta: float = 0.0,
    gens: Sequence[torch.Generator] | None = None,
    show_progress: bool = False,
    spacing: str = "model",
    solver: str = "ddim",
) -> SampleResult:
    """Unconstrained DDIM sampling with the shared sampler signature; S model forwards."""
    return sample(denoiser, constraint, noise, cond, Method(), steps=steps, eta=eta, gens=gens,
                  show_progress=show_progress, spacing=spacing, solver=solver)
