"""The noise schedule every sampler sees: x_t = α_t·x0 + σ_t·ε, and the DDIM transition between steps.

Two conventions write every model family in this one form:
    variance-preserving (SD 1.x/2.x, ε- or v-prediction): α = √ᾱ_t, σ = √(1 − ᾱ_t)
    rectified flow (SD3, FLUX): α = 1 − s, σ = s; the network predicts v ≈ ε − x0

``to_prediction`` maps a network output in its convention to (ε̂, x̂0); after that no sampler knows
which convention it runs. DDIM with η = 0 is one transition for all, x_{t'} = α'·x̂0 + σ'·ε̂ (for a
flow it is the Euler step of the flow ODE).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from fcs import noise as _noise

PREDICTIONS = ("epsilon", "v_prediction", "flow")  # what a network's output is, per convention


def check_prediction(prediction_type: str) -> str:
    if prediction_type not in PREDICTIONS:
        raise ValueError(f"prediction_type {prediction_type!r} is not supported; use one of {', '.join(PREDICTIONS)}")
    return prediction_type


def to_prediction(out: Tensor, x: Tensor, alpha: float, sigma: float, prediction_type: str) -> tuple[Tensor, Tensor]:
    """(ε̂, x̂0) from a network output ``out`` at x_t = ``x`` (same shape) with coefficients α, σ.

    epsilon: x̂0 = (x − σ·ε̂)/α.  v_prediction (v = α·ε − σ·x0, variance-preserving): x̂0 = α·x − σ·v,
    ε̂ = σ·x + α·v.  flow (v = ε − x0 with α = 1 − σ): x̂0 = x − σ·v, ε̂ = x + α·v.
    """
    if prediction_type == "epsilon":
        return out, (x - sigma * out) / alpha
    if prediction_type == "v_prediction":
        return sigma * x + alpha * out, alpha * x - sigma * out
    if prediction_type == "flow":
        return x + alpha * out, x - sigma * out
    raise ValueError(f"prediction_type {prediction_type!r} is not one of {PREDICTIONS}")


def from_prediction(eps: Tensor, x0: Tensor, alpha: float, sigma: float, prediction_type: str) -> Tensor:
    """The network output that ``to_prediction`` maps back to (ε̂, x̂0): for analytic denoisers."""
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "v_prediction":
        return alpha * eps - sigma * x0
    if prediction_type == "flow":
        return eps - x0
    raise ValueError(f"prediction_type {prediction_type!r} is not one of {PREDICTIONS}")


def vp_coefficients(alphas_cumprod: Tensor, t: int) -> tuple[float, float]:
    """(α, σ) = (√ᾱ_t, √(1 − ᾱ_t)) in float64, as Python floats."""
    a = float(alphas_cumprod[int(t)])
    return a**0.5, (1 - a) ** 0.5


@dataclass(frozen=True)
class Schedule:
    """The outer steps of a sampler, noisiest first.

    Attributes:
        timesteps: what the denoiser's ``predict`` takes at each step (a training index for
            variance-preserving models, the flow time s or 1000·s for flows).
        alphas, sigmas: α_t and σ_t of each step (Python floats).
    """

    timesteps: tuple
    alphas: tuple[float, ...]
    sigmas: tuple[float, ...]

    def __post_init__(self) -> None:
        if not len(self.timesteps) == len(self.alphas) == len(self.sigmas) >= 1:
            raise ValueError("a schedule needs one timestep, alpha and sigma per step, and at least one step")

    def __len__(self) -> int:
        return len(self.timesteps)

    def scale(self, i: int) -> float:
        """√(α² + σ²) of step i: the size of x_t for unit-variance data (1 for variance-preserving
        models); step lengths in x_t are measured in this unit so they mean the same in every convention."""
        return (self.alphas[i] ** 2 + self.sigmas[i] ** 2) ** 0.5

    def transition(
        self, x0: Tensor, eps: Tensor, i: int, eta: float = 0.0, gens: Sequence[torch.Generator] | None = None,
    ) -> Tensor:
        """DDIM from step i to step i + 1 (Song et al., eq. 12, in α/σ form):
        x_{t'} = α'·x̂0 + √(σ'² − s²)·ε̂ + s·z with s = η·σ'·√(1 − (α·σ')²/(α'·σ)²).

        x0, eps: (B, C, h, w). ``eta`` = 0 is deterministic; > 0 needs per-item generators.
        """
        alpha, sigma = self.alphas[i], self.sigmas[i]
        alpha_next, sigma_next = self.alphas[i + 1], self.sigmas[i + 1]
        ratio = (alpha * sigma_next) / (alpha_next * sigma) if alpha_next * sigma > 0 else 0.0
        s = eta * sigma_next * max(1 - ratio**2, 0.0) ** 0.5
        x = alpha_next * x0 + max(sigma_next**2 - s**2, 0.0) ** 0.5 * eps
        if s > 0:
            if gens is None:
                raise ValueError("eta > 0 needs per-item generators")
            x = x + s * _noise.randn(x0.shape[1:], gens, x0.device)
        return x

    @classmethod
    def variance_preserving(cls, alphas_cumprod: Tensor, timesteps: Sequence[int]) -> Schedule:
        """SD's schedule at the given training indices (ᾱ read in float64)."""
        coefficients = [vp_coefficients(alphas_cumprod, t) for t in timesteps]
        return cls(tuple(int(t) for t in timesteps), tuple(a for a, _ in coefficients),
                   tuple(s for _, s in coefficients))

    @classmethod
    def flow(cls, sigmas: Sequence[float], time_scale: float = 1.0) -> Schedule:
        """A rectified-flow schedule at flow times s (α = 1 − s, σ = s); the model takes time_scale·s."""
        sigmas = tuple(float(s) for s in sigmas)
        return cls(tuple(time_scale * s for s in sigmas), tuple(1 - s for s in sigmas), sigmas)
