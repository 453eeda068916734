"""Decoder-free pixel constraints: map a pixel-space correction to model space with VAE forwards.

e = E(P(D(x̂0))) − E(D(x̂0)), where P moves the decoded image toward the constraint: zero when the
constraint holds, and free of the VAE round-trip bias E(D(x̂0)) − x̂0. Only forward passes (one
decode, two encodes), never a backward pass; the price is the encoder's approximation error.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from fcs.constraints.base import Constraint
from fcs.constraints.pixel import downsample, rms


class ProjectedConstraint(Constraint):
    """Error vector from a pixel-space projection, with forward passes only.

    Args:
        decode: x̂0 (B, C, h, w) -> images (B, 3, H, W) in [0, 1]; encode: the inverse map.
        project: images -> corrected images (same shape) closer to the constraint.
        residual_fn: images -> (B,) residual of the constraint on decoded images.
    """

    def __init__(self, decode: Callable, encode: Callable, project: Callable, residual_fn: Callable) -> None:
        self.decode, self.encode, self.project, self.residual_fn = decode, encode, project, residual_fn

    def residual(self, x0: Tensor) -> Tensor:
        return self.residual_fn(self.decode(x0))

    @torch.no_grad()
    def error(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        decoded = self.decode(x0)
        both = self.encode(torch.cat([self.project(decoded), decoded]))
        corrected, current = both.chunk(2)
        return corrected - current, self.residual_fn(decoded).detach()


class EncoderSuperResolution(ProjectedConstraint):
    """Super-resolution ×s without any backward pass: back-project the low-res residual,
    P(img) = img + U(y − A(img)) with U bicubic upsampling, then re-encode.

    Args:
        low_res: y with shape (B, 3, H/s, W/s) in [0, 1].
    """

    def __init__(self, decode: Callable, encode: Callable, low_res: Tensor, scale: int) -> None:
        low_res = low_res.float()
        self.scale = int(scale)

        def project(img: Tensor) -> Tensor:
            up = F.interpolate(low_res - downsample(img, self.scale), scale_factor=self.scale, mode="bicubic")
            return img + up

        super().__init__(decode, encode, project, lambda img: rms(downsample(img, self.scale) - low_res))
