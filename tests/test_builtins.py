"""Built-in models (issue 24): min_side computed from the configs agrees with forward passes, the
registry holds builder callables, every built-in is published whole once across processes, and
importing fcs installs no logging filter."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fcs
from fcs.loading import BUILT, SHIPPED, TINY_CLIP

FAMILY_BUILTINS = ("tiny-sdxl", "tiny-sd3", "tiny-flux")
GROUP_NORM_ERROR = "Expected more than 1 value per channel"  # torch's group norm on one value per group


def _runs(denoiser, side: int) -> bool:
    """One forward as the pipeline runs it (encode, one denoiser call, decode) on a zero side × side
    image; False when a group norm sees one value per group."""
    t = denoiser.schedule(1).timesteps[0]
    try:
        with torch.no_grad():
            image = torch.zeros(1, 3, side, side, device=denoiser.device)
            x = denoiser.encode(image) if denoiser.is_latent else image[:, : denoiser.channels]
            denoiser.decode(denoiser.predict(x, t, denoiser.encode_prompt([""]))[1])
    except (RuntimeError, ValueError) as exc:
        if GROUP_NORM_ERROR not in str(exc):
            raise
        return False
    return True


def _probed_min_side(denoiser) -> int:
    """The procedure min_side replaced: forward passes at 1, 2, ... grid cells; a side that pads up to
    the first grid that runs is the minimum."""
    multiple = denoiser.size_multiple
    cells = next(c for c in range(1, 9) if _runs(denoiser, c * multiple))
    return (cells - 1) * multiple + 1


def _padded(side: int, multiple: int) -> int:
    return -(-side // multiple) * multiple


def _check_min_side(denoiser) -> int:
    computed = denoiser.min_side()
    assert computed == _probed_min_side(denoiser)
    multiple = denoiser.size_multiple
    assert _runs(denoiser, _padded(computed, multiple))
    if computed > 1:  # a side just below the minimum pads to a grid that fails
        assert not _runs(denoiser, _padded(computed - 1, multiple))
    return computed


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {name: BUILT[name](root / name) for name in FAMILY_BUILTINS}


@pytest.mark.parametrize("name, expected", [("tiny", 17), ("tiny-v", 17), ("tiny-pixel", 1), ("photo", 1)])
def test_min_side_of_the_builtin_unets_is_what_forward_passes_find(name, expected, model_dirs, device):
    folder = SHIPPED[name] if name in SHIPPED else model_dirs[name]
    denoiser = fcs.load_denoiser(folder, device=device, dtype="float32")
    assert _check_min_side(denoiser) == expected  # tiny: its 16-px grid leaves one value per group


@pytest.mark.parametrize("name, expected", [("tiny-sdxl", 17), ("tiny-sd3", 1), ("tiny-flux", 1)])
def test_min_side_of_the_builtin_families_is_what_forward_passes_find(name, expected, family_dirs, device):
    denoiser = fcs.load_denoiser(family_dirs[name], device=device, dtype="float32")
    assert _check_min_side(denoiser) == expected


def _pixel_unet(block_out_channels, norm_num_groups, attn_norm_num_groups=None, in_channels=3):
    from diffusers import UNet2DModel

    levels = len(block_out_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return UNet2DModel(sample_size=8, in_channels=in_channels, out_channels=in_channels,
                           block_out_channels=block_out_channels, layers_per_block=1,
                           down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
                           up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
                           norm_num_groups=norm_num_groups, attn_norm_num_groups=attn_norm_num_groups)


def _vae(block_out_channels, norm_num_groups):
    from diffusers import AutoencoderKL

    levels = len(block_out_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * levels,
                             up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=block_out_channels,
                             layers_per_block=1, latent_channels=4, norm_num_groups=norm_num_groups)


# Where the computation could go wrong beyond the built-ins: which level, which channels, which groups bind.
SYNTHETIC = {
    "second level, its input channels": (lambda: _pixel_unet((8, 16), 8), None, 3),
    "third of three levels": (lambda: _pixel_unet((16, 16, 32), 16), None, 5),
    "attention groups": (lambda: _pixel_unet((16, 32), 8, attn_norm_num_groups=32), None, 3),
    "nothing binds": (lambda: _pixel_unet((16, 32), 8), None, 1),
    "the VAE binds": (lambda: _pixel_unet((32,), 8, in_channels=4), lambda: _vae((8, 8), 8), 3),
}


@pytest.mark.parametrize("case", SYNTHETIC)
def test_min_side_of_other_configs_is_what_forward_passes_find(case, device):
    from diffusers import DDIMScheduler

    from fcs.tiny import SD15_SCHEDULER

    unet, vae, expected = SYNTHETIC[case]
    denoiser = fcs.UNetDenoiser(unet(), DDIMScheduler(**SD15_SCHEDULER), vae=vae() if vae else None).to(device)
    assert _check_min_side(denoiser) == expected


def test_the_registry_holds_builders_that_write_loadable_models(tmp_path):
    assert set(BUILT) >= {"tiny", "tiny-v", "tiny-pixel", *FAMILY_BUILTINS}
    assert all(callable(build) for build in BUILT.values())
    folder = Path(BUILT["tiny-pixel"](tmp_path / "pixel"))
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "DDIMPipeline"


def _resolve_concurrently(cache: str, name: str, barrier) -> tuple[bool, list[str]]:
    """In a fresh process: wait for the others, then resolve ``name``; (wrote it, files seen)."""
    import os

    torch.set_num_threads(1)
    os.environ["FCS_CACHE"] = cache
    from fcs.loading import resolve_clip, resolve_model, write_builtin

    barrier.wait()
    if name == TINY_CLIP:
        folder = Path(resolve_clip(name))
        wrote = None
    else:
        wrote = write_builtin(name)
        folder = Path(resolve_model(name))
    return wrote, sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", TINY_CLIP])
def test_processes_resolving_one_builtin_build_it_once_and_see_it_whole(name, tmp_path):
    from fcs.loading import resolve_clip, resolve_model

    reference = tmp_path / "reference"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FCS_CACHE", str(reference))
        folder = Path(resolve_clip(name) if name == TINY_CLIP else resolve_model(name))
    expected = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())

    n, cache = 3, tmp_path / "cache"
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager, spawn.Pool(n) as pool:
        barrier = manager.Barrier(n)
        results = pool.starmap(_resolve_concurrently, [(str(cache), name, barrier)] * n, chunksize=1)

    assert all(files == expected for _, files in results), "every process sees the complete folder"
    if name != TINY_CLIP:
        assert sorted(wrote for wrote, _ in results) == [False] * (n - 1) + [True]  # one build
    assert sorted(p.name for p in cache.iterdir()) == [name, f"{name}.lock"]  # no partial folder left


def test_importing_and_loading_install_no_logging_filter(model_dirs):
    """Importing fcs adds no filter to any logger; loading a model filters transformers' torchvision
    notice during the load only (the notice still comes with the pinned transformers). Every
    ``addFilter`` call is recorded with its caller: diffusers adds its own filters as it imports."""
    script = f"""
import logging, sys, traceback
from pathlib import Path

added = []
add_filter = logging.Filterer.addFilter

def recording(self, fn):
    added.append((self, fn, Path(traceback.extract_stack()[-2].filename).resolve()))
    add_filter(self, fn)

logging.Filterer.addFilter = recording
import fcs

ours = Path(fcs.__file__).resolve().parent
by_fcs = lambda: [(getattr(lg, "name", lg), fn) for lg, fn, caller in added if caller.is_relative_to(ours)]
assert not by_fcs(), ("import", by_fcs())
fcs.load_denoiser({str(model_dirs["tiny"])!r}, device="cpu", dtype="float32")
assert by_fcs(), "the load filters the notice"
left = [(getattr(lg, "name", lg), fn) for lg, fn, caller in added if caller.is_relative_to(ours) and fn in lg.filters]
assert not left, ("load", left)
print("checked", file=sys.stderr)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "checked" in proc.stderr and "requires torchvision" not in proc.stderr
