"""Layer extraction: split an image into background B, foreground F and alpha α, x ≈ α⊙F + (1−α)⊙B.

EM-like alternation (after v1 of arXiv 2410.18804; see docs/layers.md):
    1. sample N completions of the background behind the objects (inpainting the dilated object
       regions) and, once some pixels are confidently object, N completions of each foreground
       (inpainting the rest of its region); all N branch from one shared intermediate x_t of the
       constrained sampler instead of restarting, so a round costs about (1 + N)/2 samples.
    2. fit per-pixel means/variances of the completions and re-estimate α as the per-pixel posterior
       of "foreground" given x (Gaussian likelihoods; uniform for F before it has been sampled),
       with the previous α as prior.
Repeat for a fixed number of rounds or until α stops changing. Then B = x where α = 0, the
background samples' mean elsewhere, and F = (x − (1−α)B)/α so that α⊙F + (1−α)⊙B = x up to
clipping of F to [0, 1].
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fcs import noise
from fcs.config import SamplerConfig
from fcs.constraints import LatentInpaint
from fcs.denoiser import Denoiser
from fcs.images import pad_to_multiple, rgb_to_tensor
from fcs.samplers import newton
from fcs.samplers.loop import schedule_for
from fcs.schedule import Schedule
from fcs.tasks.items import Items, TaskResult

log = logging.getLogger(__name__)
ALPHA_MIN = 0.05  # below this a pixel is pure background
LAYERS_DEFAULTS = SamplerConfig(newton_steps=3)  # cheaper completions: each round samples many
ROUNDS, SAMPLES = 3, 4


@dataclass
class Layers:
    """background (H, W, 3) uint8; foreground (H, W, 4) uint8 RGBA; alpha (H, W) float in [0, 1];
    alphas: one (H, W) alpha per object region; nfe: UNet forwards spent; rounds: rounds run."""

    background: np.ndarray
    foreground: np.ndarray
    alpha: np.ndarray
    alphas: list[np.ndarray]
    nfe: int
    rounds: int


def _dilate(mask: Tensor, px: int) -> Tensor:
    return F.max_pool2d(mask, 2 * px + 1, stride=1, padding=px) if px > 0 else mask


def completions(denoiser: Denoiser, image: Tensor, hide: Tensor, n: int, config: SamplerConfig,
                seed: int, branch: float = 0.5) -> tuple[Tensor, int]:
    """N inpaintings of ``image`` (1, 3, H, W) in [0, 1] where ``hide`` (1, 1, H, W) is 1, branching
    from one shared constrained run at step ``branch``·S; kept pixels are pasted back.

    Returns (N, 3, H, W) in [0, 1] and the UNet forwards spent.
    """
    denoiser = denoiser.with_guidance(config.guidance_scale)
    constraint = LatentInpaint.from_pixels(denoiser, image, hide)
    opts = {k: v for k, v in config.sampler_options().items() if k not in ("tol", "rel_tol", "eta")}
    cond = denoiser.encode_prompt([""])
    shape = constraint.target.shape[1:]
    schedule = schedule_for(denoiser, config.steps, shape, config.spacing)  # once, for trunk and branches
    split = branch_step(denoiser, config, schedule, shape, branch)
    gens = noise.generators([seed])
    trunk = newton(denoiser, constraint, noise.randn(shape, gens, denoiser.device), cond,
                   steps=schedule, stop=split, **opts)
    many = LatentInpaint(constraint.target.expand(n, -1, -1, -1), constraint.known.expand(n, -1, -1, -1))
    branches = newton(denoiser, many, trunk.extras["x_t"].expand(n, -1, -1, -1).clone(),
                      cond.repeat(n), steps=schedule, start=split,
                      gens=noise.generators([seed * 1000 + 1 + k for k in range(n)]),
                      **opts | {"eta": 1.0, "solver": "ddim"})  # stochastic branches: 2m is deterministic only
    with torch.no_grad():
        samples = denoiser.decode(branches.x0).float().clamp(0, 1).cpu()
    if samples.shape[1] == 1:
        samples = samples.expand(-1, 3, -1, -1)
    samples = hide.cpu() * samples + (1 - hide.cpu()) * image.cpu()
    return samples, int(trunk.nfe.sum() + branches.nfe.sum())


def branch_step(denoiser: Denoiser, config: SamplerConfig, schedule: Schedule, shape: Sequence[int],
                branch: float) -> int:
    """The step of ``schedule`` (``config``'s grid for samples of ``shape``) the completions branch at:
    step ``branch``·S on the model's own grid, and on another grid the step nearest that noise level
    (log-SNR). The noise left at the branch is what the completions vary by, so a grid that spends its
    steps late must not branch late."""
    at = max(1, min(config.steps - 1, round(branch * config.steps)))
    if config.spacing == "model":
        return at
    target = schedule_for(denoiser, config.steps, shape).log_snr(at)
    return min(range(1, config.steps), key=lambda i: abs(schedule.log_snr(i) - target))


def _log_gauss(x: Tensor, samples: Tensor, noise_std: float) -> Tensor:
    """Per-pixel log N(x; mean, var) over RGB with var = channel-averaged sample variance + noise²."""
    mean = samples.mean(0, keepdim=True)
    var = samples.var(0, unbiased=False, keepdim=True).mean(1, keepdim=True) + noise_std**2
    return (-0.5 * ((x - mean) ** 2).sum(1, keepdim=True) / var - 1.5 * torch.log(2 * math.pi * var))[0]


def _posterior(log_f: Tensor, log_b: Tensor, prior: Tensor) -> Tensor:
    prior = prior.clamp(0.02, 0.98)
    return torch.sigmoid(log_f - log_b + torch.log(prior) - torch.log1p(-prior))


def extract_layers(
    denoiser: Denoiser,
    image: np.ndarray,
    regions: Sequence[np.ndarray],
    config: SamplerConfig = LAYERS_DEFAULTS,
    rounds: int = ROUNDS,
    samples: int = SAMPLES,
    noise_std: float = 0.05,
    margin: int = 2,
    seed: int = 0,
    alpha_tol: float = 0.01,
) -> Layers:
    """Split uint8 RGB ``image`` (H, W, 3) given rough object ``regions`` (each (H, W), 1 = object may
    be here: a box or a coarse mask). ``margin``: pixels by which regions are dilated; the rounds stop
    early once the mean change of α per region pixel is below ``alpha_tol``."""
    if not regions:
        raise ValueError("layer extraction needs at least one object region")
    h, w = image.shape[:2]
    for r in regions:
        if r.shape != (h, w):
            raise ValueError(f"region is {r.shape[1]}x{r.shape[0]} but image is {w}x{h}; they must match")
        if r.max() <= 0:
            raise ValueError("a region is empty (all zeros); give a box or mask covering the object")
    config = replace(config, method="newton", tol=None, rel_tol=None)
    mult = denoiser.size_multiple
    x = pad_to_multiple(rgb_to_tensor(image)[None], mult)
    region = [_dilate(pad_to_multiple(torch.from_numpy(np.asarray(r, np.float32))[None, None], mult).clamp(0, 1),
                      margin)
              for r in regions]
    alphas = [r.clone() for r in region]
    union = torch.clamp(sum(region), 0, 1)
    nfe, done = 0, 0
    for rnd in range(rounds):
        back, spent = completions(denoiser, x, union, samples, config, seed=seed + 7919 * rnd)
        nfe += spent
        log_b = _log_gauss(x, back, noise_std)
        change = 0.0
        for i, (reg, alpha) in enumerate(zip(region, alphas, strict=True)):
            confident = (alpha > 0.9).float() * reg
            if confident.sum() > 0 and (reg - confident).sum() > 0:
                fore, spent = completions(denoiser, x, reg - confident, samples, config,
                                          seed=seed + 7919 * rnd + 31 * (i + 1))
                nfe += spent
                log_f = _log_gauss(x, fore, noise_std)
            else:
                log_f = torch.zeros_like(log_b)  # uniform density on the RGB cube
            new = _posterior(log_f, log_b, alpha) * reg
            change = max(change, float((new - alpha).abs().sum() / reg.sum()))
            alphas[i] = new
        done = rnd + 1
        log.info("layers round %d: mean |Δα| %.4f", done, change)
        if change < alpha_tol and rnd > 0:  # round 1 has no foreground samples yet: always run a second
            break
    alpha_total = 1 - torch.prod(torch.stack([1 - a for a in alphas]), 0)
    alpha_total = torch.where(alpha_total < ALPHA_MIN, torch.zeros_like(alpha_total), alpha_total)
    background = torch.where(alpha_total > 0, back.mean(0, keepdim=True), x)
    fore = ((x - (1 - alpha_total) * background) / alpha_total.clamp_min(ALPHA_MIN)).clamp(0, 1)
    fore = torch.where(alpha_total > 0, fore, torch.zeros_like(fore))

    def crop(t: Tensor) -> np.ndarray:
        return t[0, :, :h, :w].permute(1, 2, 0).numpy()

    a = crop(alpha_total)[..., 0]
    return Layers(
        background=np.round(crop(background) * 255).astype(np.uint8),
        foreground=np.concatenate([np.round(crop(fore) * 255), np.round(a[..., None] * 255)], 2).astype(np.uint8),
        alpha=a.astype(np.float32),
        alphas=[crop(al)[..., 0].astype(np.float32) for al in alphas],
        nfe=nfe, rounds=done,
    )


def recompose(layers: Layers) -> np.ndarray:
    """α⊙F + (1−α)⊙B as float (H, W, 3) in [0, 1] (for checking a decomposition)."""
    a = layers.alpha[..., None].astype(np.float64)
    return a * layers.foreground[..., :3] / 255.0 + (1 - a) * layers.background / 255.0


def regions(mask: np.ndarray) -> list[np.ndarray]:
    """A layers mask (H, W) in [0, 1] -> one float32 (H, W) region per connected white part (8-connected,
    mask >= 0.5), largest first."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask >= 0.5, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel())[1:]
    return [(labels == k + 1).astype(np.float32) for k in np.argsort(-sizes, kind="stable")]


def run(
    denoiser: Denoiser,
    items: Items,
    config: SamplerConfig = LAYERS_DEFAULTS,
    *,
    rounds: int = ROUNDS,
    samples: int = SAMPLES,
) -> list[TaskResult]:
    """Layer extraction as a task, one item at a time: each of ``items.masks``' connected white parts is
    one object's rough region (prompts are not used). ``image`` = B, ``extra_images`` = foreground F
    (RGBA), background B, alpha α (uint8); residual_final = RMS of α⊙F + (1−α)⊙B − x in [0, 1] units
    (none before: the starting α = region, F = B = x, reconstructs x trivially)."""
    out = []
    for image, mask, seed in zip(items.images, items.need_masks("layers"), items.seeds, strict=True):
        started = time.perf_counter()
        lay = extract_layers(denoiser, image, regions(mask), config, rounds=rounds, samples=samples, seed=seed)
        rms = float(np.sqrt(np.mean((recompose(lay) - image / 255.0) ** 2)))
        out.append(TaskResult(
            image=lay.background, nfe=lay.nfe, residual_init=None, residual_final=rms,
            sample_s=time.perf_counter() - started, batch_size=1,
            extra_images={"foreground": lay.foreground, "background": lay.background,
                          "alpha": np.round(lay.alpha * 255).astype(np.uint8)}))
    return out
