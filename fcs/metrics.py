"""Image quality numbers shared by the demo, the benchmarks and the tests."""

from __future__ import annotations

import numpy as np


def psnr(reference: np.ndarray, estimate: np.ndarray, region: np.ndarray | None = None) -> float:
    """PSNR in dB of uint8 (H, W, C) ``estimate`` against ``reference``, over the pixels where the
    (H, W) ``region`` is true (all pixels when None); inf when they are equal there."""
    ref = reference.astype(np.float64) / 255
    est = estimate.astype(np.float64) / 255
    err = (ref - est) ** 2
    if region is not None:
        err = err[np.asarray(region, bool)]
    mse = float(err.mean())
    return float("inf") if mse == 0 else -10 * np.log10(mse)
