"""A linear "VAE": each f × f RGB pixel block is spanned by C fixed orthonormal patterns (the top
principal components of photo blocks), so decoding and encoding are exact linear maps.

decode: z (B, C, h, w) -> x = D·z / s per block, pixels (B, 3, f·h, f·w) in [-1, 1]
encode: x -> z = s·Dᵀ·x per block (the least-squares inverse: encode(decode(z)) = z exactly)
With a Gaussian prior on z every constraint through the decoder stays linear-Gaussian.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class LinearVAE:
    """patterns D (3·f·f, C) with orthonormal columns; scaling s (latents of photos have unit std)."""

    patterns: Tensor
    factor: int
    scaling: float

    @property
    def channels(self) -> int:
        return self.patterns.shape[1]

    def _kernel(self, dtype: torch.dtype) -> Tensor:
        return self.patterns.T.reshape(self.channels, 3, self.factor, self.factor).to(dtype)

    def encode(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) pixels in [-1, 1] -> (B, C, H/f, W/f) latents."""
        return self.scaling * F.conv2d(x, self._kernel(x.dtype), stride=self.factor)

    def decode(self, z: Tensor) -> Tensor:
        """(B, C, h, w) latents -> (B, 3, f·h, f·w) pixels; linear, differentiable."""
        return F.conv_transpose2d(z / self.scaling, self._kernel(z.dtype), stride=self.factor)

    def to_dict(self) -> dict:
        return {"patterns": self.patterns.tolist(), "factor": self.factor, "scaling": self.scaling}

    @classmethod
    def from_dict(cls, values: dict) -> LinearVAE:
        return cls(torch.tensor(values["patterns"], dtype=torch.float64), int(values["factor"]),
                   float(values["scaling"]))


def fit_linear_vae(images: Sequence[np.ndarray], factor: int, channels: int) -> LinearVAE:
    """Top ``channels`` principal directions (uncentred, so decoding stays linear) of the f × f blocks
    of ``images`` (3, H, W) in [-1, 1]; scaling = 1 / std of the resulting latents."""
    blocks = torch.cat([
        F.unfold(torch.as_tensor(np.asarray(img), dtype=torch.float64)[None], factor, stride=factor)[0].T
        for img in images])  # (N, 3·f·f)
    values, vectors = torch.linalg.eigh(blocks.T @ blocks / len(blocks))
    patterns = vectors[:, -channels:].flip(1)
    signs = torch.sign(patterns[patterns.abs().argmax(0), torch.arange(channels)])
    patterns = patterns * signs
    latents = blocks @ patterns
    return LinearVAE(patterns, factor, float(1 / latents.std()))
