"""Run a sampler for one batch under a constraint and decode x̂0: the step every task shares."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fcs import noise
from fcs.config import SamplerConfig
from fcs.constraints import Constraint
from fcs.denoiser import Denoiser
from fcs.samplers import SAMPLERS, SampleResult
from fcs.tasks.items import TaskResult


@dataclass
class Decoded:
    """Decoded images (B, 3, H, W) in [0, 1] on CPU (NaN kept so callers can flag it), the sampler's
    result, and sampler seconds per item (batch wall time / B)."""

    images: Tensor
    result: SampleResult
    seconds_per_item: float


def sample_and_decode(
    denoiser: Denoiser,
    constraint: Constraint,
    latent_shape: Sequence[int],
    prompts: Sequence[str],
    seeds: Sequence[int],
    config: SamplerConfig,
    show_progress: bool = False,
) -> Decoded:
    """x_T from each item's seed, ``config.method`` under ``constraint``, then decode x̂0.

    latent_shape: (C, h, w) of one item in model space.
    """
    started = time.perf_counter()
    denoiser = denoiser.with_guidance(config.guidance_scale)
    gens = noise.generators(seeds)
    x_T = noise.randn(tuple(latent_shape), gens, denoiser.device)
    cond = denoiser.encode_prompt(list(prompts))
    result = SAMPLERS[config.method](
        denoiser, constraint, x_T, cond,
        steps=config.steps, gens=gens, show_progress=show_progress, **config.sampler_options(),
    )
    with torch.no_grad():
        images = denoiser.decode(result.x0).cpu()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)  # greyscale models -> RGB
    if denoiser.device.type == "cuda":
        torch.cuda.synchronize()
    return Decoded(images, result, (time.perf_counter() - started) / len(seeds))


def not_finite(image: Tensor) -> str | None:
    """The one-line error for a NaN/Inf output, else None."""
    if torch.isfinite(image).all():
        return None
    return "sample: output is not finite (NaN or Inf); try float32 or jacobian='jvp'"


def task_result(out: Decoded, k: int, image: np.ndarray, batch_size: int) -> TaskResult:
    """Item k's :class:`TaskResult` from a batch's :class:`Decoded`, with ``image`` (None if not finite)."""
    error = not_finite(out.images[k])
    return TaskResult(
        image=None if error else image, nfe=int(out.result.nfe[k]),
        residual_init=float(out.result.residual_init[k]), residual_final=float(out.result.residual_final[k]),
        sample_s=out.seconds_per_item, batch_size=batch_size, error=error,
    )
