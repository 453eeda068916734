"""Forward-only moment matching: the inner solver that moves x̂0 to E[x0 | x_t, y] instead of stepping x_t.

For an exact denoiser J = ∂x̂0/∂x_t is symmetric positive semi-definite and Cov[x0 | x_t] = (σ²/α)·J
(Tweedie), so for an observation y = G·x0 (G linear, or the constraint linearised at x̂0) the
posterior mean is

    E[x0 | x_t, y] = x̂0 + J·Gᵀ·w   with   (G·J·Gᵀ)·w = r = y − G·x̂0

(MMPS, Rozet et al. 2024; the scale σ²/α cancels for a noiseless y). K conjugate-gradient steps solve
for w, and every quantity CG needs comes from the constraint's residual and its gradient g = Gᵀ·r
(backpropagated through the decoder at most, never the denoiser) plus one product J·g per step, a
finite-difference forward (or an exact JVP) at the unchanged x_t:

    α = ‖r‖² / ⟨Gᵀp, J·Gᵀp⟩,   x̂0 ← x̂0 + α·J·Gᵀp,   p ← r' + (‖r'‖²/‖r‖²)·p

with r' re-evaluated from the constraint at the new x̂0 (so a nonlinear decoder is relinearised at
every step; for a linear G it is CG exactly). The residual is the constraint's RMS residual, i.e. G and
y scaled by 1/√n, which leaves the noiseless posterior mean unchanged. Then ε̂ is made consistent with
the new x̂0 (ε̂ = (x_t − α_t·x̂0)/σ_t) and the outer loop takes its DDIM step. Cost: S·(1 + K) forwards.

A learned J is not a clean covariance, nor a learned decoder linear: a direction with
⟨Gᵀp, J·Gᵀp⟩ ≤ 0 ends that item's solve, and a step that would raise the residual is halved
(:func:`backtrack`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fcs.samplers.jacobian import jacobian_direction
from fcs.samplers.loop import Method, State, residual_threshold

BACKTRACKS = 4  # halvings of a CG step that would raise the residual (measured: 4 recovers 5-8 dB on the
# photo model's decoder tasks; on the exact oracle it changes the error by a few units either way)


def squared_residual(constraint, x0: Tensor) -> tuple[Tensor, Tensor]:
    """(‖r‖² per item (B,), g = −∇ ½‖r‖² with x0's shape) where ‖r‖ is the constraint's residual."""
    with torch.enable_grad():
        x = x0.detach().float().requires_grad_(True)
        r = constraint.residual(x)
        (grad,) = torch.autograd.grad(0.5 * r.pow(2).sum(), x)
    return r.detach().pow(2), torch.nan_to_num(-grad)  # sqrt at r = 0 gives nan: no direction there


def backtrack(constraint, x0: Tensor, direction: Tensor, step: Tensor, r2: Tensor, times: int) -> Tensor:
    """x0 + step·direction, the step halved (up to ``times`` times) for items whose squared
    residual would grow above ``r2``: the quadratic model is exact only for a linear constraint and a
    clean covariance, and a learned decoder or denoiser makes its full step overshoot. Costs
    constraint evaluations (a decoder forward at most), no denoiser calls."""
    for _ in range(times):
        trial = x0 + _per_item(step.to(x0), x0) * direction
        with torch.no_grad():
            worse = constraint.residual(trial).pow(2).cpu() > r2
        if not worse.any():
            return trial
        step = torch.where(worse, step / 2, step)
    return x0 + _per_item(step.to(x0), x0) * direction


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(1)


def _per_item(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


class MomentMatching(Method):
    """K conjugate-gradient steps towards E[x0 | x_t, y] per outer step, x_t left where it is."""

    name = "newton"

    def __init__(self, iterations: int, h: float, jacobian: str, tol: float | None, rel_tol: float | None,
                 inner_steps: int, backtracks: int = BACKTRACKS) -> None:
        self.iterations, self.h, self.jacobian, self.inner_steps = iterations, h, jacobian, inner_steps
        self.tol, self.rel_tol, self.backtracks = tol, rel_tol, backtracks

    def correct(self, denoiser, constraint, state: State) -> None:
        if state.i >= self.inner_steps or self.iterations == 0:
            return
        threshold = residual_threshold(self.tol, self.rel_tol, state.trace[0])
        floor = torch.zeros_like(state.trace[0]) if threshold is None else threshold
        x0 = state.x0.clone()
        running = torch.ones(x0.shape[0], dtype=torch.bool)
        p = jp = r2_last = None
        for _ in range(self.iterations):
            r2, g = squared_residual(constraint, x0)
            r2 = r2.cpu()
            running &= r2 > floor.pow(2).clamp_min(1e-24)
            if not running.any():
                break
            idx = running.nonzero().squeeze(1).to(x0.device)
            jg = torch.zeros_like(g)
            jg[idx] = jacobian_direction(denoiser, state.x[idx], state.x0[idx], g[idx], state.t,
                                         state.cond.select(idx), self.h * state.schedule.scale(state.i),
                                         self.jacobian)
            state.nfe[running] += 1
            if p is None:
                p, jp = g, jg
            else:
                beta = _per_item((r2 / r2_last).to(g), g)
                p, jp = g + beta * p, jg + beta * jp
            curvature = _dot(p, jp).cpu()
            running &= curvature > 0
            step = torch.where(running, r2 / curvature.clamp_min(1e-30), torch.zeros_like(r2))
            x0 = backtrack(constraint, x0, jp, step, r2, self.backtracks)
            r2_last = r2.clamp_min(1e-30)
        alpha, sigma = state.schedule.alphas[state.i], state.schedule.sigmas[state.i]
        state.x0 = x0
        state.eps = (state.x - alpha * x0) / sigma
