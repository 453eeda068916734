"""Shared fixtures for the fcs tests: tiny random-weight models built once per session.

The same suite runs on a GPU with ``pytest --device cuda`` (default: cpu); torch uses one
intra-op thread unless ``--torch-threads N`` says otherwise. Tolerances are stated for
fp32; on CUDA TF32 is switched off so that "fp32" means fp32. No Ray here: tests/pipeline/ adds its
own fixtures on top of these.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="torch device for the fcs tests: cpu (default), cuda, cuda:1, mps")
    parser.addoption("--torch-threads", type=int, default=1,
                     help="torch intra-op threads in this process (0 = torch's default)")


def pytest_configure(config: pytest.Config) -> None:
    # Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two processes
    # with 2 OpenMP threads each oversubscribe it and run 5-15x slower (measured: 16 min -> 1 min).
    threads = config.getoption("--torch-threads")
    if threads > 0:
        torch.set_num_threads(threads)
    _ray_token_once()


def _ray_token_once() -> None:
    """Ray's first local ``ray.init`` on a machine writes ~/.ray/auth_token. Parallel test processes
    (``-n 2``) starting their clusters at once could each write one, and a job would then hold the
    other's token: write it here, once, before the worker processes start."""
    import os
    import secrets

    path = Path.home() / ".ray" / "auth_token"
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as token:
            token.write(secrets.token_hex(32))


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> str:
    name = pytestconfig.getoption("--device")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            pytest.skip(f"--device {name} given but CUDA is not available")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return name


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three built-in tiny checkpoints, written once: {"tiny", "tiny-v", "tiny-pixel"} -> folder."""
    from fcs import tiny

    root = tmp_path_factory.mktemp("models")
    return {
        "tiny": tiny.build_tiny_sd(root / "tiny"),
        "tiny-v": tiny.build_tiny_sd_v(root / "tiny-v"),
        "tiny-pixel": tiny.build_tiny_pixel(root / "tiny-pixel"),
    }


@pytest.fixture(scope="session")
def fcs_cache(model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A $FCS_CACHE folder where the built-in names ('tiny', ...) resolve to the session's models."""
    cache = tmp_path_factory.mktemp("fcs-cache")
    for name, path in model_dirs.items():
        (cache / name).symlink_to(path, target_is_directory=True)
    return cache


def _load(path: Path, device: str):
    import fcs

    return fcs.load_denoiser(path, device=device, dtype="float32")


@pytest.fixture(scope="session")
def sd(model_dirs, device):
    """Tiny latent SD model (epsilon prediction), fp32. Shared: tests must not mutate it."""
    return _load(model_dirs["tiny"], device)


@pytest.fixture(scope="session")
def sd_v(model_dirs, device):
    """Tiny latent SD model with v-prediction, fp32."""
    return _load(model_dirs["tiny-v"], device)


@pytest.fixture(scope="session")
def pixel(model_dirs, device):
    """Tiny pixel-space UNet2DModel, fp32."""
    return _load(model_dirs["tiny-pixel"], device)


@pytest.fixture(scope="session")
def photo_model(device):
    """The trained built-in ``photo`` latent model (fcs/models/photo), fp32, loaded by name."""
    return _load("photo", device)


# -- problems -------------------------------------------------------------------------------------
def make_images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images (B, 3, H, W) in [0, 1] (a colour gradient plus a little noise)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    base = torch.rand(batch, 3, 1, 1, generator=g) * 0.5 + 0.25 * torch.stack([yy, xx, 1 - yy])[None]
    return (base + 0.1 * torch.rand(batch, 3, height, width, generator=g)).clamp(0, 1)


def make_masks(batch: int, height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W) masks in {0, 1}, 1 = regenerate; item i gets its own hole shape."""
    masks = torch.zeros(batch, 1, height, width)
    for i in range(batch):
        kind = i % 3
        if kind == 0:  # centre square
            masks[i, :, height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 1
        elif kind == 1:  # right half
            masks[i, :, :, width // 2 :] = 1
        else:  # bottom band and a left stripe
            masks[i, :, 2 * height // 3 :, :] = 1
            masks[i, :, :, : width // 5] = 1
    return masks


@pytest.fixture(scope="session")
def make_problem():
    """``make_problem(batch, height, width, seed=0)`` -> (images (B, 3, H, W) in [0, 1], masks
    (B, 1, H, W) in {0, 1}), on CPU; item i gets its own image and hole shape."""

    def make(batch: int, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return make_images(batch, height, width, seed), make_masks(batch, height, width)

    return make


@pytest.fixture(scope="session")
def uint8_arrays():
    """``uint8_arrays(images)``: (B, 3, H, W) in [0, 1] -> list of uint8 (H, W, 3) arrays."""

    def convert(images: torch.Tensor) -> list[np.ndarray]:
        return [(x.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8) for x in images]

    return convert


# -- counting UNet passes -------------------------------------------------------------------------
@dataclass
class UNetCounter:
    """What hooks on a UNet saw: forward calls, items through forward, backward passes, and whether any
    forward output carried an autograd graph."""

    calls: int = 0
    items: int = 0
    backward: int = 0
    graph_outputs: int = 0
    batch_sizes: list[int] = field(default_factory=list)


@contextlib.contextmanager
def _count_unet(denoiser) -> Iterator[UNetCounter]:
    """Count UNet forwards (forward hook) and backwards while the block runs.

    diffusers UNets return a dataclass, which ``register_full_backward_hook`` cannot see (it warns
    and never fires), so the backward hook sits on the output tensor of every forward instead.
    """
    counter = UNetCounter()

    def on_forward(module, args, kwargs, output):
        batch = (args[0] if args else kwargs["sample"]).shape[0]
        counter.calls += 1
        counter.items += batch
        counter.batch_sizes.append(batch)
        sample = output.sample if hasattr(output, "sample") else output[0]
        if sample.requires_grad:  # a backward hook on the UNet's output: fires when grads flow into the UNet
            counter.graph_outputs += 1
            sample.register_hook(on_backward)

    def on_backward(grad):
        counter.backward += 1

    handles = [denoiser.unet.register_forward_hook(on_forward, with_kwargs=True)]
    try:
        yield counter
    finally:
        for handle in handles:
            handle.remove()


@pytest.fixture(scope="session")
def count_unet():
    """``with count_unet(denoiser) as seen: ...`` counts UNet forwards/backwards by module hooks."""
    return _count_unet


def _sample_inpaint(denoiser, images, masks, seeds, method="newton", prompts=None, **options):
    """Tensor-level inpainting: LatentInpaint from pixels, per-item seeded x_T, a sampler, decode.

    images (B, 3, H, W) in [0, 1], masks (B, 1, H, W) in [0, 1] (1 = regenerate), one seed per item.
    Returns (SampleResult, decoded images (B, 3, H, W) on CPU).
    """
    from fcs import SAMPLERS, noise
    from fcs.constraints import LatentInpaint, PixelInpaint

    if denoiser.is_latent:
        constraint = LatentInpaint.from_pixels(denoiser, images, masks)
        shape = constraint.target.shape[1:]
    else:
        images, masks = images.to(denoiser.device), masks.to(denoiser.device)
        constraint = PixelInpaint(denoiser.decode, images, masks)
        shape = (3, *images.shape[-2:])
    gens = noise.generators(seeds)
    x_T = noise.randn(shape, gens, denoiser.device)
    cond = denoiser.encode_prompt(prompts or [""] * len(seeds))
    result = SAMPLERS[method](denoiser, constraint, x_T, cond, gens=gens, **options)
    with torch.no_grad():
        decoded = denoiser.decode(result.x0).cpu()
    return result, decoded


@pytest.fixture(scope="session")
def sample_inpaint():
    """``sample_inpaint(denoiser, images, masks, seeds, method="newton", **options)`` ->
    (SampleResult, decoded (B, 3, H, W)); the chain of ``fcs.inpaint`` on tensors, no compositing."""
    return _sample_inpaint
