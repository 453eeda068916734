"""J·v for J = ∂x̂0/∂x_t: the one product every inner solver needs from the denoiser."""

from __future__ import annotations

from torch import Tensor

from fcs.constraints.base import per_item_max

JACOBIANS = ("auto", "fd", "jvp")  # how J·v is computed; "auto" is resolved by the sampler from the dtype


def jacobian_direction(denoiser, x: Tensor, x0: Tensor, e: Tensor, t, cond, h: float, jacobian: str) -> Tensor:
    """d = J·e, where J = ∂x̂0/∂x_t, by finite difference (one extra forward) or exact JVP.

    The finite difference is taken in fp32 with a per-item step dt = h / max|e| (h in units of x_t).
    """
    if jacobian == "jvp":
        return denoiser.jvp(x, e, t, cond)
    dt = h / per_item_max(e)
    _, x0_shifted = denoiser.predict(x + dt * e, t, cond)
    return (x0_shifted - x0) / dt
