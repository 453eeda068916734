"""A mixture of stationary Gaussian image priors: a multimodal prior over images with an exact posterior.

x0 ~ Σ_k w_k N(μ_k, C_k), each component a :class:`StationaryGaussian` (its own mean colour and
spectrum). Under x_t = α·x0 + σ·ε each component stays Gaussian with a covariance α²C_k + σ²I that is
diagonal in its (channel mix, Fourier) basis, so the responsibilities π_k(x_t) are exact and
E[x0 | x_t] = Σ_k π_k(x_t)·E_k[x0 | x_t]. Given a linear observation the posterior is a mixture again:
each component conditioned on its own, re-weighted by its evidence (:class:`ImageMixturePosterior`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from fcs.oracles.gaussian import StationaryGaussian


@dataclass(frozen=True)
class ImageMixture:
    """components: StationaryGaussian priors over the same (C, h, w); weights (K,) float64."""

    components: tuple[StationaryGaussian, ...]
    weights: Tensor

    @property
    def channels(self) -> int:
        return self.components[0].channels

    def log_responsibilities(self, x: Tensor, alpha: float, sigma: float) -> Tensor:
        """log π_k(x_t = x) (B, K) for x (B, C, h, w)."""
        log_n = torch.stack([_log_density(c, x.double(), alpha, sigma) for c in self.components], 1)
        return torch.log_softmax(torch.log(self.weights)[None] + log_n, dim=1)

    def responsibilities(self, x0: Tensor) -> Tensor:
        """p(k | x0) (B, K) of clean images x0 (B, C, h, w): what share of the components a sample holds."""
        return self.log_responsibilities(x0, 1.0, 0.0).exp()

    def denoise(self, x: Tensor, alpha: float, sigma: float) -> Tensor:
        """E[x0 | x_t = x] (float64) for x (B, C, h, w)."""
        resp = self.log_responsibilities(x, alpha, sigma).exp()
        means = torch.stack([c.denoise(x, alpha, sigma) for c in self.components], 1)  # (B, K, C, h, w)
        return (resp.view(*resp.shape, 1, 1, 1) * means).sum(1)

    def sample(self, gens: Sequence[torch.Generator], shape: Sequence[int]) -> Tensor:
        """One prior sample per generator, (N, C, h, w) float64."""
        rows = []
        for g in gens:
            k = int(torch.multinomial(self.weights, 1, generator=g))
            rows.append(self.components[k].sample([g], shape)[0])
        return torch.stack(rows)


def _log_density(prior: StationaryGaussian, x: Tensor, alpha: float, sigma: float) -> Tensor:
    """log N(x; α·μ, α²·C + σ²·I) (B,) for x (B, C, h, w) float64, in the prior's eigenbasis (Parseval:
    the unnormalised DFT's squared modulus is h·w times the signal's)."""
    h, w = x.shape[-2:]
    var = alpha**2 * prior.spectrum(h, w) + sigma**2  # (C, h, w)
    g = torch.einsum("ck,bchw->bkhw", prior.mix, x - alpha * prior.mean.view(1, -1, 1, 1))
    power = torch.fft.fft2(g).abs() ** 2 / (h * w)
    return -0.5 * ((power / var).flatten(1).sum(1) + torch.log(2 * math.pi * var).sum())


# the mixture oracle's components: the fitted pixel prior with its mean moved along each principal
# colour and its spectrum scaled. The shifts are of the order of the prior's own spread of an image's
# mean colour, so an observed part of an image leaves the component uncertain (a multimodal posterior)
SHIFTS = (1.0, -1.0, 0.0)  # in units of the prior's standard deviation of the image-mean brightness
COLOUR_SHIFTS = (0.0, 0.0, 1.0)  # along the second principal colour, same units
AMPLITUDES = (1.0, 1.0, 1.04)
MIXTURE_WEIGHTS = (0.5, 0.3, 0.2)
MIXTURE_SIDE = 32  # the size the shifts are measured at


def colour_mixture(base: StationaryGaussian, side: int = MIXTURE_SIDE) -> ImageMixture:
    """Three components built from ``base``: see :data:`SHIFTS` and :data:`AMPLITUDES`."""
    lam = base.spectrum(side, side)
    mean_std = (lam[:, 0, 0] / side**2).sqrt()  # std of the image mean of each channel component
    components = []
    for shift, colour, amp in zip(SHIFTS, COLOUR_SHIFTS, AMPLITUDES, strict=True):
        move = shift * mean_std[0] * base.mix[:, 0] + colour * mean_std[1] * base.mix[:, 1]
        components.append(replace(base, mean=base.mean + move, amplitude=base.amplitude * amp))
    return ImageMixture(tuple(components), torch.tensor(MIXTURE_WEIGHTS, dtype=torch.float64))
