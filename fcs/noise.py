"""Per-item random numbers: item i's noise depends on its own seed only, never on the batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per item (CPU so that a seed gives the same noise on every device)."""
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def randn(shape: Sequence[int], gens: Sequence[torch.Generator], device: torch.device | str = "cpu") -> Tensor:
    """Standard normal noise of shape (B, *shape) with row i drawn from ``gens[i]``."""
    rows = [torch.randn(tuple(shape), generator=g) for g in gens]
    return torch.stack(rows).to(device)
