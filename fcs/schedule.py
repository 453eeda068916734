"""The noise schedule every sampler sees: x_t = α_t·x0 + σ_t·ε, and the DDIM transition between steps.

Two conventions write every model family in this one form:
    variance-preserving (SD 1.x/2.x, ε- or v-prediction): α = √ᾱ_t, σ = √(1 − ᾱ_t)
    rectified flow (SD3, FLUX): α = 1 − s, σ = s; the network predicts v ≈ ε − x0

``to_prediction`` maps a network output in its convention to (ε̂, x̂0); after that no sampler knows
which convention it runs. DDIM with η = 0 is one transition for all, x_{t'} = α'·x̂0 + σ'·ε̂ (for a
flow it is the Euler step of the flow ODE).

DDIM is first order: each step loses variance (for Gaussian data of variance v its factor on x_t is
cos Δθ times the exact one, θ = atan(σ/(α√v))), so samples come out too alike at S ≈ 20. The second-order
multistep step (:meth:`Schedule.second_order`, DPM-Solver++(2M) in α/σ form) reuses the previous step's
x̂0 and costs no forward; a grid uniform in log-SNR (:func:`log_snr_spaced`) spreads the angle evenly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from fcs import noise as _noise

PREDICTIONS = ("epsilon", "v_prediction", "flow")  # what a network's output is, per convention
# the outer time grid: the model's own (its scheduler's spacing) or uniform in log-SNR log(α/σ) between
# the own grid's first and last step
SPACINGS = ("model", "logsnr")
FINE_STEPS = 999  # the grid a log-SNR spacing picks its steps from (every training step of SD's schedule but
# one: 1000 with its steps_offset of 1 would ask for t = 1000)


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

    def log_snr(self, i: int) -> float:
        """λ_i = log(α_i/σ_i) (± inf at the ends of a flow)."""
        alpha, sigma = self.alphas[i], self.sigmas[i]
        if sigma <= 0 or alpha <= 0:
            return math.inf if sigma <= 0 else -math.inf
        return math.log(alpha / sigma)

    def second_order(self, x0: Tensor, eps: Tensor, previous_x0: Tensor, i: int) -> tuple[Tensor, Tensor]:
        """(x̂0, ε̂) for :meth:`transition` from step i that make it DPM-Solver++(2M)'s step: x̂0
        extrapolated with the previous step's, D = x̂0 + h/(2h₋)·(x̂0 − x̂0₋) with h = λ_{i+1} − λ_i,
        h₋ = λ_i − λ_{i−1}, and ε̂ kept consistent with x_t = α·x̂0 + σ·ε̂. First order where a log-SNR
        is infinite (a flow's last step)."""
        h, h_prev = self.log_snr(i + 1) - self.log_snr(i), self.log_snr(i) - self.log_snr(i - 1)
        if i == 0 or not (math.isfinite(h) and math.isfinite(h_prev)) or h_prev <= 0:
            return x0, eps
        step = x0 + (h / (2 * h_prev)) * (x0 - previous_x0)
        return step, eps + (self.alphas[i] / self.sigmas[i]) * (x0 - step)

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


def log_snr_spaced(own: Schedule, fine: Schedule) -> Schedule:
    """``len(own)`` steps of ``fine`` (noisiest first) nearest to a grid uniform in log-SNR between
    ``own``'s first and last step, each later than the one before; ``own`` if ``fine`` has too few."""
    steps = len(own)
    if steps < 3 or len(fine) < steps:
        return own
    lam = torch.tensor([fine.log_snr(j) for j in range(len(fine))], dtype=torch.float64)
    finite = lam[torch.isfinite(lam)]
    low, high = float(finite.min()), float(finite.max())  # a flow's pure-noise end (λ = −inf) ties the first
    lam = lam.clamp(low, high)
    ends = [min(max(own.log_snr(i), low), high) for i in (0, steps - 1)]
    targets = torch.linspace(*ends, steps, dtype=torch.float64)
    picked, floor = [], 0
    for k, target in enumerate(targets):
        ceiling = len(fine) - (steps - k)  # leave room for the steps after this one
        j = int(torch.argmin((lam[floor:ceiling + 1] - target).abs())) + floor
        picked.append(j)
        floor = j + 1
    return Schedule(tuple(fine.timesteps[j] for j in picked), tuple(fine.alphas[j] for j in picked),
                    tuple(fine.sigmas[j] for j in picked))
