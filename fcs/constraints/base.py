"""The constraint contract shared by every sampler."""

from __future__ import annotations

import torch
from torch import Tensor


def per_item_max(x: Tensor) -> Tensor:
    """max |x| over all but the batch dim, shaped (B, 1, 1, 1) for broadcasting; never zero."""
    return x.detach().abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))


class Constraint:
    """A constraint on x̂0 in model space.

    Contract (checked for every registered constraint by ``tests/test_constraints.py``):
        residual(x0) -> (B,) differentiable, >= 0, zero when x0 satisfies the constraint.
        error(x0)    -> (e, r): e with x0's shape (B, C, h, w) points from x0 toward satisfying the
                        constraint; r = residual(x0) detached. Items never mix: row i depends on item i only.

    The default error is the per-item ∞-normalised negative gradient of the residual, which
    backpropagates through whatever the residual computes (e.g. the VAE decoder), never the UNet.
    """

    def residual(self, x0: Tensor) -> Tensor:
        raise NotImplementedError

    def error(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            x = x0.detach().requires_grad_(True)
            r = self.residual(x)
            (grad,) = torch.autograd.grad(r.sum(), x)
        return -grad / per_item_max(grad), r.detach()
