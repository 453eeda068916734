"""Sampler settings, validated when built so a bad value fails before any model work."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from fcs.loading import BUILTIN, DTYPES
from fcs.samplers import JACOBIANS, SAMPLERS
from fcs.samplers.loop import SOLVERS, STEPS
from fcs.samplers.newton import FD_STEP, INNER_SOLVERS, NEWTON_STEPS, inner_step_count
from fcs.schedule import SPACINGS
from fcs.settings import (
    Setting,
    boolean,
    check_known,
    fail,
    integer,
    nonempty,
    number,
    one_of,
    optional,
    setting,
    validate_fields,
)

METHODS = tuple(SAMPLERS)  # newton, dps, replacement, ddim


def _numbers(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _lr(value: Any) -> str | None:
    ok = value is None or number()(value) is None or (
        isinstance(value, tuple) and all(number()(v) is None for v in value))
    return None if ok else "None, a number, or one number per newton step"


@dataclass(frozen=True)
class SamplerConfig:
    """How to sample. Defaults are the paper's (S=20, K=5, lr=linspace(0.5, 0.1, K), h=0.005). Each
    field is declared once with its check and help (:mod:`fcs.settings`): the job file's ``sampler:``
    keys and the ``--flags`` of ``fcs run`` and ``fcs inpaint`` are derived from these declarations.

    ``jacobian`` auto: fd for fp32 models, jvp for fp16/bf16 ones, where a step of h is lost to rounding
    (measured 35 % / 300 % error vs 0.1 % in fp32). ``inner``: "paper" (fixed steps lr[k] of x_t, 2
    forwards each) or "cg" (conjugate-gradient steps of x̂0 towards E[x0 | x_t, y], 1 forward each; lr
    unused). ``feather``: see fcs.images.composite.
    """

    method: str = setting("newton", "sampler", one_of(METHODS), cli={"choices": METHODS})
    steps: int = setting(STEPS, "S outer DDIM steps", integer(1))
    newton_steps: int = setting(NEWTON_STEPS, "K inner Newton steps per outer step", integer(0))
    lr: float | tuple[float, ...] | None = setting(
        None, "inner step size: one number or K numbers (none: linspace(0.5, 0.1, K))", _lr,
        cli={"type": float, "nargs": "+", "metavar": "LR"}, normalize=_numbers)
    h: float = setting(FD_STEP, "finite-difference step of J·e, in units of max|e|",
                       number(0, 1, open_low=True, open_high=True))
    jacobian: str = setting("auto", "J·e: fd (finite difference, the paper's), jvp (exact forward mode), auto "
                            "(fd in fp32, jvp in fp16/bf16)", one_of(JACOBIANS, quote=True),
                            cli={"choices": JACOBIANS})
    tol: float | None = setting(None, "stop an item's inner loop once its residual is <= tol",
                                optional(number(0), "None"), cli={"type": float})
    rel_tol: float | None = setting(None, "the same, relative to the item's first residual",
                                    optional(number(0), "None"), cli={"type": float})
    inner_until: float = setting(1.0, "fraction of the outer steps (the first ones) that run inner steps",
                                 number(0, 1))
    inner: str = setting("paper", "inner solver: paper (steps of x_t) or cg (conjugate gradient on x̂0)",
                         one_of(INNER_SOLVERS, quote=True), cli={"choices": INNER_SOLVERS})
    eta: float = setting(0.0, "DDIM noise (0: deterministic given the seed)", number(0, 1))
    spacing: str = setting("model", "outer time grid: model (its scheduler's) or logsnr (uniform in log-SNR "
                           "between the same end points)", one_of(SPACINGS, quote=True), cli={"choices": SPACINGS})
    solver: str = setting("ddim", "outer transition: ddim (first order) or 2m (second order from the previous "
                          "step's x̂0, no extra forward; needs eta 0)", one_of(SOLVERS, quote=True),
                          cli={"choices": SOLVERS})
    dps_step_size: float = setting(1.0, "DPS step size ζ", number())
    guidance_scale: float = setting(1.0, "classifier-free guidance (1 disables it: one UNet pass per forward)",
                                    number(1))
    composite: bool = setting(True, "paste the original kept pixels back", boolean,
                              cli={"action": argparse.BooleanOptionalAction})
    feather: int = setting(2, "width in pixels of the blended seam around the hole (0: hard paste)", integer(0))

    def __post_init__(self) -> None:
        validate_fields(self)
        if isinstance(self.lr, tuple) and len(self.lr) != self.newton_steps:
            fail("lr", self.lr, f"a float or {self.newton_steps} floats (one per newton step)")
        if self.solver == "2m" and self.eta > 0:
            fail("solver", self.solver, "ddim when eta > 0 (2m is deterministic)")

    @classmethod
    def from_dict(cls, values: dict) -> SamplerConfig:
        """Build from a plain dict (e.g. a job config file); unknown keys fail with their names."""
        check_known(values, [f.name for f in fields(cls)], "sampler config")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)

    def sampler_options(self) -> dict:
        """Keyword options for the chosen sampler function."""
        outer = dict(eta=self.eta, spacing=self.spacing, solver=self.solver)
        if self.method == "newton":
            return outer | dict(newton_steps=self.newton_steps, lr=self.lr, h=self.h, jacobian=self.jacobian,
                                tol=self.tol, rel_tol=self.rel_tol, inner_until=self.inner_until, inner=self.inner)
        if self.method == "dps":
            return outer | dict(step_size=self.dps_step_size)
        return outer

    @property
    def nfe_per_item(self) -> int:
        """UNet forwards per item without early stop: S + c·K·ceil(inner_until·S) for Newton (c = 2 for the
        paper's inner steps, 1 for cg), S otherwise."""
        if self.method != "newton":
            return self.steps
        per_step = 1 if self.inner == "cg" else 2
        return self.steps + per_step * self.newton_steps * inner_step_count(self.inner_until, self.steps)


# -- what to load and where: shared by ``fcs inpaint`` and the batch job's declarations -------------------
def _device(value: Any) -> str | None:
    expected = "auto or a torch device such as cuda, cuda:0, cpu, mps"
    if not isinstance(value, str):
        return expected
    try:
        return None if value == "auto" or torch.device(value) else expected
    except (RuntimeError, ValueError):
        return expected


def _dtype(value: Any) -> str | None:
    return None if isinstance(value, str) and (value == "auto" or value in DTYPES) else \
        f"auto or one of {', '.join(DTYPES)}"


MODEL = Setting("model", None, f"hub id, local diffusers folder, or a built-in name ({', '.join(BUILTIN)})",
                nonempty("a hub id, a local folder or a built-in name"), group="model and compute")
DEVICE = Setting("device", "auto", "torch device for the sampler (auto: cuda, then mps, then cpu)", _device,
                 group="model and compute")
DTYPE = Setting("dtype", "auto", "auto (fp16 on CUDA, else fp32), float32, float16, bfloat16", _dtype,
                group="model and compute")
