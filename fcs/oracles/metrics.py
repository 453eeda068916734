"""How far a sampler's samples are from an exact posterior: the oracle benchmark's numbers.

All take samples (N, B, ...) for B problems and the posterior of those B problems, float64.
"""

from __future__ import annotations

import torch
from torch import Tensor


def normalised_mean_error(samples: Tensor, mean: Tensor, trace: Tensor) -> Tensor:
    """(B,) N·‖m̂ − m‖² / tr Σ_post: about 1 for exact samples (the sample mean's own noise), larger
    for a biased sampler. ``trace``: (B,) tr Σ_post."""
    n = samples.shape[0]
    err = (samples.double().mean(0) - mean).flatten(1).pow(2).sum(1)
    return n * err / trace.clamp_min(1e-300)


def spread(samples: Tensor, mean: Tensor, trace: Tensor) -> Tensor:
    """(B,) mean over samples of ‖x − m‖² / tr Σ_post: 1 for exact samples (their squared distance to the
    exact mean is tr Σ_post on average), below 1 for samples too alike, above for too spread."""
    dist = (samples.double() - mean).flatten(2).pow(2).sum(2).mean(0)
    return dist / trace.clamp_min(1e-300)


def variance_log_ratio(samples: Tensor, var: Tensor, floor: float = 1e-8) -> Tensor:
    """(B,) mean over elements of log(sample variance / exact variance), over elements whose exact
    variance exceeds ``floor`` (0 = calibrated; < 0 over-confident; > 0 too spread)."""
    sample_var = samples.double().var(0)
    use = var > floor
    ratio = torch.where(use, torch.log(sample_var.clamp_min(1e-300) / var.clamp_min(1e-300)), 0.0)
    return ratio.flatten(1).sum(1) / use.flatten(1).sum(1).clamp_min(1)


def sliced_wasserstein(a: Tensor, b: Tensor, projections: int = 256, seed: int = 0) -> Tensor:
    """(B,) sliced 2-Wasserstein distance between sample sets a, b (N, B, ...) of equal size N."""
    n, batch = a.shape[:2]
    a, b = a.double().reshape(n, batch, -1), b.double().reshape(n, batch, -1)
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[-1], projections, generator=gen, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(torch.einsum("nbd,dp->nbp", a, dirs), dim=0)
    pb, _ = torch.sort(torch.einsum("nbd,dp->nbp", b, dirs), dim=0)
    return (pa - pb).pow(2).mean((0, 2)).sqrt()


def mode_weight_error(memberships: Tensor, weights: Tensor) -> Tensor:
    """(B,) total variation ½·Σ_k |p̂_k − w_k| between the samples' share of each component and the exact
    posterior weights (B, K). ``memberships`` (N, B, K): each sample's component, one-hot, or its
    responsibilities p(k | x0), whose mean over exact samples is the posterior weight itself."""
    return 0.5 * (memberships.double().mean(0) - weights).abs().sum(1)


def psnr(images: Tensor, truth: Tensor, region: Tensor) -> Tensor:
    """(...,) PSNR in dB of images (..., 3, H, W) in [0, 1] against truth, over ``region`` (1, H, W) or
    broadcastable (1 = judged)."""
    region = region.double().expand(images.shape)
    err = ((images.double().clamp(0, 1) - truth.double()) ** 2 * region).flatten(-3).sum(-1)
    count = region.flatten(-3).sum(-1).clamp_min(1)
    return 10 * torch.log10(1 / (err / count).clamp_min(1e-12))
