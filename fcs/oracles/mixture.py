"""A Gaussian mixture prior in low dimension (the MCGdiff / TMPD benchmark setting, rescaled to
data in about [-1, 1] so it fits the SD noise schedule).

x0 ~ Σ_k w_k N(μ_k, diag(v_k)), vectors of d coordinates laid out as (B, 1, 1, d) so that
:class:`fcs.constraints.LatentInpaint` with a (B, 1, 1, d) mask observes coordinates.
E[x0 | x_t] = Σ_k π_k(x_t)·(μ_k + α v_k/(α² v_k + σ²)·(x_t − α μ_k)) with
π_k ∝ w_k N(x_t; α μ_k, α² v_k + σ²).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

GRID = (-1.0, -0.5, 0.0, 0.5, 1.0)  # MCGdiff's 5 × 5 grid of means, 8·{-2..2} there, scaled by 1/16 here
COMPONENT_STD = 0.1


@dataclass(frozen=True)
class GaussianMixture:
    """weights (K,), means (K, d), variances (K, d): float64."""

    weights: Tensor
    means: Tensor
    variances: Tensor

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def log_responsibilities(self, x: Tensor, alpha: float, sigma: float) -> Tensor:
        """log π_k(x_t) (B, K) for x (B, d)."""
        var = alpha**2 * self.variances + sigma**2  # (K, d)
        diff = x[:, None, :] - alpha * self.means[None]
        log_n = -0.5 * ((diff**2) / var + torch.log(2 * math.pi * var)).sum(-1)
        return torch.log_softmax(torch.log(self.weights) + log_n, dim=1)

    def denoise(self, x: Tensor, alpha: float, sigma: float) -> Tensor:
        """E[x0 | x_t = x] for x (B, 1, 1, d) (float64 out, same shape)."""
        flat = x.double().reshape(x.shape[0], -1)
        resp = self.log_responsibilities(flat, alpha, sigma).exp()
        gain = alpha * self.variances / (alpha**2 * self.variances + sigma**2)
        means = self.means[None] + gain[None] * (flat[:, None, :] - alpha * self.means[None])
        return (resp[..., None] * means).sum(1).reshape(x.shape)

    def sample(self, gens: Sequence[torch.Generator]) -> Tensor:
        """One prior sample per generator, (N, 1, 1, d) float64."""
        rows = []
        for g in gens:
            k = int(torch.multinomial(self.weights, 1, generator=g))
            z = torch.randn(self.dim, generator=g, dtype=torch.float64)
            rows.append(self.means[k] + self.variances[k].sqrt() * z)
        return torch.stack(rows).view(len(rows), 1, 1, self.dim)

    def nearest_component(self, x: Tensor) -> Tensor:
        """(N,) index of the component with the highest density at each clean sample x (N, 1, 1, d)."""
        return self.log_responsibilities(x.double().reshape(x.shape[0], -1), 1.0, 0.0).argmax(1)


def grid_mixture(dim: int, seed: int = 0) -> GaussianMixture:
    """25 components with means (i, j, i, j, ...) for i, j in GRID, std 0.1, random weights."""
    gen = torch.Generator().manual_seed(seed)
    pairs = [(i, j) for i in GRID for j in GRID]
    means = torch.tensor([[p[c % 2] for c in range(dim)] for p in pairs], dtype=torch.float64)
    weights = torch.rand(len(pairs), generator=gen, dtype=torch.float64) + 0.1
    variances = torch.full_like(means, COMPONENT_STD**2)
    return GaussianMixture(weights / weights.sum(), means, variances)
