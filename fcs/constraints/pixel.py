"""Constraints on the decoded image: error vectors come through the VAE decoder only."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from fcs.constraints.base import Constraint


def rms(x: Tensor) -> Tensor:
    """Root mean square per item: (B, ...) -> (B,), never exactly 0 (its gradient stays finite)."""
    return x.pow(2).flatten(1).mean(1).add(1e-12).sqrt()


def downsample(images: Tensor, scale: int) -> Tensor:
    """A: antialiased bicubic downsampling by an integer ``scale``; (B, C, H, W) -> (B, C, H/s, W/s)."""
    h, w = images.shape[-2] // scale, images.shape[-1] // scale
    return F.interpolate(images, size=(h, w), mode="bicubic", antialias=True, align_corners=False)


class ImageLoss(Constraint):
    """Any differentiable per-item loss of the decoded image, e.g. a colour or segmentation target.

    Args:
        decode: maps x̂0 (B, C, h, w) to images (B, 3, H, W) in [0, 1] (``Denoiser.decode``).
        loss: maps images (B, 3, H, W) to (B,) losses, >= 0 and zero when satisfied.
    """

    def __init__(self, decode: Callable[[Tensor], Tensor], loss: Callable[[Tensor], Tensor]) -> None:
        self.decode, self.loss = decode, loss

    def residual(self, x0: Tensor) -> Tensor:
        return self.loss(self.decode(x0))


class PixelInpaint(ImageLoss):
    """Exact inpainting in pixel space: RMS of D(x̂0) − image over the kept pixels.

    Args:
        image: (B, 3, H, W) in [0, 1]. mask: (B, 1, H, W) in [0, 1], white = regenerate.
    """

    def __init__(self, decode: Callable[[Tensor], Tensor], image: Tensor, mask: Tensor) -> None:
        keep = 1 - mask.float()
        image = image.float()
        self.image, self.keep = image, keep  # the linear observation, for exact posteriors

        def loss(decoded: Tensor) -> Tensor:
            diff = keep * (decoded - image)
            count = (keep.flatten(1).sum(1) * 3).clamp_min(1.0)
            return (diff.pow(2).flatten(1).sum(1) / count).add(1e-12).sqrt()

        super().__init__(decode, loss)


class SuperResolution(ImageLoss):
    """‖A(D(x̂0)) − y‖ (RMS) with A antialiased bicubic downsampling by ``scale``.

    Args:
        low_res: y with shape (B, 3, H/s, W/s) in [0, 1].
    """

    def __init__(self, decode: Callable[[Tensor], Tensor], low_res: Tensor, scale: int) -> None:
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        low_res = low_res.float()
        self.scale, self.low_res = int(scale), low_res
        super().__init__(decode, lambda decoded: rms(downsample(decoded, self.scale) - low_res))
