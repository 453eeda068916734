"""Replacement / blended-latent inpainting: paste the noised known latents after every DDIM step.

x_{t'} ← M ⊙ (α'·y + σ'·z) + (1 − M) ⊙ x_{t'}, and M ⊙ y + (1 − M) ⊙ x̂0 at the end.
Needs a constraint with ``target`` (y) and ``known`` (M), i.e. :class:`LatentInpaint`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fcs import noise as _noise
from fcs.denoiser import Cond
from fcs.samplers.loop import STEPS, Method, SampleResult, State, sample
from fcs.schedule import Schedule


class Replacement(Method):
    name = "replacement"

    def finish(self, constraint, state: State) -> None:
        state.x0 = constraint.known * constraint.target + (1 - constraint.known) * state.x0

    def after_transition(self, constraint, state: State, gens) -> None:
        alpha, sigma = state.schedule.alphas[state.i + 1], state.schedule.sigmas[state.i + 1]
        noised = alpha * constraint.target + sigma * _noise.randn(state.x.shape[1:], gens, state.x.device)
        state.x = constraint.known * noised + (1 - constraint.known) * state.x


@torch.no_grad()
def replacement(
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
    """Replacement sampling with the shared sampler signature; S model forwards, no backward.

    The known-region noise comes from ``gens`` (per item) so results do not depend on the batch.
    """
    if not hasattr(constraint, "known") or not hasattr(constraint, "target"):
        raise TypeError(
            f"replacement needs an inpainting constraint with known/target, got {type(constraint).__name__}"
        )
    if gens is None:
        raise ValueError("replacement needs per-item generators (gens) for the known-region noise")
    return sample(denoiser, constraint, noise, cond, Replacement(), steps=steps, eta=eta, gens=gens,
                  show_progress=show_progress, spacing=spacing, solver=solver)
