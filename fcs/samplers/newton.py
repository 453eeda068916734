"""The inexact-Newton constrained sampler (Graikos, Jojic & Samaras, arXiv 2410.18804).

Code name -> paper symbol:
    x         x_t, the noisy sample being corrected (model space, fp32)
    x0        x̂0(x_t), Tweedie's estimate from one UNet pass
    e         the constraint's error vector in x̂0 space (``Constraint.error``)
    d         J·e with J = ∂x̂0/∂x_t, the inexact Newton direction (J·e ≈ Jᵀ·e as J is near-symmetric)
    h         finite-difference step in units of max|e| (per item)
    lr[k]     step size of inner iteration k (∞-norm of the update)

Per outer step t: K times {e = error(x̂0); d = J·e / max|d|; x_t += lr[k]·d; re-evaluate x̂0}, then a
DDIM step. Cost: S·(1 + 2K) UNet forwards and no UNet backward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from fcs.constraints.base import Constraint, per_item_max
from fcs.samplers.common import STEPS, SampleResult, ddim_step, progress, residual_of, steps_with_prev

JACOBIANS = ("auto", "fd", "jvp")  # how J·e is computed; see newton()
NEWTON_STEPS, FD_STEP = 5, 0.005  # the paper's K and h


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


def jacobian_direction(denoiser, x: Tensor, x0: Tensor, e: Tensor, t: int, cond, h: float, jacobian: str) -> Tensor:
    """d = J·e, where J = ∂x̂0/∂x_t, by finite difference (one extra forward) or exact JVP.

    The finite difference is taken in fp32 with a per-item step dt = h / max|e|.
    """
    if jacobian == "jvp":
        return denoiser.jvp(x, e, t, cond)
    dt = h / per_item_max(e)
    _, x0_shifted = denoiser.predict(x + dt * e, t, cond)
    return (x0_shifted - x0) / dt


@torch.no_grad()
def newton(
    denoiser,
    constraint: Constraint,
    noise: Tensor,
    cond: Tensor | None = None,
    *,
    steps: int = STEPS,
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
    start: int = 0,
    stop: int | None = None,
) -> SampleResult:
    """Sample x̂0 under ``constraint`` with inexact-Newton corrections at every DDIM step.

    Args:
        denoiser: a :class:`fcs.Denoiser`.
        constraint: any :class:`fcs.constraints.Constraint` built for this batch.
        noise: x_T with shape (B, C, h, w) in model space (standard normal).
        cond: text embeddings (B, L, D) or None.
        steps: S outer DDIM steps; eta: DDIM noise; gens: per-item generators (needed if eta > 0).
        newton_steps: K inner iterations per outer step; lr: their step sizes; h: FD step.
        jacobian: "fd" (finite difference, the paper's), "jvp" (exact forward-mode), or "auto": fd
            for fp32 models, jvp for fp16/bf16 ones (a step of h drowns in half-precision rounding).
        tol: per-item early stop: an item skips the inner iterations while its residual <= tol.
        rel_tol: the same relative to the item's own residual at the first outer step of this call
            (``start``), a tolerance that means the same for every model and constraint scale.
        inner_until: run the inner iterations only in the first ``ceil(inner_until · S)`` outer steps
            (x̂0 barely moves in the last steps, where corrections buy little).
        start, stop: run only outer steps [start, stop); ``noise`` is then x_t at step ``start`` and,
            when stopping early, ``extras["x_t"]`` holds x_t for step ``stop`` (for branching several
            cheap completions from one shared intermediate sample).
    """
    if jacobian not in JACOBIANS:
        raise ValueError(f"jacobian must be one of {JACOBIANS}, got {jacobian!r}")
    if jacobian == "auto":
        jacobian = "fd" if denoiser.dtype == torch.float32 else "jvp"
    schedule = steps_with_prev(denoiser, steps)
    stop = len(schedule) if stop is None else stop
    if not 0 <= start < stop <= len(schedule):
        raise ValueError(f"need 0 <= start < stop <= {len(schedule)} outer steps, got start={start}, stop={stop}")
    if not 0 <= inner_until <= 1:
        raise ValueError(f"inner_until must be in [0, 1], got {inner_until!r}")
    lrs = learning_rates(newton_steps, lr)
    inner_steps = inner_step_count(inner_until, len(schedule))
    x = noise.to(denoiser.device, torch.float32).clone()
    nfe = torch.zeros(x.shape[0], dtype=torch.long)
    trace = []
    for i, (t, t_prev) in enumerate(progress(schedule[start:stop], show_progress, "newton"), start):
        eps, x0 = denoiser.predict(x, t, cond)
        nfe += 1
        if not trace:
            trace.append(residual_of(constraint, x0))
        threshold = _threshold(tol, rel_tol, trace[0])
        for rate in lrs if i < inner_steps else ():
            e, r = constraint.error(x0)
            active = (r > threshold.to(r.device)) if threshold is not None else torch.ones_like(r, dtype=torch.bool)
            if not active.any():
                break
            idx = active.nonzero().squeeze(1).to(x.device)
            sub_cond = cond[idx] if cond is not None else None
            d = jacobian_direction(denoiser, x[idx], x0[idx], e[idx], t, sub_cond, h, jacobian)
            x[idx] += rate * d / per_item_max(d)
            eps[idx], x0[idx] = denoiser.predict(x[idx], t, sub_cond)
            nfe[active.cpu()] += 2
        trace.append(residual_of(constraint, x0))
        if t_prev is not None:
            x = ddim_step(x0, eps, denoiser.alpha(t_prev), denoiser.alpha(t), eta, gens)
    extras = {"x_t": x} if t_prev is not None else {}
    return SampleResult(x0=x0, nfe=nfe, residuals=torch.stack(trace, 1).cpu(), extras=extras)


def inner_step_count(inner_until: float, steps: int) -> int:
    """How many of the first outer steps run inner iterations (robust to float round-off: 0.07 · 100 = 7)."""
    return math.ceil(inner_until * steps - 1e-9)


def _threshold(tol: float | None, rel_tol: float | None, first: Tensor) -> Tensor | None:
    """Per-item residual below which the inner loop stops: the larger of the absolute and relative one."""
    limits = [torch.full_like(first, tol)] if tol is not None else []
    if rel_tol is not None:
        limits.append(rel_tol * first)
    return torch.stack(limits).amax(0) if limits else None
