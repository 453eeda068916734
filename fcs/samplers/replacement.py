"""Replacement / blended-latent inpainting: paste the noised known latents after every DDIM step.

x_{t'} ← M ⊙ (√ᾱ' y + √(1 − ᾱ') z) + (1 − M) ⊙ x_{t'}, and M ⊙ y + (1 − M) ⊙ x̂0 at the end.
Needs a constraint with ``target`` (y) and ``known`` (M), i.e. :class:`LatentInpaint`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fcs import noise as _noise
from fcs.samplers.common import STEPS, SampleResult, ddim_step, progress, residual_of, steps_with_prev


@torch.no_grad()
def replacement(
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
    """Replacement sampling with the shared sampler signature; S UNet forwards, no backward.

    The known-region noise comes from ``gens`` (per item) so results do not depend on the batch.
    """
    if not hasattr(constraint, "known") or not hasattr(constraint, "target"):
        raise TypeError(
            f"replacement needs an inpainting constraint with known/target, got {type(constraint).__name__}"
        )
    if gens is None:
        raise ValueError("replacement needs per-item generators (gens) for the known-region noise")
    known, y = constraint.known, constraint.target
    x = noise.to(denoiser.device, torch.float32).clone()
    nfe = torch.zeros(x.shape[0], dtype=torch.long)
    trace = []
    for t, t_prev in progress(steps_with_prev(denoiser, steps), show_progress, "replacement"):
        eps, x0 = denoiser.predict(x, t, cond)
        nfe += 1
        if not trace:
            trace.append(residual_of(constraint, x0).cpu())
        if t_prev is None:
            x0 = known * y + (1 - known) * x0
            trace.append(residual_of(constraint, x0).cpu())
            break
        x = ddim_step(x0, eps, denoiser.alpha(t_prev), denoiser.alpha(t), eta, gens)
        a = denoiser.alpha(t_prev)
        noised = a**0.5 * y + (1 - a) ** 0.5 * _noise.randn(x.shape[1:], gens, x.device)
        x = known * noised + (1 - known) * x
        trace.append(residual_of(constraint, x0).cpu())
    return SampleResult(x0=x0, nfe=nfe, residuals=torch.stack(trace, 1))
