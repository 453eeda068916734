"""Diffusion posterior sampling (Chung et al., 2023): a baseline that backpropagates through the UNet.

Per step: x̂0 = tweedie(x_t) with autograd on; g = ∇_{x_t} residual(x̂0); x_{t'} = DDIM(x̂0, ε) − ζ·g.
Cost: S UNet forwards plus S UNet backward passes, at training-level activation memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fcs.constraints.base import Constraint
from fcs.samplers.common import STEPS, SampleResult, ddim_step, progress, residual_of, steps_with_prev


def dps(
    denoiser,
    constraint: Constraint,
    noise: Tensor,
    cond: Tensor | None = None,
    *,
    steps: int = STEPS,
    eta: float = 0.0,
    gens: Sequence[torch.Generator] | None = None,
    show_progress: bool = False,
    step_size: float = 1.0,
) -> SampleResult:
    """DPS with the shared sampler signature; ``step_size`` is ζ (per item, on the residual norm).

    noise: x_T (B, C, h, w). Returns the final x̂0 and per-item NFE / residual trace.
    """
    x = noise.to(denoiser.device, torch.float32).clone()
    nfe = torch.zeros(x.shape[0], dtype=torch.long)
    trace, backward = [], 0
    for t, t_prev in progress(steps_with_prev(denoiser, steps), show_progress, "dps"):
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            eps, x0 = denoiser.predict(x_in, t, cond)
            r = constraint.residual(x0)
            (grad,) = torch.autograd.grad(r.sum(), x_in)
        backward += 1
        nfe += 1
        x0, eps = x0.detach(), eps.detach()
        if not trace:
            trace.append(r.detach().float().cpu())
        if t_prev is None:
            trace.append(residual_of(constraint, x0).cpu())
            break
        x = ddim_step(x0, eps, denoiser.alpha(t_prev), denoiser.alpha(t), eta, gens) - step_size * grad
        trace.append(r.detach().float().cpu())
    return SampleResult(x0=x0, nfe=nfe, residuals=torch.stack(trace, 1), backward_passes=backward)
