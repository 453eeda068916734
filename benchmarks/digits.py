"""The UCI handwritten digits that ship with scikit-learn, as 16×16 images, with a fixed split."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

TEST_SIZE = 300
SPLIT_SEED = 0


def load_digits_16() -> tuple[torch.Tensor, np.ndarray]:
    """All 1797 digits as (N, 1, 16, 16) float in [0, 1] (bilinear 2× upsampling) and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.from_numpy(data.images.astype(np.float32) / 16.0)[:, None]
    return F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1), data.target


def split_indices() -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: a seeded permutation, the last 300 held out."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(1797)
    return np.sort(perm[:-TEST_SIZE]), np.sort(perm[-TEST_SIZE:])


def held_out_digits(n: int | None = None) -> torch.Tensor:
    """The first ``n`` held-out digits (N, 1, 16, 16) in [0, 1]."""
    images, _ = load_digits_16()
    idx = split_indices()[1]
    return images[idx[:n] if n else idx]
