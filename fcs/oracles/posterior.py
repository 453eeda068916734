"""Exact posteriors p(x0 | y) of the oracle priors under linear constraints (y = A·x0 + noise).

For the Gaussian priors: mean = μ + C·Aᵀ·u with (A·C·Aᵀ + σ_y²·I)·u = y − A·μ, in float64: dense
(Cholesky, or a pseudo-inverse where the observation pins x0 down) up to :data:`DENSE_LIMIT` model-space
dimensions, with the covariance C − C·Aᵀ·(A·C·Aᵀ + σ_y²·I)⁻¹·A·C; above it by conjugate gradient whose
matvecs are FFT filters (mean and samples only). Samples by Matheron's rule (a prior sample moved by the
same solve).
For the mixtures: a mixture again, each component conditioned on its own and re-weighted by its evidence
(the low-dimensional mixture: coordinate observations; the image mixture: any dense, well-posed one).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from fcs.constraints import LatentInpaint, PixelInpaint, SuperResolution, downsample
from fcs.oracles.gaussian import StationaryGaussian
from fcs.oracles.image_mixture import ImageMixture
from fcs.oracles.mixture import GaussianMixture

log = logging.getLogger(__name__)

DENSE_LIMIT = 4096  # model-space dimension up to which the posterior is solved densely (with variances)


@dataclass(frozen=True)
class Observation:
    """y = A(x0) observed where ``weight`` is 1. ``fn(x, params)`` is linear in x (B, C, h, w)
    float64; ``params`` are per-item tensors (B, ...) it broadcasts with; target, weight (B, ...)."""

    fn: Callable[[Tensor, dict], Tensor]
    params: dict
    target: Tensor
    weight: Tensor

    def apply(self, x: Tensor) -> Tensor:
        return self.fn(x, self.params)

    def adjoint(self, v: Tensor, like: Tensor) -> Tensor:
        """Aᵀ·v, by autograd of the linear map at ``like`` (any point: the map is linear)."""
        with torch.enable_grad():
            x = torch.zeros_like(like, dtype=torch.float64).requires_grad_(True)
            (grad,) = torch.autograd.grad(self.apply(x), x, grad_outputs=v)
        return grad

    def item(self, b: int) -> Observation:
        return Observation(self.fn, {k: v[b:b + 1] for k, v in self.params.items()}, self.target[b:b + 1],
                           self.weight[b:b + 1])


def observation(denoiser, constraint) -> Observation:
    """The linear observation behind ``constraint`` in the denoiser's model space (its decoder is
    affine for every oracle: the constant part moves into the target)."""
    if isinstance(constraint, LatentInpaint):
        known = (constraint.known > 0.5).double().expand_as(constraint.target)
        return Observation(lambda x, p: p["known"] * x, {"known": known}, known * constraint.target.double(),
                           known)
    if isinstance(constraint, (PixelInpaint, SuperResolution)):
        batch = (constraint.image if isinstance(constraint, PixelInpaint) else constraint.low_res).shape[0]
        shape = (batch, *denoiser.latent_shape(*pixel_size(constraint)))
        offset = denoiser.decode(torch.zeros(shape, dtype=torch.float64))
        if isinstance(constraint, PixelInpaint):
            keep = constraint.keep.double().expand_as(constraint.image)
            return Observation(lambda x, p: p["keep"] * (denoiser.decode(x) - p["offset"]),
                               {"keep": keep, "offset": offset}, keep * (constraint.image.double() - offset), keep)
        s = constraint.scale
        low = constraint.low_res.double()
        return Observation(lambda x, p: downsample(denoiser.decode(x) - p["offset"], s), {"offset": offset},
                           low - downsample(offset, s), torch.ones_like(low))
    raise TypeError(f"no exact posterior for {type(constraint).__name__}; linear constraints only "
                    "(LatentInpaint, PixelInpaint, SuperResolution)")


def pixel_size(constraint) -> tuple[int, int]:
    if isinstance(constraint, PixelInpaint):
        return tuple(constraint.image.shape[-2:])
    return constraint.low_res.shape[-2] * constraint.scale, constraint.low_res.shape[-1] * constraint.scale


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.dim() - 1)))


def conjugate_gradient(matvec: Callable[[Tensor], Tensor], rhs: Tensor, tol: float = 1e-11,
                       max_iter: int = 20000) -> Tensor:
    """Solve matvec(u) = rhs per item (batch-first) for a symmetric PSD operator, float64."""
    u = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rr = _dot(r, r)
    target = tol**2 * rr.clamp_min(1e-300)
    for _ in range(max_iter):
        if bool((rr <= target).all()):
            return u
        kp = matvec(p)
        step = rr / _dot(p, kp).clamp_min(1e-300)
        u, r = u + step * p, r - step * kp
        rr_next = _dot(r, r)
        p = r + (rr_next / rr.clamp_min(1e-300)) * p
        rr = rr_next
    worst = float((rr / target.clamp_min(1e-300)).max().sqrt() * tol)
    log.warning("conjugate gradient stopped after %d iterations at relative residual %.2e", max_iter, worst)
    return u


class GaussianPosterior:
    """p(x0 | y) for a :class:`StationaryGaussian` prior over model space and a linear observation.

    Dense float64 linear algebra up to :data:`DENSE_LIMIT` model-space dimensions (the pseudo-inverse
    of A·C·Aᵀ + σ_y²·I, so observations that pin x0 down, e.g. pixels through a decoder with fewer
    latents than pixels, give the least-squares point and a zero variance there); conjugate gradient
    with FFT matvecs above it (mean and samples only).

    Attributes:
        mean: (B, C, h, w) float64, the exact posterior mean of each item.
        var: (B, C, h, w) float64 per-element posterior variance (None with conjugate gradient).
    """

    def __init__(self, prior: StationaryGaussian, obs: Observation, shape: Sequence[int],
                 noise_std: float = 0.0, method: str = "auto") -> None:
        self.prior, self.obs, self.noise_var = prior, obs, float(noise_std) ** 2
        self.shape = tuple(shape)  # (B, C, h, w)
        self.dim = int(torch.tensor(self.shape[1:]).prod())
        if method == "auto":
            method = "dense" if self.dim <= DENSE_LIMIT else "cg"
        if method not in ("dense", "cg"):
            raise ValueError(f"method must be 'auto', 'dense' or 'cg', got {method!r}")
        self.method = method
        self._like = prior.mean.view(1, -1, 1, 1).expand(self.shape)
        if method == "dense":
            self._dense = [self._dense_item(b) for b in range(self.shape[0])]
        self.mean = self._like + self._gain(obs.weight * (obs.target - obs.apply(self._like)))

    # -- dense -------------------------------------------------------------------------------
    def _dense_item(self, b: int) -> tuple[Tensor, Tensor, Tensor]:
        """(A (m, d), gain C·Aᵀ·K⁺ (d, m), observed mask) of item b, with K = A·C·Aᵀ + σ_y²·I."""
        basis = torch.eye(self.dim, dtype=torch.float64).view(self.dim, *self.shape[1:])
        obs = self.obs.item(b)
        observed = obs.weight.flatten() > 0
        matrix = obs.apply(basis).reshape(self.dim, -1)[:, observed].T  # (m, d)
        cross = self.prior.cov(matrix.reshape(-1, *self.shape[1:])).reshape(len(matrix), -1).T  # C·Aᵀ (d, m)
        if len(matrix) > self.dim:  # more observations than unknowns: solve in model space
            return matrix, self._gain_in_model_space(matrix, cross), observed
        system = matrix @ cross + self.noise_var * torch.eye(len(matrix), dtype=torch.float64)
        factor, info = torch.linalg.cholesky_ex(system)
        if info == 0 and bool(factor.diagonal().min() > factor.diagonal().max() * 1e-6):  # well posed: fast path
            return matrix, torch.cholesky_solve(cross.T, factor).T, observed
        return matrix, cross @ _pinv(system), observed

    def _gain_in_model_space(self, matrix: Tensor, cross: Tensor) -> Tensor:
        """C·Aᵀ·(A·C·Aᵀ + σ²)⁺ = L·(BᵀB + σ²)⁺·Bᵀ with C = L·Lᵀ and B = A·L (d × d instead of m × m)."""
        basis = torch.eye(self.dim, dtype=torch.float64).view(self.dim, *self.shape[1:])
        root = torch.linalg.cholesky(self.prior.cov(basis).reshape(self.dim, self.dim))
        b = matrix @ root
        normal = b.T @ b + self.noise_var * torch.eye(self.dim, dtype=torch.float64)
        return root @ _pinv(normal) @ b.T

    def _gain(self, residual: Tensor) -> Tensor:
        """C·Aᵀ·(A·C·Aᵀ + σ_y²·I)⁻¹·residual, residual in observation space (B, ...)."""
        if self.method == "cg":
            return self.prior.cov(self.obs.adjoint(conjugate_gradient(self._system, residual), self._like))
        rows = [gain @ residual[b].flatten()[observed] for b, (_, gain, observed) in enumerate(self._dense)]
        return torch.stack(rows).view(self.shape)

    def _system(self, v: Tensor) -> Tensor:
        """(A·C·Aᵀ + σ_y²·I)·v on the observed entries (conjugate gradient's matvec)."""
        return self.obs.weight * self.obs.apply(self.prior.cov(self.obs.adjoint(v, self._like))) + \
            self.noise_var * self.obs.weight * v

    def covariance(self, b: int = 0) -> Tensor:
        """The dense posterior covariance (d, d) of item b, d = C·h·w: C − C·Aᵀ·K⁺·A·C."""
        matrix, gain, _ = self._dense[b] if self.method == "dense" else self._dense_item(b)
        basis = torch.eye(self.dim, dtype=torch.float64).view(self.dim, *self.shape[1:])
        prior_cov = self.prior.cov(basis).reshape(self.dim, self.dim)
        return prior_cov - gain @ (matrix @ prior_cov)

    def log_evidence(self) -> Tensor:
        """(B,) log p(y) = log N(y; A·μ, A·C·Aᵀ + σ_y²·I) over the observed entries (dense, well-posed
        observations only: where the observation pins x0 down the evidence has no density)."""
        out = []
        for b in range(self.shape[0]):
            matrix, _, observed = self._dense[b] if self.method == "dense" else self._dense_item(b)
            cross = self.prior.cov(matrix.reshape(-1, *self.shape[1:])).reshape(len(matrix), -1).T
            system = matrix @ cross + self.noise_var * torch.eye(len(matrix), dtype=torch.float64)
            factor, info = torch.linalg.cholesky_ex(system)
            if info != 0:
                raise ValueError("no evidence: the observation pins part of x0 down (a singular A·C·Aᵀ)")
            obs = self.obs.item(b)
            misfit = (obs.target - obs.apply(self._like[b:b + 1])).flatten()[observed]
            white = torch.linalg.solve_triangular(factor, misfit[:, None], upper=False)
            log_det = 2 * factor.diagonal().log().sum()
            out.append(-0.5 * (white.pow(2).sum() + log_det + len(misfit) * math.log(2 * math.pi)))
        return torch.stack(out)

    @cached_property  # d × d work per item: built once
    def var(self) -> Tensor | None:
        if self.method != "dense":
            return None
        rows = [self.covariance(b).diagonal().view(self.shape[1:]) for b in range(self.shape[0])]
        return torch.stack(rows).clamp_min(0)  # round-off below zero on the known elements

    # -- samples -----------------------------------------------------------------------------
    def sample(self, gens: Sequence[torch.Generator]) -> Tensor:
        """(N, B, C, h, w) exact posterior samples, one per generator for every item (Matheron's rule:
        a prior sample moved by the gain times the misfit of its simulated observation)."""
        out = []
        for g in gens:
            x = self.prior.sample(_split(g, self.shape[0]), self.shape[1:])
            simulated = self.obs.apply(x)
            if self.noise_var:
                simulated = simulated + self.noise_var**0.5 * torch.randn(simulated.shape, generator=g,
                                                                          dtype=torch.float64)
            out.append(x + self._gain(self.obs.weight * (self.obs.target - simulated)))
        return torch.stack(out)


def _pinv(matrix: Tensor) -> Tensor:
    """Pseudo-inverse of a symmetric PSD matrix (eigenvalues below 1e-10 of the largest dropped)."""
    values, vectors = torch.linalg.eigh(matrix)
    keep = values > values.max().clamp_min(1e-300) * 1e-10
    return (vectors[:, keep] / values[keep]) @ vectors[:, keep].T


def _split(gen: torch.Generator, n: int) -> list[torch.Generator]:
    """n generators seeded from one (one prior draw per item of the batch)."""
    seeds = torch.randint(0, 2**62, (n,), generator=gen).tolist()
    return [torch.Generator().manual_seed(s) for s in seeds]


class MixturePosterior:
    """p(x0 | y) for a :class:`GaussianMixture` observed at some coordinates (y = x0[O] + noise).

    Attributes:
        weights: (B, K) posterior component weights; mean, var: (B, 1, 1, d) float64.
    """

    def __init__(self, prior: GaussianMixture, constraint: LatentInpaint, noise_std: float = 0.0) -> None:
        self.prior, self.noise_var = prior, float(noise_std) ** 2
        known = (constraint.known > 0.5).double().expand_as(constraint.target).flatten(1)  # (B, d)
        y = constraint.target.double().flatten(1)
        var = prior.variances[None] + self.noise_var  # (1, K, d)
        diff2 = (y[:, None, :] - prior.means[None]) ** 2
        log_lik = -0.5 * (known[:, None, :] * (diff2 / var + torch.log(2 * torch.pi * var))).sum(-1)
        self.weights = torch.softmax(torch.log(prior.weights)[None] + log_lik, dim=1)  # (B, K)
        shrink = prior.variances / (prior.variances + self.noise_var)  # (K, d): 1 when noiseless
        self._means = prior.means[None] + known[:, None, :] * shrink[None] * (y[:, None, :] - prior.means[None])
        self._vars = prior.variances[None] * (1 - known[:, None, :] * shrink[None])  # (B, K, d)
        shape = (y.shape[0], 1, 1, y.shape[1])
        self.mean = (self.weights[..., None] * self._means).sum(1).view(shape)
        second = (self.weights[..., None] * (self._vars + self._means**2)).sum(1).view(shape)
        self.var = second - self.mean**2

    def sample(self, gens: Sequence[torch.Generator]) -> Tensor:
        """(N, B, 1, 1, d) exact posterior samples, one per generator for every item."""
        out = []
        for g in gens:
            k = torch.multinomial(self.weights, 1, generator=g)[:, 0]  # (B,)
            z = torch.randn(self._means.shape[0], self.prior.dim, generator=g, dtype=torch.float64)
            rows = torch.arange(len(k))
            out.append((self._means[rows, k] + self._vars[rows, k].sqrt() * z).view(self.mean.shape))
        return torch.stack(out)


class ImageMixturePosterior:
    """p(x0 | y) for an :class:`ImageMixture` prior: each component's :class:`GaussianPosterior` (dense),
    weighted by w_k·p_k(y).

    Attributes:
        weights: (B, K) posterior component weights; mean, var: (B, C, h, w) float64.
    """

    def __init__(self, prior: ImageMixture, obs: Observation, shape: Sequence[int], noise_std: float = 0.0) -> None:
        self.prior = prior
        self.parts = [GaussianPosterior(c, obs, shape, noise_std, method="dense") for c in prior.components]
        log_w = torch.log(prior.weights)[None] + torch.stack([p.log_evidence() for p in self.parts], 1)
        self.weights = torch.softmax(log_w, dim=1)  # (B, K)
        w = self.weights.view(*self.weights.shape, *([1] * (len(shape) - 1)))
        means = torch.stack([p.mean for p in self.parts], 1)  # (B, K, C, h, w)
        self.mean = (w * means).sum(1)
        second = (w * (torch.stack([p.var for p in self.parts], 1) + means**2)).sum(1)
        self.var = (second - self.mean**2).clamp_min(0)

    def sample(self, gens: Sequence[torch.Generator]) -> Tensor:
        """(N, B, C, h, w) exact posterior samples: per generator and item a component drawn from the
        posterior weights, then that component's exact sample."""
        out = []
        for g in gens:
            k = torch.multinomial(self.weights, 1, generator=g)[:, 0]  # (B,)
            children = _split(g, len(self.parts))
            drawn = torch.stack([p.sample([c])[0] for p, c in zip(self.parts, children, strict=True)], 1)
            out.append(drawn[torch.arange(len(k)), k])
        return torch.stack(out)
