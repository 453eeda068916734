"""How good one fill is against its truth, and a candidate's numbers over the problems.

    psnr     dB over the scored region (fcs.metrics.psnr)
    ssim     mean of the SSIM map (scikit-image, 7x7 windows) over the scored region
    detail   fine-scale (Laplacian) energy of the fill over the truth's, in the scored region: 1 = as
             much fine detail as the truth, below 1 smoother. A blurry fill wins on PSNR (the biharmonic
             fill beats every diffusion method on box holes); ``detail`` is what tells it apart

Over the problems each number gets its mean and a 95 % bootstrap interval of the mean
(:func:`summarize`), fixed seed, so the same numbers give the same interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fcs.metrics import psnr

BOOTSTRAP = 2000  # resamples for the interval of a mean
SCORES = ("psnr", "ssim", "detail")


def score(truth: np.ndarray, fill: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """``psnr``, ``ssim`` and ``detail`` of uint8 (H, W, 3) ``fill`` against ``truth`` over bool ``region``."""
    from skimage.metrics import structural_similarity

    region = np.asarray(region, bool)
    side = min(truth.shape[:2])
    window = min(7, side if side % 2 else side - 1)
    _, ssim_map = structural_similarity(truth, fill, channel_axis=2, data_range=255, full=True, win_size=window)
    return {"psnr": min(psnr(truth, fill, region), 100.0), "ssim": float(ssim_map.mean(axis=2)[region].mean()),
            "detail": _detail(truth, fill, region)}


def _fine_energy(image: np.ndarray, region: np.ndarray) -> float:
    """RMS of the 5-point Laplacian of the grey image over ``region`` (edges replicated)."""
    gray = np.pad(image.astype(np.float64).mean(axis=2), 1, mode="edge")
    laplacian = (gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:] - 4 * gray[1:-1, 1:-1])
    return float(np.sqrt((laplacian ** 2)[region].mean()))


def _detail(truth: np.ndarray, fill: np.ndarray, region: np.ndarray) -> float:
    reference = _fine_energy(truth, region)
    return _fine_energy(fill, region) / reference if reference > 0 else 1.0


def interval(values: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """A 95 % bootstrap interval of the mean of ``values`` (both ends the mean for one value)."""
    values = np.asarray(values, np.float64)
    if len(values) < 2:
        return float(values.mean()), float(values.mean())
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (BOOTSTRAP, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def summarize(per_problem: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """``{score: {mean, low, high}}`` over the problems' scores."""
    out = {}
    for name in SCORES:
        values = [s[name] for s in per_problem]
        low, high = interval(values)
        out[name] = {"mean": round(float(np.mean(values)), 4), "low": round(low, 4), "high": round(high, 4)}
    return out
