"""What every sampler shares: the result type, the DDIM update and the per-step bookkeeping."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from fcs import noise as _noise

STEPS = 20  # S outer DDIM steps, the paper's default for every sampler


@dataclass
class SampleResult:
    """What a sampler returns.

    Attributes:
        x0: final x̂0 with shape (B, C, h, w) in model space (decode it for images).
        nfe: (B,) UNet forward passes spent on each item.
        residuals: (B, S + 1) constraint residual of x̂0 at the first step, then after each outer step.
        backward_passes: UNet backward passes for the whole batch (0 for Newton).
    """

    x0: Tensor
    nfe: Tensor
    residuals: Tensor
    backward_passes: int = 0
    extras: dict = field(default_factory=dict)

    @property
    def residual_init(self) -> Tensor:
        return self.residuals[:, 0]

    @property
    def residual_final(self) -> Tensor:
        return self.residuals[:, -1]


def ddim_step(
    x0: Tensor,
    eps: Tensor,
    alpha_prev: float,
    alpha_t: float,
    eta: float = 0.0,
    gens: Sequence[torch.Generator] | None = None,
) -> Tensor:
    """DDIM update (Song et al., eq. 12): x_{t'} = √ᾱ' x̂0 + √(1 − ᾱ' − σ²) ε + σ z.

    x0, eps: (B, C, h, w); alpha_prev = ᾱ_{t'}, alpha_t = ᾱ_t; eta scales σ (0 = deterministic).
    """
    sigma = eta * ((1 - alpha_prev) / (1 - alpha_t) * (1 - alpha_t / alpha_prev)) ** 0.5
    x = alpha_prev**0.5 * x0 + max(1 - alpha_prev - sigma**2, 0.0) ** 0.5 * eps
    if sigma > 0:
        if gens is None:
            raise ValueError("eta > 0 needs per-item generators")
        x = x + sigma * _noise.randn(x0.shape[1:], gens, x0.device)
    return x


def steps_with_prev(denoiser, steps: int) -> list[tuple[int, int | None]]:
    """Pairs (t, t_prev) for the outer loop; t_prev is None on the last step (output x̂0)."""
    ts = denoiser.timesteps(steps)
    return list(zip(ts, ts[1:] + [None], strict=True))


def progress(items: Iterable, enabled: bool, desc: str) -> Iterable:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)


def residual_of(constraint, x0: Tensor) -> Tensor:
    with torch.no_grad():
        return constraint.residual(x0).detach().float()
