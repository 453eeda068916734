"""Plain DDIM that ignores the constraint: the unconstrained reference (residuals still recorded)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fcs.samplers.common import STEPS, SampleResult, ddim_step, progress, residual_of, steps_with_prev


@torch.no_grad()
def ddim(
    denoiser,
    constraint,
    noise: Tensor,
    cond: Tensor | None = None,
    *,
    steps: int = STEPS,
    eta: float = 0.0,
    gens: Sequence[torch.Generator] | None = None,
    show_progress: bool = False,
) -> SampleResult:
    """Unconstrained DDIM sampling with the shared sampler signature; S UNet forwards."""
    x = noise.to(denoiser.device, torch.float32).clone()
    nfe = torch.zeros(x.shape[0], dtype=torch.long)
    trace = []
    for t, t_prev in progress(steps_with_prev(denoiser, steps), show_progress, "ddim"):
        eps, x0 = denoiser.predict(x, t, cond)
        nfe += 1
        if not trace:
            trace.append(residual_of(constraint, x0).cpu())
        trace.append(residual_of(constraint, x0).cpu())
        if t_prev is not None:
            x = ddim_step(x0, eps, denoiser.alpha(t_prev), denoiser.alpha(t), eta, gens)
    return SampleResult(x0=x0, nfe=nfe, residuals=torch.stack(trace, 1))
