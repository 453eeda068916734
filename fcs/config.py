"""Sampler settings, validated when built so a bad value fails before any model work."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fcs.samplers import JACOBIANS, SAMPLERS
from fcs.samplers.loop import STEPS
from fcs.samplers.newton import FD_STEP, INNER_SOLVERS, NEWTON_STEPS, inner_step_count

METHODS = tuple(SAMPLERS)  # newton, dps, replacement, ddim


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"config field {name!r}: got {value!r}, expected {allowed}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class SamplerConfig:
    """How to sample. Defaults are the paper's (S=20, K=5, lr=linspace(0.5, 0.1, K), h=0.005).

    Attributes:
        method: one of newton, dps, replacement, ddim.
        steps: S outer DDIM steps. newton_steps: K inner Newton iterations per step.
        lr: Newton step size, a float or K floats; None = linspace(0.5, 0.1, K).
        h: finite-difference step (units of max|e|). jacobian: "fd" (finite difference, the paper's),
            "jvp" (exact forward-mode), or "auto" (fd for fp32 models, jvp for fp16/bf16 ones, where a
            step of h is lost to rounding: measured 35 % / 300 % error vs 0.1 % in fp32).
        tol: per-item early stop of the inner loop once the residual is <= tol (None = off).
        rel_tol: the same relative to the item's residual at the first step (None = off).
        inner_until: fraction of the outer steps (the first ones) that run inner iterations.
        inner: the inner solver: "paper" (fixed steps lr[k] of x_t, 2 forwards each) or "cg"
            (conjugate-gradient steps of x̂0 towards E[x0 | x_t, y], 1 forward each; lr unused).
        eta: DDIM noise (0 = deterministic given the seed). dps_step_size: ζ for DPS.
        guidance_scale: classifier-free guidance (1 = off, one UNet pass per forward).
        composite: paste the original kept pixels back; feather: width (pixels) of the seam offset
            that blends the hole into the kept pixels (0 = hard paste); see fcs.images.composite.
    """

    method: str = "newton"
    steps: int = STEPS
    newton_steps: int = NEWTON_STEPS
    lr: float | tuple[float, ...] | None = None
    h: float = FD_STEP
    jacobian: str = "auto"
    tol: float | None = None
    rel_tol: float | None = None
    inner_until: float = 1.0
    inner: str = "paper"
    eta: float = 0.0
    dps_step_size: float = 1.0
    guidance_scale: float = 1.0
    composite: bool = True
    feather: int = 2

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            _fail("method", self.method, f"one of {', '.join(METHODS)}")
        for name in ("steps", "newton_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name == "steps" else 0):
                _fail(name, value, "a positive integer" if name == "steps" else "an integer >= 0")
        for name in ("h", "eta", "dps_step_size", "guidance_scale", "tol", "rel_tol", "inner_until"):
            value = getattr(self, name)
            # YAML 1.1 reads 5e-3 as a string
            if not (_is_number(value) or (name in ("tol", "rel_tol") and value is None)):
                _fail(name, value, "a number (in YAML write 5.0e-3, not 5e-3)")
        if isinstance(self.lr, list):
            object.__setattr__(self, "lr", tuple(self.lr))
        if not (self.lr is None or _is_number(self.lr)
                or (isinstance(self.lr, tuple) and all(map(_is_number, self.lr)))):
            _fail("lr", self.lr, "None, a number, or one number per newton step")
        if isinstance(self.lr, tuple) and len(self.lr) != self.newton_steps:
            _fail("lr", self.lr, f"a float or {self.newton_steps} floats (one per newton step)")
        if not 0 < self.h < 1:
            _fail("h", self.h, "a float in (0, 1)")
        if self.inner not in INNER_SOLVERS:
            _fail("inner", self.inner, f"one of {', '.join(map(repr, INNER_SOLVERS))}")
        if self.jacobian not in JACOBIANS:
            _fail("jacobian", self.jacobian, f"one of {', '.join(map(repr, JACOBIANS))}")
        for name in ("tol", "rel_tol"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                _fail(name, getattr(self, name), "None or a float >= 0")
        if not 0 <= self.inner_until <= 1:
            _fail("inner_until", self.inner_until, "a fraction in [0, 1]")
        if not 0 <= self.eta <= 1:
            _fail("eta", self.eta, "a float in [0, 1]")
        if self.guidance_scale < 1:
            _fail("guidance_scale", self.guidance_scale, "a float >= 1 (1 disables guidance)")
        if not isinstance(self.feather, int) or self.feather < 0:
            _fail("feather", self.feather, "an integer >= 0")

    @classmethod
    def from_dict(cls, values: dict) -> SamplerConfig:
        """Build from a plain dict (e.g. a job config file); unknown keys fail with their names."""
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown sampler config field(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)

    def sampler_options(self) -> dict:
        """Keyword options for the chosen sampler function."""
        if self.method == "newton":
            return dict(newton_steps=self.newton_steps, lr=self.lr, h=self.h, jacobian=self.jacobian, tol=self.tol,
                        rel_tol=self.rel_tol, inner_until=self.inner_until, inner=self.inner)
        if self.method == "dps":
            return dict(step_size=self.dps_step_size)
        return {}

    @property
    def nfe_per_item(self) -> int:
        """UNet forwards per item without early stop: S + c·K·ceil(inner_until·S) for Newton (c = 2 for the
        paper's inner steps, 1 for cg), S otherwise."""
        if self.method != "newton":
            return self.steps
        per_step = 1 if self.inner == "cg" else 2
        return self.steps + per_step * self.newton_steps * inner_step_count(self.inner_until, self.steps)
