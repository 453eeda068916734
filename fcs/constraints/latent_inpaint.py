"""Inpainting in model space: keep the known latent cells (the paper's latent inpainting)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fcs.constraints.base import Constraint


class LatentInpaint(Constraint):
    """e = M ⊙ (y − x̂0): y the encoded known image, M the known weight per latent cell.

    Args:
        target: y with shape (B, C, h, w), model space (VAE posterior mean × scaling factor).
        known: M with shape (B, 1, h, w) in [0, 1]; 1 = keep, 0 = regenerate; soft values allowed.
    """

    def __init__(self, target: Tensor, known: Tensor) -> None:
        self.target, self.known = target.float(), known.float()

    @classmethod
    def from_pixels(cls, denoiser, image: Tensor, mask: Tensor) -> LatentInpaint:
        """Build from pixels: image (B, 3, H, W) in [0, 1], mask (B, 1, H, W) in [0, 1] with
        white = regenerate (diffusers convention). H and W must be multiples of the VAE factor.

        A latent cell counts as known only as far as its whole pixel block is known (max-pool of the
        regenerate mask), and the hole is filled with the mean colour of the kept pixels before
        encoding, so its content cannot leak into y. (A fixed mid-grey fill did leak: the encoder
        sees past a cell's own block, so known cells next to the hole took on grey, and the
        sampler spread it into the hole: a darker ghost of a stroke mask in the rocket photo's sky.)
        """
        f = denoiser.scale_factor
        mask = mask.to(denoiser.device, torch.float32)
        image = image.to(denoiser.device, torch.float32)
        keep = 1 - mask
        fill = (image * keep).sum((2, 3), keepdim=True) / keep.sum((2, 3), keepdim=True).clamp_min(1.0)
        masked = image * keep + fill * mask
        known = 1 - F.max_pool2d(mask, f) if f > 1 else 1 - mask
        return cls(denoiser.encode(masked), known)

    def _weighted(self, x0: Tensor) -> Tensor:
        return self.known * (self.target - x0)

    def residual(self, x0: Tensor) -> Tensor:
        """RMS of y − x̂0 over the known cells, per item."""
        diff = self._weighted(x0.float())
        count = (self.known.flatten(1).sum(1) * x0.shape[1]).clamp_min(1.0)
        return (diff.pow(2).flatten(1).sum(1) / count).sqrt()

    def error(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        x0 = x0.detach().float()
        return self._weighted(x0), self.residual(x0)
