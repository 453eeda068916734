"""The outer loop every sampler shares, written once; a method differs only in its per-step hooks.

Per outer step i (S steps of the denoiser's :class:`fcs.schedule.Schedule`):
    ε̂, x̂0 = method.predict(x_t)          one model forward (DPS: with autograd)
    method.correct(...)                   Newton: K inner corrections of x_t (2 forwards each)
    on the last step: method.finish(x̂0)   replacement: paste the known latents
    x_t ← DDIM(x̂0, ε̂, i → i + 1)          the schedule's transition (solver "2m": with x̂0 extrapolated
                                          from the previous step's, second order at no extra forward)
    method.after_transition(...)          replacement: paste noised known latents; DPS: −ζ·∇
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from fcs.denoiser import EMPTY, Cond
from fcs.schedule import FINE_STEPS, SPACINGS, Schedule, log_snr_spaced

STEPS = 20  # S outer DDIM steps, the paper's default for every sampler
# the outer transition: "ddim" (first order, the paper's) or "2m" (DPM-Solver++(2M): second order from the
# previous step's x̂0, deterministic, so it needs eta = 0)
SOLVERS = ("ddim", "2m")


@dataclass
class SampleResult:
    """What a sampler returns.

    Attributes:
        x0: final x̂0 with shape (B, C, h, w) in model space (decode it for images).
        nfe: (B,) model forward passes spent on each item.
        residuals: (B, S + 1) constraint residual of x̂0 at the first step, then after each outer step.
        backward_passes: model backward passes for the whole batch (0 for Newton).
        extras: ``x_t`` when the loop stopped before the last step (to branch from it).
    """

    x0: Tensor
    nfe: Tensor
    residuals: Tensor
    backward_passes: int = 0
    extras: dict = field(default_factory=dict)

    @property
    def residual_init(self) -> Tensor:
        return self.residuals[:, 0]

    @property
    def residual_final(self) -> Tensor:
        return self.residuals[:, -1]


@dataclass
class State:
    """What the hooks of step i see and change: x_t, (ε̂, x̂0) of x_t, and the bookkeeping."""

    x: Tensor
    i: int
    schedule: Schedule
    cond: Cond
    nfe: Tensor
    trace: list[Tensor]
    eps: Tensor | None = None
    x0: Tensor | None = None

    @property
    def t(self):
        return self.schedule.timesteps[self.i]


class Method:
    """Per-step hooks of a sampler; the base class is plain DDIM (it ignores the constraint)."""

    name = "ddim"
    backward_passes = 0

    def predict(self, denoiser, constraint, state: State) -> None:
        state.eps, state.x0 = denoiser.predict(state.x, state.t, state.cond)

    def correct(self, denoiser, constraint, state: State) -> None:
        """Change x_t (and its ε̂, x̂0) before the transition."""

    def finish(self, constraint, state: State) -> None:
        """Change the output x̂0 on the last step."""

    def after_transition(self, constraint, state: State, gens) -> None:
        """Change x_t of the next step."""


def residual_of(constraint, x0: Tensor) -> Tensor:
    with torch.no_grad():
        return constraint.residual(x0).detach().float().cpu()


def residual_threshold(tol: float | None, rel_tol: float | None, first: Tensor) -> Tensor | None:
    """Per-item residual below which an inner solver stops: the larger of the absolute ``tol`` and
    ``rel_tol`` times the item's residual at the first step (``first``); None when neither is set."""
    limits = [torch.full_like(first, tol)] if tol is not None else []
    if rel_tol is not None:
        limits.append(rel_tol * first)
    return torch.stack(limits).amax(0) if limits else None


def schedule_for(denoiser, steps: int | Schedule, shape: Sequence[int], spacing: str = "model") -> Schedule:
    """``steps`` as a Schedule: a Schedule as given, else the denoiser's own for S = ``steps`` and samples
    of ``shape`` (C, h, w) (FLUX's shift depends on the image size), respaced uniformly in log-SNR for
    ``spacing`` "logsnr" (:data:`fcs.schedule.SPACINGS`)."""
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    if isinstance(steps, Schedule):
        return steps
    own = denoiser.schedule(steps, shape=tuple(shape))
    if spacing == "model":
        return own
    return log_snr_spaced(own, denoiser.schedule(FINE_STEPS, shape=tuple(shape)))


def check_solver(solver: str, eta: float) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "2m" and eta > 0:
        raise ValueError(f"solver '2m' is deterministic: it needs eta = 0, got eta={eta}")


def progress(items: Iterable, enabled: bool, desc: str) -> Iterable:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)


def sample(
    denoiser,
    constraint,
    noise: Tensor,
    cond: Cond | None,
    method: Method,
    *,
    steps: int | Schedule = STEPS,
    eta: float = 0.0,
    gens: Sequence[torch.Generator] | None = None,
    show_progress: bool = False,
    start: int = 0,
    stop: int | None = None,
    spacing: str = "model",
    solver: str = "ddim",
) -> SampleResult:
    """Run ``method``'s hooks over the outer steps [start, stop) of the schedule.

    noise: x_t at step ``start`` (x_T for a whole run) with shape (B, C, h, w), standard normal
    scaled by the schedule. steps: S (the denoiser's own schedule) or a :class:`Schedule`; spacing:
    its time grid (:data:`fcs.schedule.SPACINGS`); solver: the transition (:data:`SOLVERS`; "2m" starts
    first order at ``start``).
    """
    check_solver(solver, eta)
    schedule = schedule_for(denoiser, steps, noise.shape[1:], spacing)
    stop = len(schedule) if stop is None else stop
    if not 0 <= start < stop <= len(schedule):
        raise ValueError(f"need 0 <= start < stop <= {len(schedule)} outer steps, got start={start}, stop={stop}")
    x = noise.to(denoiser.device, torch.float32).clone()
    state = State(x=x, i=start, schedule=schedule, cond=EMPTY if cond is None else cond,
                  nfe=torch.zeros(x.shape[0], dtype=torch.long), trace=[])
    last = len(schedule) - 1
    previous_x0 = None
    for i in progress(range(start, stop), show_progress, method.name):
        state.i = i
        method.predict(denoiser, constraint, state)
        state.nfe += 1
        if not state.trace:
            state.trace.append(residual_of(constraint, state.x0))
        method.correct(denoiser, constraint, state)
        if i == last:
            method.finish(constraint, state)
        state.trace.append(residual_of(constraint, state.x0))
        if i < last:
            x0, eps = state.x0, state.eps
            if solver == "2m" and previous_x0 is not None:
                x0, eps = schedule.second_order(x0, eps, previous_x0, i)
            if solver == "2m":  # the next step's extrapolation needs this one's x̂0 (later corrected in place)
                previous_x0 = state.x0.clone()
            state.x = schedule.transition(x0, eps, i, eta, gens)
            method.after_transition(constraint, state, gens)
    extras = {"x_t": state.x} if stop <= last else {}
    return SampleResult(x0=state.x0, nfe=state.nfe, residuals=torch.stack(state.trace, 1),
                        backward_passes=method.backward_passes, extras=extras)
