"""The inexact-Newton constrained sampler (Graikos, Jojic & Samaras, arXiv 2410.18804).

Code name -> paper symbol:
    x         x_t, the noisy sample being corrected (model space, fp32)
    x0        x̂0(x_t), Tweedie's estimate from one UNet pass
    e         the constraint's error vector in x̂0 space (``Constraint.error``)
    d         J·e with J = ∂x̂0/∂x_t, the inexact Newton direction (J·e ≈ Jᵀ·e as J is near-symmetric)
    h         finite-difference step in units of max|e| (per item)
    lr[k]     step size of inner iteration k (∞-norm of the update, in units of the schedule's
              scale √(α² + σ²), which is 1 for variance-preserving models: the same step in every
              convention)

Per outer step t: K times {e = error(x̂0); d = J·e / max|d|; x_t += lr[k]·d; re-evaluate x̂0}, then a
DDIM step. Cost: S·(1 + 2K) UNet forwards and no UNet backward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from fcs.constraints.base import Constraint, per_item_max
from fcs.denoiser import Cond
from fcs.samplers.jacobian import JACOBIANS, jacobian_direction
from fcs.samplers.loop import STEPS, Method, SampleResult, State, residual_threshold, sample, schedule_for
from fcs.samplers.moment import MomentMatching
from fcs.schedule import Schedule

NEWTON_STEPS, FD_STEP = 5, 0.005  # the paper's K and h
# how the K inner steps correct: "paper" moves x_t by lr[k]·J·e/‖J·e‖∞ (2 forwards each), "cg" moves x̂0
# to E[x0 | x_t, y] by conjugate gradients (1 forward each; fcs.samplers.moment)
INNER_SOLVERS = ("paper", "cg")


def learning_rates(newton_steps: int, lr: float | Sequence[float] | None) -> list[float]:
    """The paper's default lr = linspace(0.5, 0.1, K); a float gives a constant schedule."""
    if newton_steps == 0:
        return []
    if lr is None:
        return torch.linspace(0.5, 0.1, newton_steps).tolist() if newton_steps > 1 else [0.5]
    if isinstance(lr, (int, float)):
        return [float(lr)] * newton_steps
    lrs = [float(v) for v in lr]
    if len(lrs) != newton_steps:
        raise ValueError(f"lr has {len(lrs)} entries but newton_steps is {newton_steps}")
    return lrs


class Newton(Method):
    """K inner corrections of x_t per outer step (the paper's Algorithm 1 inner loop)."""

    name = "newton"

    def __init__(self, lrs: list[float], h: float, jacobian: str, tol: float | None, rel_tol: float | None,
                 inner_steps: int) -> None:
        self.lrs, self.h, self.jacobian, self.inner_steps = lrs, h, jacobian, inner_steps
        self.tol, self.rel_tol = tol, rel_tol

    def correct(self, denoiser, constraint, state: State) -> None:
        if state.i >= self.inner_steps:
            return
        threshold = residual_threshold(self.tol, self.rel_tol, state.trace[0])
        scale = state.schedule.scale(state.i)
        for rate in self.lrs:
            e, r = constraint.error(state.x0)
            active = (r > threshold.to(r.device)) if threshold is not None else torch.ones_like(r, dtype=torch.bool)
            if not active.any():
                break
            idx = active.nonzero().squeeze(1).to(state.x.device)
            sub_cond = state.cond.select(idx)
            d = jacobian_direction(denoiser, state.x[idx], state.x0[idx], e[idx], state.t, sub_cond,
                                   self.h * scale, self.jacobian)
            state.x[idx] += rate * scale * d / per_item_max(d)
            state.eps[idx], state.x0[idx] = denoiser.predict(state.x[idx], state.t, sub_cond)
            state.nfe[active.cpu()] += 2


@torch.no_grad()
def newton(
    denoiser,
    constraint: Constraint,
    noise: Tensor,
    cond: Cond | None = None,
    *,
    steps: int | Schedule = STEPS,
    eta: float = 0.0,
    gens: Sequence[torch.Generator] | None = None,
    show_progress: bool = False,
    newton_steps: int = NEWTON_STEPS,
    lr: float | Sequence[float] | None = None,
    h: float = FD_STEP,
    jacobian: str = "auto",
    tol: float | None = None,
    rel_tol: float | None = None,
    inner_until: float = 1.0,
    inner: str = "paper",
    start: int = 0,
    stop: int | None = None,
    spacing: str = "model",
    solver: str = "ddim",
) -> SampleResult:
    """Sample x̂0 under ``constraint`` with inexact-Newton corrections at every DDIM step.

    Args:
        denoiser: a :class:`fcs.Denoiser`.
        constraint: any :class:`fcs.constraints.Constraint` built for this batch.
        noise: x_T with shape (B, C, h, w) in model space (standard normal).
        cond: the denoiser's :class:`fcs.denoiser.Cond` for the batch (None = unconditional).
        steps: S outer DDIM steps (or a Schedule); eta: DDIM noise; gens: per-item generators (needed if eta > 0).
        newton_steps: K inner iterations per outer step; lr: their step sizes; h: FD step.
        jacobian: "fd" (finite difference, the paper's), "jvp" (exact forward-mode), or "auto": fd
            for fp32 models, jvp for fp16/bf16 ones (a step of h drowns in half-precision rounding).
        tol: per-item early stop: an item skips the inner iterations while its residual <= tol.
        rel_tol: the same relative to the item's own residual at the first outer step of this call
            (``start``), a tolerance that means the same for every model and constraint scale.
        inner: the inner solver, "paper" (the paper's fixed steps of x_t; lr applies) or "cg" (K
            conjugate-gradient steps of x̂0 towards E[x0 | x_t, y], see fcs.samplers.moment; lr unused).
        inner_until: run the inner iterations only in the first ``ceil(inner_until · S)`` outer steps
            (x̂0 barely moves in the last steps, where corrections buy little).
        spacing, solver: the outer time grid and transition (:func:`fcs.samplers.loop.sample`).
        start, stop: run only outer steps [start, stop); ``noise`` is then x_t at step ``start`` and,
            when stopping early, ``extras["x_t"]`` holds x_t for step ``stop`` (for branching several
            cheap completions from one shared intermediate sample).
    """
    if jacobian not in JACOBIANS:
        raise ValueError(f"jacobian must be one of {JACOBIANS}, got {jacobian!r}")
    if jacobian == "auto":
        jacobian = "fd" if denoiser.dtype == torch.float32 else "jvp"
    if not 0 <= inner_until <= 1:
        raise ValueError(f"inner_until must be in [0, 1], got {inner_until!r}")
    if inner not in INNER_SOLVERS:
        raise ValueError(f"inner must be one of {INNER_SOLVERS}, got {inner!r}")
    schedule = schedule_for(denoiser, steps, noise.shape[1:], spacing)
    inner_steps = inner_step_count(inner_until, len(schedule))
    if inner == "cg":
        method = MomentMatching(newton_steps, h, jacobian, tol, rel_tol, inner_steps)
    else:
        method = Newton(learning_rates(newton_steps, lr), h, jacobian, tol, rel_tol, inner_steps)
    return sample(denoiser, constraint, noise, cond, method, steps=schedule, eta=eta, gens=gens,
                  show_progress=show_progress, start=start, stop=stop, solver=solver)


def inner_step_count(inner_until: float, steps: int) -> int:
    """How many of the first outer steps run inner iterations (robust to float round-off: 0.07 · 100 = 7)."""
    return math.ceil(inner_until * steps - 1e-9)
