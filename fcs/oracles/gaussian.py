"""A stationary Gaussian prior over images or latents: covariance diagonal in the Fourier basis.

x0 = μ + U·g with U an orthonormal channel mix (the principal colours of the fitting data) and g
independent stationary fields on the h × w torus, field k with power spectrum
λ_k(f) = A_k / (|f|² + f0²)^(β_k/2), f in cycles per pixel (so any h × w has the same statistics).
Its denoiser is exact: E[x0 | x_t] = μ + U·F⁻¹[αλ / (α²λ + σ²) · F(Uᵀ(x_t − αμ))] with
x_t = α·x0 + σ·ε, and J = ∂x̂0/∂x_t is the same filter: symmetric positive definite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

CUTOFF = 1 / 64  # f0: the spectrum flattens below 1/64 cycles per pixel (keeps the mean's variance finite)


@dataclass(frozen=True)
class StationaryGaussian:
    """mean (C,), mix U (C, C) orthonormal, amplitude A (C,), exponent β (C,), all float64."""

    mean: Tensor
    mix: Tensor
    amplitude: Tensor
    exponent: Tensor
    cutoff: float = CUTOFF

    @property
    def channels(self) -> int:
        return self.mean.shape[0]

    def spectrum(self, h: int, w: int) -> Tensor:
        """λ (C, h, w): the covariance eigenvalue of each channel component at each DFT frequency."""
        fy, fx = torch.fft.fftfreq(h, dtype=torch.float64), torch.fft.fftfreq(w, dtype=torch.float64)
        radius2 = fy[:, None] ** 2 + fx[None, :] ** 2 + self.cutoff**2
        return self.amplitude[:, None, None] * radius2[None] ** (-self.exponent[:, None, None] / 2)

    def _filter(self, x: Tensor, gain: Tensor) -> Tensor:
        """U · F⁻¹[gain ⊙ F(Uᵀ x)] for x (B, C, h, w) float64; gain (C, h, w) real and symmetric."""
        g = torch.einsum("ck,bchw->bkhw", self.mix, x)
        g = torch.fft.ifft2(gain * torch.fft.fft2(g)).real
        return torch.einsum("ck,bkhw->bchw", self.mix, g)

    def _centre(self, x: Tensor, scale: float = 1.0) -> Tensor:
        return x - scale * self.mean.view(1, -1, 1, 1)

    def cov(self, v: Tensor) -> Tensor:
        """C·v for v (B, C, h, w) (float64 out)."""
        return self._filter(v.double(), self.spectrum(*v.shape[-2:]))

    def sample(self, gens: Sequence[torch.Generator], shape: Sequence[int]) -> Tensor:
        """One prior sample per generator, (N, C, h, w) float64; shape = (C, h, w)."""
        white = torch.stack([torch.randn(tuple(shape), generator=g, dtype=torch.float64) for g in gens])
        return self._centre(self._filter(white, self.spectrum(*shape[-2:]).sqrt()), -1.0)

    def denoise(self, x: Tensor, alpha: float, sigma: float) -> Tensor:
        """E[x0 | x_t = x] (float64) for x (B, C, h, w)."""
        lam = self.spectrum(*x.shape[-2:])
        gain = alpha * lam / (alpha**2 * lam + sigma**2)
        return self._centre(self._filter(self._centre(x.double(), alpha), gain), -1.0)

    def to_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("mean", "mix", "amplitude", "exponent")} | {
            "cutoff": self.cutoff}

    @classmethod
    def from_dict(cls, values: dict) -> StationaryGaussian:
        tensors = {k: torch.tensor(values[k], dtype=torch.float64) for k in ("mean", "mix", "amplitude", "exponent")}
        return cls(**tensors, cutoff=float(values["cutoff"]))


def fit_stationary(fields: Sequence[np.ndarray], cutoff: float = CUTOFF) -> StationaryGaussian:
    """Fit the prior to square fields (C, n, n): mean and principal channel mix from all pixels, then
    per component a least-squares line through the log of the Hann-windowed power against
    log √(|f|² + f0²), over the frequencies above 2/n cycles per pixel."""
    data = np.stack([np.asarray(f, np.float64) for f in fields])  # (N, C, n, n)
    n = data.shape[-1]
    mean = data.mean(axis=(0, 2, 3))
    centred = data - mean[None, :, None, None]
    channel_cov = np.einsum("bchw,bdhw->cd", centred, centred) / (centred.size / centred.shape[1])
    values, vectors = np.linalg.eigh(channel_cov)
    mix = vectors[:, ::-1]
    mix = mix * np.sign(mix[np.abs(mix).argmax(0), range(mix.shape[1])])  # a fixed sign per column
    g = np.einsum("ck,bchw->bkhw", mix, centred)
    window = np.outer(np.hanning(n), np.hanning(n))
    power = (np.abs(np.fft.fft2(g * window)) ** 2).mean(0) / (window**2).sum()  # (C, n, n)
    f = np.fft.fftfreq(n)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    use = radius > 2 / n
    design = np.stack([np.ones(use.sum()), -0.5 * np.log(radius[use] ** 2 + cutoff**2)], 1)
    amplitude, exponent = [], []
    for k in range(power.shape[0]):
        (log_a, beta), *_ = np.linalg.lstsq(design, np.log(power[k][use]), rcond=None)
        amplitude.append(np.exp(log_a))
        exponent.append(beta)
    return StationaryGaussian(*(torch.tensor(np.asarray(v), dtype=torch.float64)
                                for v in (mean, mix.copy(), amplitude, exponent)), cutoff=cutoff)
